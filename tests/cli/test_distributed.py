"""Several `kmtpe worker` processes share one study on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
import subprocess
import textwrap
import time

import optuna
from optuna.trial import TrialState
import pytest
from tests_cli_helpers import kmtpe_command
from tests_cli_helpers import kmtpe_env
import torch


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
    # A config proposed twice is trained once (issue 14 item 7); a run stopped early is not
    # reused, so its config may be trained again.
    trained = [
        p
        for p, t in zip(params, complete)
        if "duplicate_of" not in t.user_attrs and not t.user_attrs.get("stopped_early")
    ]
    assert len(set(trained)) == len(trained), "a config was trained twice"


# A user project whose training blocks while the file ``hold`` exists, so that a test decides
# when the trial being trained finishes (evaluation and the Hessian run in eval mode).
_HELD_PROJECT = """
import os
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset


def data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(240, 6, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x[:160], y[:160]), TensorDataset(x[160:], y[160:])


class Held(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x):
        deadline = time.monotonic() + 120
        while self.training and os.path.exists("hold") and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.body(x)


def model(input_shape, num_classes):
    return Held()
"""


def _poll(condition, what: str, timeout_s: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_config_trained_elsewhere_is_waited_for_and_reused(
    postgres_url: str, tmp_path: Path
) -> None:
    """Issue 14 item 7: a search and a worker propose the same config at once (the space has
    one config); the worker waits for the search's RUNNING trial and reuses it, so the config
    is trained once, not twice."""
    (tmp_path / "held.py").write_text(textwrap.dedent(_HELD_PROJECT))
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    state = {f"body.{name}": value for name, value in body.state_dict().items()}
    torch.save(state, tmp_path / "float.pt")  # a float model: no pre-training (it would block)
    (tmp_path / "hold").touch()
    env = kmtpe_env(tmp_path / "cache")
    common = ["--storage", postgres_url, "--study-name", "held", "--quiet"]
    one_config = [
        "--model", "held:model", "--data", "held:data", "--checkpoint", str(tmp_path / "float.pt"),
        "--weight-bits", "8", "--act-bits", "8", "--widths", "1", "--qat-epochs", "1",
        "--hessian-max-probes", "8", "--threads", "1", "--no-warm-start",
    ]  # fmt: skip
    run = {"cwd": tmp_path, "env": env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    search = subprocess.Popen(
        [*kmtpe_command(), "search", *common, *one_config, "--trials", "2"], text=True, **run
    )
    processes = [search]
    try:

        def trial_has_config(number: int) -> bool:
            try:
                study = optuna.load_study(study_name="held", storage=postgres_url)
            except KeyError:
                return False
            trials = study.get_trials(deepcopy=False)
            return len(trials) > number and "config" in trials[number].user_attrs

        _poll(lambda: trial_has_config(0) or search.poll() is not None, "the search's trial 0")
        assert search.poll() is None, search.communicate()
        worker = subprocess.Popen(
            [*kmtpe_command(), "worker", *common, "--trials", "2"], text=True, **run
        )
        processes.append(worker)
        _poll(lambda: trial_has_config(1) or worker.poll() is not None, "the worker's trial 1")
        time.sleep(2.0)  # trial 1 has decided by now: it waits (or, wrongly, trains and blocks)
        (tmp_path / "hold").unlink()
        outputs = [p.communicate(timeout=180) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, out + err

    study = optuna.load_study(study_name="held", storage=postgres_url)
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    trained = [t.number for t in trials if "duplicate_of" not in t.user_attrs]
    assert trained == [0], "the one config was trained more than once"
    first, second = trials[0], trials[1]
    assert second.user_attrs["duplicate_of"] == 0
    assert second.user_attrs["worker"] != first.user_attrs["worker"]
    assert second.datetime_start < first.datetime_complete, "trial 1 did not overlap trial 0"
    assert second.values == first.values
