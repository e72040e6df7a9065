"""Budgets as a user sees them: warm starts moved inside, over-budget trials named as such."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.records import METRICS


def warm_starts_within_budgets(
    configs: Sequence[tuple[str, QuantConfig]],
    space: Any,
    *,
    log: Callable[[str], None] = print,
) -> list[tuple[str, QuantConfig]]:
    """``configs`` with each one that breaks a budget replaced by the nearest one that fits.

    A warm start the budgets rule out would only be recorded as infeasible (never trained), and
    one whose choices the budgets pruned cannot even be enqueued: either way the sampler would
    start with less. Each is replaced by :meth:`MonotoneSearchSpace.nearest_feasible` (labelled
    ``"<label> within budget"``) and the replacement is logged; a config with no feasible
    neighbour is dropped, and that is logged too.

    Args:
        configs: ``(label, config)`` warm starts.
        space: The search space (its ``budgets`` and ``size_budget_bits`` are the limits).
        log: Where the replacement lines go.

    Returns:
        The warm starts to enqueue, in the same order.
    """
    kept = []
    for label, config in configs:
        if space.fits_budget(config):
            try:
                space.params_for(config)
            except ValueError:
                pass  # a choice the budgets pruned: move it as well
            else:
                kept.append((label, config))
                continue
        nearest = space.nearest_feasible(config)
        if nearest is None:
            log(f"Warm start {label} breaks the budgets and has no feasible neighbour: skipped.")
            continue
        kept.append((f"{label} within budget", nearest))
        log(f"Warm start {label} breaks the budgets: replaced by the nearest config that fits.")
    return kept


def over_budget_note(attrs: Mapping[str, Any]) -> str:
    """Why an infeasible trial was not trained, from its user attrs: each cost, its limit.

    Example:
        >>> over_budget_note({"latency_s": 3e-5, "constraints": {"latency_s": 0.5}})
        'over budget: latency_s 30.00us > limit 20.00us, not trained'
    """
    parts = []
    for name, excess in (attrs.get(keys.CONSTRAINTS) or {}).items():
        if excess <= 0:
            continue
        value = attrs.get(name)
        if name in METRICS and value is not None:
            # The objective records the relative excess value / limit - 1.
            limit = float(value) / (1.0 + float(excess))
            metric = METRICS[name]
            parts.append(f"{name} {metric.format(float(value))} > limit {metric.format(limit)}")
        else:
            parts.append(f"{name} exceeded by {float(excess):g}")
    return f"over budget: {', '.join(parts) or 'a constraint'}, not trained"
