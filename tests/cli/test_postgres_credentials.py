"""A real PostgreSQL server with a password in the storage URL: the password is never stored in
the study nor printed, and a search killed mid-run completes with one re-run."""

from __future__ import annotations

import json
from pathlib import Path
import signal
import subprocess
import time

import optuna
from optuna.trial import TrialState
import pytest
from tests_cli_helpers import kmtpe_command
from tests_cli_helpers import kmtpe_env


pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PASSWORD = "s3cret-Pw"
FAST = ["--qat-epochs", "1", "--hessian-max-probes", "32", "--quiet", "--no-warm-start"]


def test_password_never_stored_or_printed_and_kills_are_recovered(
    postgres_url: str, tmp_path: Path
) -> None:
    # The throwaway server trusts loopback connections, so any password connects; what
    # matters is what kmtpe does with it.
    url = postgres_url.replace("://kmtpe@", f"://kmtpe:{PASSWORD}@")
    env = kmtpe_env(tmp_path / "cache")
    command = [*kmtpe_command(), "search", "--storage", url, "--trials", "4", *FAST]
    storage = optuna.storages.RDBStorage(postgres_url)

    def trials() -> list[optuna.trial.FrozenTrial]:
        try:
            return optuna.load_study(study_name="kmtpe", storage=storage).get_trials()
        except KeyError:
            return []

    killed = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and killed.poll() is None:
            states = [t.state for t in trials()]
            if TrialState.COMPLETE in states and TrialState.RUNNING in states:
                break
            time.sleep(0.1)
        assert killed.poll() is None, killed.communicate()
    finally:
        killed.send_signal(signal.SIGKILL)
        outputs = list(killed.communicate(timeout=60))

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"--storage {postgres_url.replace('://kmtpe@', '://kmtpe:***@')}" in rerun.stdout
    outputs += [rerun.stdout, rerun.stderr]
    missing = subprocess.run(
        [*kmtpe_command(), "report", "--storage", url, "--study-name", "nope"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2 and "kmtpe:***@" in missing.stderr
    outputs += [missing.stdout, missing.stderr]
    for text in outputs:
        assert PASSWORD not in text, text

    study = optuna.load_study(study_name="kmtpe", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 4, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    stored = json.dumps(
        [study.user_attrs, storage.get_study_system_attrs(study._study_id)]
        + [[t.user_attrs, t.system_attrs] for t in study.trials],
        default=str,
    )
    assert "kmtpe:***@" in stored  # the settings and the dashboard note name the server...
    assert PASSWORD not in stored  # ...never its password
