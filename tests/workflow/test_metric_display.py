"""A user metric is shown as itself everywhere: its name, its units (no ``%`` for an error),
and best first in its own direction, in the Pareto table, the trial line, ``kmtpe report`` and
the dashboard (issue 11)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from optuna_kmtpe import cli
from optuna_kmtpe.dashboard import trial_points
from optuna_kmtpe.dashboard._figures import layer_config_heatmap
from optuna_kmtpe.objectives._metrics import quality_metric
from optuna_kmtpe.records import save_study_metrics
from optuna_kmtpe.records import study_metrics
from optuna_kmtpe.records import study_quality
from optuna_kmtpe.workflow import format_pareto_table
from optuna_kmtpe.workflow import pareto_rows
from optuna_kmtpe.workflow._tables import TrialLine


def _config(bits: int) -> dict[str, dict[str, float]]:
    return {"fc": {"weight_bits": bits, "act_bits": 8, "width": 1.0}}


def _rmse_study(storage: str) -> optuna.Study:
    """Three Pareto-optimal trials of a minimized RMSE: 30 (fastest), 10 (slowest), 20."""
    study = optuna.create_study(storage=storage, directions=["minimize", "minimize"])
    rmse = quality_metric("my_project:rmse", direction="minimize")
    save_study_metrics(study, ("accuracy", "latency_s"), quality=rmse)
    for value, latency, bits in ((30.0, 1e-5, 2), (10.0, 3e-5, 8), (20.0, 2e-5, 4)):
        attrs = {"accuracy": value, "latency_s": latency, "config": _config(bits)}
        study.add_trial(optuna.create_trial(values=[value, latency], user_attrs=attrs))
    return study


def test_study_stores_the_metric_name_and_direction(tmp_path: Path) -> None:
    study = _rmse_study(f"sqlite:///{tmp_path / 'k.db'}")
    assert study.metric_names == ["rmse", "latency_s"]
    assert [(m.name, m.direction) for m in study_metrics(study)] == [
        ("rmse", "minimize"),
        ("latency_s", "minimize"),
    ]
    assert study_quality(study).name == "rmse"


def test_pareto_table_and_report_list_a_minimized_metric_best_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    study = _rmse_study(storage)
    rows = pareto_rows(study)
    assert [r["rmse"] for r in rows] == [10.0, 20.0, 30.0]
    table = format_pareto_table(rows, quality=study_quality(study))
    assert table.splitlines()[0].split()[:2] == ["trial", "rmse"]
    assert "%" not in table and "accuracy" not in table
    assert cli.main(["report", "--storage", storage, "--study-name", study.study_name]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "rmse" in lines[1] and "%" not in out and "accuracy" not in out
    assert lines[3].split()[:2] == ["1", "10"]  # trial 1 holds the lowest RMSE


def test_trial_line_names_the_metric_without_percent(tmp_path: Path) -> None:
    study = _rmse_study(f"sqlite:///{tmp_path / 'k.db'}")
    lines: list[str] = []
    TrialLine(3, study_metrics(study), lines.append)(study, study.trials[1])
    assert "rmse 10  latency_s 30.00us" in lines[0] and "%" not in lines[0]


def test_dashboard_points_and_heatmap_use_the_metric(tmp_path: Path) -> None:
    study = _rmse_study(f"sqlite:///{tmp_path / 'k.db'}")
    points = trial_points(study)
    assert all("rmse" in p.metrics and "accuracy" not in p.metrics for p in points)
    figure = layer_config_heatmap(points, sort_by="rmse", maximize=False)
    assert list(figure.data[0].y) == ["#1", "#2", "#0"]
