"""The reusable PostgreSQL fixture of tests/_services.py, proven with a real distributed study."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
from typing import Any

import _services
from _services import postgres_server
import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
import pytest
import sqlalchemy.exc


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One worker of a distributed search: load the shared study and run trials on it with the
# project's sampler (each worker its own sampler and seed; constant liar is the default).
WORKER = textwrap.dedent(
    """
    import sys
    import optuna
    from optuna_kmtpe import KMeansTPESampler

    url, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = KMeansTPESampler(seed=seed, n_startup_trials=2)
    study = optuna.load_study(study_name=name, storage=url, sampler=sampler)

    def objective(trial):
        trial.set_user_attr("worker", seed)
        return (trial.suggest_float("x", -3, 3) - 1) ** 2 + trial.suggest_int("bits", 2, 8) / 8

    study.optimize(objective, n_trials=4)
    """
)


@pytest.mark.e2e
def test_postgres_fixture_serves_a_study_shared_by_two_worker_processes(tmp_path: Any) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    with postgres_server() as url:
        assert url.startswith("postgresql+psycopg2://") and "@127.0.0.1:" in url
        study = optuna.create_study(storage=RDBStorage(url), study_name="shared")
        env = {**os.environ, "PYTHONPATH": REPO_ROOT}
        workers = [
            subprocess.Popen(
                [sys.executable, str(worker), url, "shared", str(seed)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for seed in (0, 1)
        ]
        outputs = [w.communicate(timeout=120)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs

        trials = study.get_trials()
        assert len(trials) == 8
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert sorted(t.number for t in trials) == list(range(8))  # no number handed out twice
        workers_of_trials = sorted(t.user_attrs["worker"] for t in trials)
        assert workers_of_trials == [0, 0, 0, 0, 1, 1, 1, 1]  # both processes really took part
        # Past the startup trials the K-Means split ran against the shared storage.
        assert any("kmtpe:split" in t.user_attrs for t in trials)
    # Stopped and cleaned up on exit: the server no longer answers.
    with pytest.raises(sqlalchemy.exc.OperationalError):
        RDBStorage(url, engine_kwargs={"connect_args": {"connect_timeout": 2}})


@pytest.mark.e2e
def test_postgres_cluster_is_stopped_and_removed_when_the_test_body_fails() -> None:
    before = set(glob.glob("/tmp/kmtpe-pg-*"))
    with pytest.raises(RuntimeError, match="boom"):
        with postgres_server() as url:
            created = set(glob.glob("/tmp/kmtpe-pg-*")) - before
            assert len(created) == 1
            raise RuntimeError("boom")
    assert not created & set(glob.glob("/tmp/kmtpe-pg-*"))
    with pytest.raises(sqlalchemy.exc.OperationalError):
        RDBStorage(url, engine_kwargs={"connect_args": {"connect_timeout": 2}})


@pytest.mark.e2e
def test_postgres_url_fixture_form(postgres_url: str) -> None:
    storage = RDBStorage(postgres_url)
    study = optuna.create_study(storage=storage, study_name="fixture-form")
    study.add_trial(optuna.create_trial(value=1.0))
    assert optuna.load_study(study_name="fixture-form", storage=postgres_url).best_value == 1.0


def test_postgres_fixture_fails_with_install_hint_when_server_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_services.glob, "glob", lambda pattern: [])
    with pytest.raises(pytest.fail.Exception, match="install-system-deps.sh"):
        with postgres_server():
            pass  # pragma: no cover - never reached


def test_chromium_helper_fails_with_install_hint_when_browser_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_services, "CHROMIUM_PATH", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="install-system-deps.sh"):
        _services.chromium_executable()
