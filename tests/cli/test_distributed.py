"""Several `kmtpe worker` processes share one study on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
import subprocess

import optuna
from optuna.trial import TrialState
import pytest
from tests_cli_helpers import kmtpe_command
from tests_cli_helpers import kmtpe_env


pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_two_workers_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    env = kmtpe_env(tmp_path / "cache")
    common = ["--storage", postgres_url, "--study-name", "shared"]
    fast = ["--qat-epochs", "1", "--hessian-max-probes", "32", "--quiet"]
    started = subprocess.run(
        [*kmtpe_command(), "search", *common, "--trials", "2", "--no-warm-start", *fast],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr

    workers = [
        subprocess.Popen(
            [*kmtpe_command(), "worker", *common, "--trials", "8", "--quiet"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=400) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, out + err
        assert "Traceback" not in err

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 8
    assert not study.get_trials(states=(TrialState.FAIL,))
    ran_by = {t.user_attrs.get("worker") for t in complete[2:]}
    assert len(ran_by) >= 2, "both workers should have run trials"
    # The workers rebuilt the same job from the storage: same metrics, same layers.
    layers = {tuple(t.user_attrs["config"]) for t in complete}
    assert len(layers) == 1
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) >= len(params) - 1, "constant liar should avoid duplicate configs"
