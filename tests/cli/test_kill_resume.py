"""SIGKILL or Ctrl-C at several moments, then one immediate re-run of the same command: the
study holds exactly the requested COMPLETE trials and nothing RUNNING or WAITING, on SQLite
and journal storage (real digits QAT in subprocesses)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import signal
import subprocess
import time

import optuna
from optuna.trial import TrialState
import pytest
from tests_cli_helpers import kmtpe_command
from tests_cli_helpers import kmtpe_env


pytestmark = pytest.mark.slow

FAST = ["--qat-epochs", "1", "--hessian-max-probes", "32", "--quiet"]
TRIALS = 6


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kmtpe-cache")


def _trials(storage: str, file: Path) -> list[optuna.trial.FrozenTrial]:
    if not file.exists():  # opening a journal file would create it
        return []
    try:
        if "://" not in storage:
            backend = optuna.storages.journal.JournalFileBackend(storage)
            opened: optuna.storages.BaseStorage = optuna.storages.JournalStorage(backend)
        else:
            opened = optuna.storages.RDBStorage(storage)
        return optuna.load_study(study_name="kmtpe", storage=opened).get_trials()
    except Exception:  # noqa: BLE001 - not created yet, or its schema is being created
        return []


def _some_complete_one_running(trials: list[optuna.trial.FrozenTrial]) -> bool:
    # At least two trials still to come: on an idle machine a 1-epoch digits trial is shorter
    # than the polling interval, and a signal sent during the last one could land after the
    # run had already finished normally.
    states = [t.state for t in trials]
    complete = states.count(TrialState.COMPLETE)
    return 1 <= complete <= TRIALS - 3 and TrialState.RUNNING in states


def _first_running(trials: list[optuna.trial.FrozenTrial]) -> bool:
    return any(t.state == TrialState.RUNNING for t in trials)


@pytest.mark.parametrize(
    ("kind", "moment", "sig"),
    [
        ("sqlite", _some_complete_one_running, signal.SIGKILL),
        ("journal", _some_complete_one_running, signal.SIGKILL),
        ("journal", _first_running, signal.SIGKILL),
        ("sqlite", _some_complete_one_running, signal.SIGINT),
    ],
    ids=[
        "sqlite-kill-mid-run",
        "journal-kill-mid-run",
        "journal-kill-first-trial",
        "sqlite-ctrl-c",
    ],
)
def test_one_rerun_after_a_kill_completes_the_study(
    tmp_path: Path,
    cache_dir: Path,
    kind: str,
    moment: Callable[[list[optuna.trial.FrozenTrial]], bool],
    sig: signal.Signals,
) -> None:
    file = tmp_path / ("kmtpe.db" if kind == "sqlite" else "kmtpe.log")
    storage = f"sqlite:///{file}" if kind == "sqlite" else str(file)
    command = [*kmtpe_command(), "search", "--storage", storage, "--trials", str(TRIALS), *FAST]
    env = kmtpe_env(cache_dir)
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 240
        came = False
        while time.monotonic() < deadline and proc.poll() is None:
            came = moment(_trials(storage, file))
            if came:
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.fail(f"the search ended before the moment to kill it: {proc.stderr.read()!r}")
        # Not checked again: a short trial may finish between two reads, and the signal lands
        # on whatever runs then (the rerun must cope with any moment).
        assert came, "the moment to kill never came"
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and b"Traceback" not in err, err
        interrupted = [t for t in _trials(storage, file) if t.state == TrialState.FAIL]
        assert interrupted and all(t.user_attrs.get("fail_reason") for t in interrupted)
    kept = {t.number: t.values for t in _trials(storage, file) if t.state == TrialState.COMPLETE}

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr

    trials = _trials(storage, file)
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == TRIALS, states
    table = [
        (
            t.number,
            t.state.name,
            t.user_attrs.get("fail_reason"),
            t.system_attrs.get("failed_trial"),
        )
        for t in trials
    ]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, table
    for trial in trials:
        if trial.number in kept:
            assert trial.values == kept[trial.number]
        if trial.state == TrialState.FAIL:  # the killed trial, retried with its parameters
            retries = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
            assert trial.user_attrs.get("fail_reason"), trial
            # Killed while its parameters were being sampled, it holds only some of them (or
            # only its enqueued ones, or none: then the sampler proposes anew).
            known = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
            if known:  # one retry (a retry may itself be killed and retried) completed them
                done = [t for t in retries if t.state == TrialState.COMPLETE]
                assert any(known.items() <= t.params.items() for t in done), table
