"""Checks of the metrics an objective optimizes and the budgets it enforces.

The metrics themselves are defined once, in :mod:`optuna_kmtpe.records` (torch-free, read by
the dashboard and the CLI too).
"""

from __future__ import annotations

from optuna_kmtpe.records import ACCURACY
from optuna_kmtpe.records import ENERGY_J
from optuna_kmtpe.records import LATENCY_S
from optuna_kmtpe.records import METRICS
from optuna_kmtpe.records import QUALITY_SLOT
from optuna_kmtpe.records import Metric
from optuna_kmtpe.records import cost_metrics
from optuna_kmtpe.records import study_quality  # noqa: F401  (workflow/_inspect imports it here)


COST_METRICS: tuple[str, ...] = cost_metrics()
"""The built-in metrics a budget can limit (:func:`~optuna_kmtpe.records.cost_metrics`)."""

DEFAULT_OBJECTIVES: tuple[str, ...] = (ACCURACY, LATENCY_S, ENERGY_J)
"""The objectives of a search that names none."""


def validate_metrics(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check metric names, keep their order, and reject duplicates.

    Example:
        >>> validate_metrics(["accuracy", "latency_s"])
        ('accuracy', 'latency_s')
    """
    names = tuple(names)
    if not names:
        raise ValueError(f"Choose at least one metric from {sorted(METRICS)}.")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}; choose from {sorted(METRICS)}.")
    if len(set(names)) != len(names):
        raise ValueError(f"Metrics must not repeat, got {list(names)}.")
    return names


def validate_budgets(budgets: dict[str, float] | None) -> dict[str, float]:
    """Check cost budgets: names must be cost metrics, values positive and finite.

    Example:
        >>> validate_budgets({"latency_s": 1e-4})
        {'latency_s': 0.0001}
    """
    budgets = dict(budgets or {})
    allowed = cost_metrics()
    for name, value in budgets.items():
        if name not in allowed:
            raise ValueError(
                f"Budget {name!r} is not a cost metric known before training; budgets can "
                f"limit {list(allowed)}."
            )
        if not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise ValueError(f"Budget {name}={value!r} must be a positive, finite number.")
        budgets[name] = float(value)
    return budgets


def quality_metric(spec: str | None = None, *, direction: str = "maximize") -> Metric:
    """The metric of the quality slot: accuracy, or a user metric named after its callable.

    Args:
        spec: The ``metric`` setting: ``None`` (accuracy), a registered name, an import path
            ``MODULE:CALLABLE`` or an in-memory name ``python.NAME``.
        direction: The user metric's direction.

    Example:
        >>> quality_metric().name
        'accuracy'
        >>> m = quality_metric("my_project:rmse", direction="minimize")
        >>> m.name, m.direction, m.unit
        ('rmse', 'minimize', '')
    """
    if spec is None:
        return METRICS[QUALITY_SLOT]
    name = spec.rpartition(":")[2].rpartition(".")[2] or spec
    if name in METRICS and name != QUALITY_SLOT:
        name = spec  # never shown under a cost metric's name
    return Metric(name, direction, "", f"validation {name} after QAT/PTQ ({spec})")
