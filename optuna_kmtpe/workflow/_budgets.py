"""Budgets as a user sees them: over-budget trials named as such (warm starts are moved inside
the budgets by :mod:`optuna_kmtpe.objectives._warmstart`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna_kmtpe import records as keys
from optuna_kmtpe.records import METRICS


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
