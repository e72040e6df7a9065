"""The kmtpe command as a user runs it: real digits QAT, real SQLite storage, subprocesses."""

from __future__ import annotations

import json
from pathlib import Path
import signal
import subprocess
import time
import urllib.request

import optuna
from optuna.trial import TrialState
import pytest
from tests_cli_helpers import kmtpe_command
from tests_cli_helpers import kmtpe_env


pytestmark = pytest.mark.slow

FAST = ["--qat-epochs", "1", "--hessian-max-probes", "32", "--quiet"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kmtpe-cache")


def run(
    args: list[str], cwd: Path, cache_dir: Path, *, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = kmtpe_env(cache_dir)
    proc = subprocess.run(
        [*kmtpe_command(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kmtpe {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def load(db: Path, name: str = "kmtpe") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def test_search_resume_report_and_export(tmp_path: Path, cache_dir: Path) -> None:
    first = run(["search", "--trials", "6", *FAST], tmp_path, cache_dir)
    assert "Pareto front" in first.stdout and "accuracy" in first.stdout
    assert "Traceback" not in first.stderr
    db = tmp_path / "kmtpe.db"  # the default storage lives in the working directory
    study = load(db)
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 6
    assert study.metric_names == ["accuracy", "latency_s", "energy_j"]
    warm = [t.user_attrs.get("warm_start") for t in study.trials if t.user_attrs.get("warm_start")]
    # Under the forecast uniform max-bit costs the reference point, so it is not a warm start.
    assert "uniform-w4a4" in warm and "uniform-w8a8" not in warm
    assert all(0.0 < t.values[0] <= 1.0 for t in finished)
    before = {t.number: (t.params, t.values) for t in study.trials}

    second = run(["search", "--trials", "9", *FAST], tmp_path, cache_dir)
    assert "Resuming" in second.stdout and "Reusing the Hessian" in second.stdout
    study = load(db)
    assert len(study.trials) == 9
    for trial in study.trials[:6]:
        assert (trial.params, trial.values) == before[trial.number]
    warm_after = [t for t in study.trials if t.user_attrs.get("warm_start")]
    assert len(warm_after) == len(warm)  # never enqueued twice
    # The sampler chose the others from exact costs and the Hessian-prior accuracy forecast,
    # and recorded what it predicted next to what QAT measured.
    chosen = [t for t in study.trials if not t.user_attrs.get("warm_start")]
    assert chosen and all("kmtpe:predicted" in t.user_attrs for t in chosen)
    for trial in chosen:
        predicted = trial.user_attrs["kmtpe:predicted"]
        assert predicted["objectives"] == [0] and 0.0 < predicted["mean"][0] <= 1.0

    report = run(["report"], tmp_path, cache_dir)
    assert "Pareto front of study 'kmtpe'" in report.stdout
    rows = json.loads(run(["report", "--json"], tmp_path, cache_dir).stdout)
    assert rows and {"trial", "accuracy", "latency_s", "energy_j", "config"} <= set(rows[0])
    best = rows[0]["trial"]

    run(["report", "--trial", str(best), "--export-config", "cfg.json"], tmp_path, cache_dir)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["layers"] == study.trials[best].user_attrs["config"]

    out = run(["report", "--trial", str(best), "--export-model", "m.json"], tmp_path, cache_dir)
    exported = json.loads((tmp_path / "m.json").read_text())
    assert exported["trial"] == best and 0.8 < exported["test_accuracy"] <= 1.0
    assert "test accuracy" in out.stdout


def test_killed_run_resumes_with_nothing_lost(tmp_path: Path, cache_dir: Path) -> None:
    env = kmtpe_env(cache_dir)
    proc = subprocess.Popen(
        [*kmtpe_command(), "search", "--trials", "200", "--no-warm-start", *FAST],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = tmp_path / "kmtpe.db"
    deadline = time.time() + 240
    done: list[optuna.trial.FrozenTrial] = []
    try:
        while time.time() < deadline and len(done) < 3:
            time.sleep(1.0)
            if db.exists():
                try:
                    done = load(db).get_trials(states=(TrialState.COMPLETE,))
                except Exception:  # noqa: BLE001 - no study yet, or its schema is being created
                    done = []
        assert len(done) >= 3, "the search did not finish 3 trials in time"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = {t.number: t.values for t in load(db).get_trials(states=(TrialState.COMPLETE,))}

    target = len(load(db).trials) + 2
    run(["search", "--trials", str(target), *FAST], tmp_path, cache_dir)
    study = load(db)
    complete = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert all(complete[n] == values for n, values in kept.items())
    assert len(complete) >= len(kept) + 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--model", "vgg16"], "Unknown model 'vgg16'"),
        (["search", "--device", "no-such-fpga"], "no-such-fpga"),
        (["search", "--budget", "latency_s=-1"], "positive"),
        (["search", "--budget", "accuracy=0.9"], "not a cost metric"),
        (["search", "--objectives", "accuracy,speed"], "Unknown metric"),
        (["search", "--weight-bits", "0,4"], "weight_bits"),
        (["search", "--storage", "postgresql+psycopg2://u:p@127.0.0.1:9/x"], "storage"),
        (["report", "--study-name", "missing"], "No study 'missing'"),
        (["search", "--config", "nope.toml"], "does not exist"),
    ],
)
def test_user_errors_exit_with_one_message(
    tmp_path: Path, cache_dir: Path, args: list[str], message: str
) -> None:
    if args[0] == "report":
        run(["search", "--trials", "1", "--no-warm-start", *FAST], tmp_path, cache_dir)
    proc = run(
        [*args, "--quiet"] if args[0] == "search" else args, tmp_path, cache_dir, check=False
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert proc.stderr.strip().startswith("kmtpe: error:")


def test_toml_config_and_sensitivity(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "run.toml").write_text(
        'weight_bits = [2, 4, 8]\nact_bits = [8]\nwidths = [1.0]\nobjectives = ["accuracy",'
        ' "size_bits"]\nstudy_name = "toml"\nn_trials = 3\nwarm_start = false\n'
        "[budgets]\nlatency_s = 1.0\n"
    )
    run(["search", "--config", "run.toml", *FAST], tmp_path, cache_dir)
    study = load(tmp_path / "kmtpe.db", "toml")
    assert study.metric_names == ["accuracy", "size_bits"]
    assert len(study.trials) == 3
    for trial in study.trials:
        layers = trial.user_attrs["config"].values()
        assert {c["weight_bits"] for c in layers} <= {2, 4, 8}
        assert {c["act_bits"] for c in layers} == {8}

    sens = run(["sensitivity"], tmp_path, cache_dir)
    assert "features.0" in sens.stdout and "classifier" in sens.stdout


def test_a_training_metric_is_an_objective_end_to_end(tmp_path: Path, cache_dir: Path) -> None:
    # val_loss is measured by training, like accuracy: recorded, returned, forecast, shown.
    objectives = ["--objectives", "accuracy,val_loss,latency_s"]
    out = run(["search", "--trials", "5", *objectives, *FAST[:-1]], tmp_path, cache_dir).stdout
    study = load(tmp_path / "kmtpe.db")
    assert study.metric_names == ["accuracy", "val_loss", "latency_s"]
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 5
    for trial in finished:
        assert trial.values[1] == trial.user_attrs["val_loss"] > 0
        assert f"trial {trial.number}: accuracy" in out
    assert out.count("val_loss") >= 6  # each trial line and the Pareto table's header
    # The sampler forecast both training objectives; the costs stay exact.
    chosen = [t for t in finished if "kmtpe:predicted" in t.user_attrs]
    assert chosen and all(t.user_attrs["kmtpe:predicted"]["objectives"] == [0, 1] for t in chosen)
    rows = json.loads(run(["report", "--json"], tmp_path, cache_dir).stdout)
    assert rows and all(row["val_loss"] > 0 for row in rows)


def test_dashboard_serves_the_study(tmp_path: Path, cache_dir: Path) -> None:
    run(["search", "--trials", "2", "--no-warm-start", *FAST], tmp_path, cache_dir)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = kmtpe_env(cache_dir)
    proc = subprocess.Popen(
        [*kmtpe_command(), "dashboard", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = None
        for _ in range(60):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=2
                ) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the dashboard did not answer"
        assert [s["study_name"] for s in body["study_summaries"]] == ["kmtpe"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
