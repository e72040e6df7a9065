"""One metric schema: a metric defined once in ``records.METRICS`` reaches every reader."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import optuna
import pytest

from optuna_kmtpe import records
from optuna_kmtpe.cli import build_parser
from optuna_kmtpe.dashboard import pareto_front_figure
from optuna_kmtpe.dashboard import trial_points
from optuna_kmtpe.objectives import hardware_cost_fn
from optuna_kmtpe.objectives._forecast import KnownCosts
from optuna_kmtpe.objectives._metrics import validate_budgets
from optuna_kmtpe.objectives._metrics import validate_metrics
from optuna_kmtpe.workflow import format_pareto_table
from optuna_kmtpe.workflow import pareto_rows


def _search_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["search"].format_help()


def test_a_new_cost_metric_is_one_entry_of_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    luts = records.Metric("luts", "minimize", "LUT", "lookup tables", records.COST)
    assert "luts" not in _search_help()
    monkeypatch.setitem(records.METRICS, "luts", luts)

    # The CLI offers it, with its unit, as an objective and as a budget.
    assert _search_help().count("luts [LUT]") == 2
    assert validate_metrics(["accuracy", "luts"]) == ("accuracy", "luts")
    assert validate_budgets({"luts": 900}) == {"luts": 900.0}

    # The objective reads it from the hardware model's report, by name, before training.
    report = SimpleNamespace(
        latency_s=1e-5, energy_j=2e-6, size_bits=8e3, bops=1e6, throughput_ips=1e5,
        dsp_used=4, luts=1234.0, layers=[], violations={},
    )  # fmt: skip
    cost_fn = hardware_cost_fn(SimpleNamespace(evaluate=lambda shapes, config: report), None)
    costs = cost_fn(None)
    assert costs.metrics["luts"] == 1234.0
    known = KnownCosts(
        space=SimpleNamespace(config_from_params=lambda p: None),
        cost_fn=cost_fn,
        metrics=("accuracy", "luts"),
    )
    assert known({}) == [None, 1234.0]

    # A study optimizing it: the Pareto table and the dashboard show it in its units.
    study = optuna.create_study(directions=["maximize", "minimize"])
    records.save_study_metrics(study, ("accuracy", "luts"), quality=records.METRICS["accuracy"])
    cfg = {"fc": {"weight_bits": 4, "act_bits": 8, "width": 1.0}}
    attrs = {**costs.metrics, records.ACCURACY: 0.9, records.CONFIG: cfg}
    study.add_trial(optuna.create_trial(values=[0.9, 1234.0], user_attrs=attrs))
    header, _, row = format_pareto_table(pareto_rows(study)).splitlines()
    assert header.split()[:6] == [
        "trial",
        "accuracy",
        "latency_s",
        "energy_j",
        "size_bits",
        "luts",
    ]
    assert row.split()[1:6] == ["90.00%", "10.00us", "2.000uJ", "0.98KiB", "1,234"]
    (point,) = trial_points(study)
    assert point.metrics["luts"] == 1234.0
    fig = pareto_front_figure([point], x="luts", y="accuracy", color=None)
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("luts [LUT]", "accuracy")


def test_stored_metrics_of_older_runs_still_read() -> None:
    # Studies written before the schema had `source` and `in_table` keep their metrics.
    study = optuna.create_study(directions=["minimize"])
    old = {"name": "rmse", "direction": "minimize", "unit": "", "description": "user metric"}
    study.set_metric_names(["rmse"])
    study.set_user_attr(records.STUDY_METRICS, {"objectives": [old], "quality": old})
    assert records.study_quality(study) == records.Metric("rmse", "minimize", "", "user metric")
    assert records.study_metrics(study)[0].source == records.TRAINING


def test_budgets_apply_to_minimized_costs_only() -> None:
    assert records.THROUGHPUT_IPS not in records.cost_metrics()  # a cost, but maximized
    assert records.ACCURACY not in records.cost_metrics()
    with pytest.raises(ValueError, match="not a cost metric"):
        validate_budgets({records.THROUGHPUT_IPS: 1e4})
