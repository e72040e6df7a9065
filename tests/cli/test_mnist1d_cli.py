"""`kmtpe search --data mnist1d` end to end: generated data, ResNet20_1D, real QAT, SQLite."""

from __future__ import annotations

from pathlib import Path
import subprocess

import optuna
from optuna.trial import TrialState
import pytest
from tests_cli_helpers import kmtpe_command
from tests_cli_helpers import kmtpe_env


pytest.importorskip("mnist1d")
pytestmark = pytest.mark.slow


def test_search_on_mnist1d(tmp_path: Path) -> None:
    args = [
        "search", "--data", "mnist1d", "--data-samples", "600", "--pretrain-epochs", "2",
        "--trials", "4", "--qat-epochs", "1", "--hessian-max-probes", "16", "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(
        [*kmtpe_command(), *args],
        cwd=tmp_path,
        env=kmtpe_env(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "Training the float resnet20_1d on mnist1d" in proc.stdout
    assert "Pareto front" in proc.stdout and "accuracy" in proc.stdout
    study = optuna.load_study(study_name="kmtpe", storage=f"sqlite:///{tmp_path / 'kmtpe.db'}")
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 4
    stored = study.user_attrs["kmtpe:run"]
    assert (stored["data"], stored["model"], stored["data_samples"]) == (
        "mnist1d",
        "resnet20_1d",
        600,
    )
