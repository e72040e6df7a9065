"""The metrics an objective can return, with their Optuna directions."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
from typing import Any

import optuna


STUDY_METRICS = "kmtpe:metrics"
"""Study user attr: the :class:`Metric` of each objective and of the quality slot
(:func:`save_study_metrics`), so that every printer shows a user metric as itself."""

QUALITY_SLOT = "accuracy"
"""The objective name and trial user attr of the model's quality: top-1 accuracy, or the
user's metric in its place (recorded under this key, shown under its own name)."""


@dataclasses.dataclass(frozen=True)
class Metric:
    """One objective metric: how it is named, optimized and shown.

    Attributes:
        name: Name used in metric names, user attrs, CLI flags and budgets.
        direction: ``"maximize"`` or ``"minimize"``.
        unit: Unit shown in tables; ``"%"`` marks a fraction in ``[0, 1]`` shown in percent.
        description: One line for help texts.
    """

    name: str
    direction: str
    unit: str
    description: str

    def format(self, value: float | None) -> str:
        """``value`` in human units: ``%`` for fractions, us/ms, uJ/mJ, KiB, else 4 digits.

        Example:
            >>> METRICS["accuracy"].format(0.9712), METRICS["latency_s"].format(2.5e-5)
            ('97.12%', '25.00us')
            >>> quality_metric("mod:rmse", direction="minimize").format(41.237)
            '41.24'
        """
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if self.unit == "%":
            return f"{100 * value:.2f}%"
        if self.unit == "s":
            return f"{value * 1e6:.2f}us" if value < 1e-3 else f"{value * 1e3:.3f}ms"
        if self.unit == "J":
            return f"{value * 1e6:.3f}uJ" if value < 1e-3 else f"{value * 1e3:.3f}mJ"
        if self.unit == "bit":
            return f"{value / 8 / 1024:.2f}KiB"
        if self.unit == "1/s":
            return f"{value:,.0f}/s"
        if self.name in METRICS:
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
        return f"{value:.4g}"

    def best_first(self, value: float | None) -> float:
        """Sort key putting the best value first and missing or NaN values last.

        Example:
            >>> error = quality_metric("mod:error", direction="minimize")
            >>> sorted([0.3, None, 0.1], key=error.best_first)
            [0.1, 0.3, None]
        """
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.inf
        return -value if self.direction == "maximize" else value

    def to_dict(self) -> dict[str, str]:
        """The JSON form stored in a study."""
        return dataclasses.asdict(self)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "maximize", "%", "validation accuracy after QAT/PTQ (0..1)"),
        Metric("latency_s", "minimize", "s", "FPGA latency of one inference (sequential layers)"),
        Metric("energy_j", "minimize", "J", "FPGA energy of one inference"),
        Metric("size_bits", "minimize", "bit", "model size with the config's bit-widths"),
        Metric("bops", "minimize", "", "bit operations: sum of MACs x weight bits x act bits"),
        Metric("throughput_ips", "maximize", "1/s", "inferences per second, layer-pipelined"),
        Metric("dsp_used", "minimize", "", "DSP slices the accelerator needs"),
    )
}
"""Every metric an objective can optimize, by name."""

COST_METRICS: tuple[str, ...] = ("latency_s", "energy_j", "size_bits", "bops", "dsp_used")
"""Metrics known before training (from the config and the hardware model): budgets apply."""


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
    for name, value in budgets.items():
        if name not in COST_METRICS:
            raise ValueError(
                f"Budget {name!r} is not a cost metric known before training; budgets can "
                f"limit {list(COST_METRICS)}."
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


def objective_metrics(objectives: Sequence[str], *, quality: Metric) -> tuple[Metric, ...]:
    """The metrics of ``objectives`` (names of :data:`METRICS`), ``quality`` in its slot."""
    return tuple(quality if name == QUALITY_SLOT else METRICS[name] for name in objectives)


def save_study_metrics(
    study: optuna.Study, objectives: Sequence[str], *, quality: Metric
) -> tuple[Metric, ...]:
    """Name the study's objectives after their metrics and store the definitions.

    optuna-dashboard shows the names; :func:`study_metrics` and :func:`study_quality` read
    the definitions back (for tables, trial lines and plots). Returns the objectives' metrics.
    """
    metrics = objective_metrics(objectives, quality=quality)
    study.set_metric_names([m.name for m in metrics])
    study.set_user_attr(
        STUDY_METRICS,
        {"objectives": [m.to_dict() for m in metrics], "quality": quality.to_dict()},
    )
    return metrics


def _from_dict(data: Mapping[str, Any]) -> Metric:
    return Metric(**{f.name: str(data[f.name]) for f in dataclasses.fields(Metric)})


def study_metrics(study: optuna.Study) -> tuple[Metric, ...]:
    """The :class:`Metric` of each objective of ``study``, in objective order.

    Read from the study (:func:`save_study_metrics`); a study without them gets the built-in
    metric of each objective name, or a plain one named after it in the study's direction.

    Example:
        >>> study = optuna.create_study(directions=["minimize"])
        >>> study_metrics(study)[0].name
        'value0'
    """
    stored = study.user_attrs.get(STUDY_METRICS)
    directions = [d.name.lower() for d in study.directions]
    if isinstance(stored, Mapping) and len(stored.get("objectives", ())) == len(directions):
        return tuple(_from_dict(m) for m in stored["objectives"])
    names = study.metric_names or [f"value{i}" for i in range(len(directions))]
    return tuple(
        METRICS[name] if name in METRICS else Metric(name, direction, "", name)
        for name, direction in zip(names, directions)
    )


def study_quality(study: optuna.Study) -> Metric:
    """The metric recorded in the quality slot of ``study`` (accuracy unless the user's)."""
    stored = study.user_attrs.get(STUDY_METRICS)
    if isinstance(stored, Mapping) and isinstance(stored.get("quality"), Mapping):
        return _from_dict(stored["quality"])
    return METRICS[QUALITY_SLOT]
