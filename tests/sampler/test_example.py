from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sklearn_hyperparameters.py"


def test_sklearn_example_runs_and_records_the_split(capsys) -> None:  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("sklearn_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = module.main(n_trials=12, seed=1)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 12
    assert 0.5 < study.best_value <= 1.0
    assert "best accuracy" in capsys.readouterr().out
