from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import optuna
from optuna.trial import TrialState
import pytest

from optuna_kmtpe import KMeansTPESampler
from optuna_kmtpe.sampler import split_history


REPO_ROOT = Path(__file__).resolve().parents[2]


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    n = trial.suggest_int("n", 0, 20)
    return (x - 1) ** 2 + abs(n - 7)


def _assert_no_duplicate_storm(study: optuna.Study, n_expected: int) -> None:
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == n_expected
    keys = [(round(t.params["x"], 9), t.params["n"]) for t in trials]
    # Continuous x: any repetition would mean workers converged on the same point.
    assert len(set(keys)) == len(keys)


@pytest.mark.slow
def test_two_threads_on_sqlite(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'threads.db'}"
    study = optuna.create_study(storage=storage, sampler=KMeansTPESampler(seed=0))
    study.optimize(_objective, n_trials=40, n_jobs=2)
    _assert_no_duplicate_storm(study, 40)
    history = split_history(study)
    assert len(history) >= 25
    assert any(h["n_running"] >= 1 for h in history)  # constant liar saw the other thread


_WORKER = """
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from optuna_kmtpe import KMeansTPESampler
def objective(trial):
    x = trial.suggest_float("x", -5, 5)
    n = trial.suggest_int("n", 0, 20)
    return (x - 1) ** 2 + abs(n - 7)
storage = optuna.storages.RDBStorage(sys.argv[1], engine_kwargs={"connect_args": {"timeout": 60}})
study = optuna.load_study(study_name="shared", storage=storage,
                          sampler=KMeansTPESampler(seed=int(sys.argv[2])))
study.optimize(objective, n_trials=20)
"""


@pytest.mark.slow
def test_two_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="shared", storage=url)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, str(seed)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=url)
    _assert_no_duplicate_storm(study, 40)
    history = split_history(study)
    assert len(history) >= 15
    # Each worker saw the other's RUNNING trials at least sometimes (constant liar).
    assert all(h["n_below"] >= 1 for h in history)
    assert any(h["n_running"] >= 1 for h in history)
