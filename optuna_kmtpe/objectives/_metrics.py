"""The metrics an objective can return, with their Optuna directions."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Metric:
    """One objective metric.

    Attributes:
        name: Name used in metric names, user attrs, CLI flags and budgets.
        direction: ``"maximize"`` or ``"minimize"``.
        unit: Unit shown in tables.
        description: One line for help texts.
    """

    name: str
    direction: str
    unit: str
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "maximize", "", "validation accuracy after QAT/PTQ (0..1)"),
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
