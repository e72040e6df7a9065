"""Reliability of the search workflow without training: bad input leaves nothing behind,
resumes refuse conflicting settings, credentials never leak, killed trials are retried.

Every test here stops before data is loaded or a model trained, so the file runs in seconds.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
import subprocess
import sys
import threading

import optuna
from optuna.trial import TrialState
import pytest

from optuna_kmtpe import records as keys
from optuna_kmtpe.cli import main
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import pareto_rows
from optuna_kmtpe.workflow import run_search
from optuna_kmtpe.workflow._prepare import _checkpoint_path
from optuna_kmtpe.workflow._samplers import make_sampler


def _kmtpe_study(url: str, settings: SearchSettings) -> optuna.Study:
    """A study as `kmtpe search` leaves it (settings stored), without running anything."""
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=url,
        directions=["maximize", "minimize", "minimize"],
    )
    study.set_user_attr(keys.STUDY_RUN, settings.to_dict())
    return study


# 1. A rejected run leaves nothing behind.


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": "mnist"}, "--data-dir is required"),
        ({"data": "cifar10", "data_dir": "no/such/dir"}, "not a directory"),
        ({"cache_dir": "__FILE__/cache"}, "cannot be created"),
        ({"model": "vgg16"}, "Unknown model"),
        ({"device": "no-such-fpga"}, "no-such-fpga"),
    ],
)
def test_a_rejected_run_writes_nothing(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    changes = {k: v.replace("__FILE__", str(blocker)) for k, v in changes.items()}
    db = tmp_path / "kmtpe.db"
    settings = SearchSettings(storage=f"sqlite:///{db}", cache_dir=str(tmp_path / "c"))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_search(settings.replace(**changes), log=lambda _: None)
    assert not db.exists(), "a rejected run must not create the database"
    assert not (tmp_path / "c").exists()


def test_a_rejected_run_does_not_touch_an_existing_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    optuna.create_study(study_name="other", storage=url)
    settings = SearchSettings(storage=url, data="mnist", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="--data-dir"):
        run_search(settings, log=lambda _: None)
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["other"]


# 2. Conflicting settings on resume.


def test_resume_refuses_conflicting_flags_in_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    _kmtpe_study(url, SearchSettings(storage=url))
    code = main(
        ["search", "--storage", url, "--weight-bits", "4,8", "--act-bits", "8",
         "--objectives", "accuracy,size_bits,bops", "--sampler", "random", "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("kmtpe: error: study 'kmtpe' was started with other settings")
    for name in ("weight_bits", "act_bits", "objectives", "sampler"):
        assert name in err
    assert "--study-name" in err
    assert len(optuna.load_study(study_name="kmtpe", storage=url).trials) == 0


def test_resumable_settings_may_change_and_unset_flags_keep_the_stored_job() -> None:
    from optuna_kmtpe.workflow._settings import load_settings
    from optuna_kmtpe.workflow._settings import resumed_settings

    stored = SearchSettings(weight_bits=(2, 4), n_trials=10, seed=3)
    given, explicit = load_settings(config=None, overrides={"n_trials": 20, "torch_threads": 2})
    resumed = resumed_settings(stored, given, explicit=explicit)
    assert (resumed.weight_bits, resumed.seed) == ((2, 4), 3)
    assert (resumed.n_trials, resumed.torch_threads) == (20, 2)
    # An unset trial count keeps the stored one; the same value given again is no conflict.
    given, explicit = load_settings(config=None, overrides={"weight_bits": [4, 2]})
    assert resumed_settings(stored, given, explicit=explicit).n_trials == 10
    # Python callers: settings that differ from the defaults count as set.
    with pytest.raises(ValueError, match="seed 0 \\(stored 3\\)"):
        resumed_settings(stored, SearchSettings(weight_bits=(2, 4), seed=0), explicit=["seed"])
    with pytest.raises(ValueError, match="objectives"):
        resumed_settings(stored, SearchSettings(objectives=("accuracy", "latency_s")))


# 3. Credentials are never stored or printed.


def test_storage_password_is_redacted_in_stored_settings_and_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    url = "postgresql+psycopg2://kmtpe:s3cret-pw@127.0.0.1:9/kmtpe"
    assert "s3cret-pw" not in json.dumps(SearchSettings(storage=url).to_dict())
    assert main(["report", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and "kmtpe:***@127.0.0.1:9" in err
    assert len(err.strip().splitlines()) == 1


def test_dashboard_note_redacts_old_stored_urls() -> None:
    from optuna_kmtpe.dashboard._note import summary_markdown

    text = summary_markdown(
        study_name="s",
        run={"storage": "postgresql://u:hunter2@db/k"},
        points=[],
        metric_names=[],
        maximize=[],
        state_counts={},
    )
    assert "hunter2" not in text and "u:***@db" in text


# 4. One line, never a traceback, for bad types.


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("weight_bits = true", "weight_bits must be a list"),
        ('n_trials = "10"', "n_trials must be an integer"),
        ("budgets = 5", "budgets must be a table"),
        ("storage = 5", "storage must be a string"),
        ('seed = "abc"', "seed must be an integer"),
        ("weight_bits = [true]", "weight_bits must hold int"),
        ("weight_bits = [4.7]", "weight_bits must hold int"),
        ("trials = 2.5", "n_trials must be an integer"),
        ("lr = nan", "lr must be a positive, finite"),
        ('objectives = "accuracy,speed"', "Unknown metric"),
    ],
)
def test_toml_type_errors_are_one_line(tmp_path: Path, capsys, toml: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "run.toml").write_text(toml + "\n")
    code = main(["search", "--config", str(tmp_path / "run.toml"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("kmtpe: error:")


def test_toml_accepts_flag_names_and_both_list_forms(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(
        'weight_bits = "2,4,8"\nobjectives = "accuracy"\ntrials = 7\nthreads = 1\n'
        "act-bits = [4, 8]\n"
    )
    settings = SearchSettings.from_toml(tmp_path / "run.toml")
    assert settings.weight_bits == (2, 4, 8) and settings.act_bits == (4, 8)
    assert settings.objectives == ("accuracy",)
    assert (settings.n_trials, settings.torch_threads) == (7, 1)


def test_dashboard_port_out_of_range_is_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard", "--port", "99999"])
    assert exit_info.value.code == 2
    assert "expected a TCP port from 1 to 65535" in capsys.readouterr().err


def test_dashboard_on_a_read_only_database_serves_with_a_warning(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    from optuna_kmtpe.dashboard import _serve

    db = tmp_path / "kmtpe.db"
    study = optuna.create_study(
        study_name="kmtpe", storage=f"sqlite:///{db}", directions=["maximize", "minimize"]
    )
    study.set_metric_names(["accuracy", "latency_s"])
    study.add_trial(optuna.create_trial(values=[0.9, 1e-5]))
    served: list[str] = []
    monkeypatch.setattr(_serve, "run_server", lambda url, **_: served.append(url))
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    assert main(["dashboard", "--storage", read_only]) == 0
    captured = capsys.readouterr()
    assert served == [read_only]
    assert "could not refresh the kmtpe plots" in captured.err and "Traceback" not in captured.err


# 5. Killed and interrupted trials are retried; nothing stays RUNNING or WAITING.


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_trials_of_dead_processes_are_failed_and_retried_at_once(tmp_path: Path) -> None:
    import socket

    from optuna_kmtpe.workflow._storage import recover_orphans

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    dist = optuna.distributions.IntDistribution(0, 10)
    orphan = study.ask({"x": dist})
    study._storage.set_trial_user_attr(
        orphan._trial_id, keys.WORKER, f"{socket.gethostname()}:{_dead_pid()}"
    )
    study._storage.set_trial_user_attr(orphan._trial_id, keys.WARM_START, "uniform-w8a8")
    alive = study.ask({"x": dist})
    study._storage.set_trial_user_attr(alive._trial_id, keys.WORKER, keys.worker_id())
    elsewhere = study.ask({"x": dist})
    study._storage.set_trial_user_attr(elsewhere._trial_id, keys.WORKER, "other-host:1")

    assert recover_orphans(study, log=lambda _: None) == 1
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[keys.FAIL_REASON] == keys.FAIL_REASON_ORPHANED
    assert [t.state for t in trials[1:3]] == [TrialState.RUNNING, TrialState.RUNNING]
    retry = trials[3]
    assert retry.state == TrialState.WAITING and retry.params == orphan.params
    assert retry.user_attrs == {keys.WARM_START: "uniform-w8a8"}
    assert optuna.storages.RetryFailedTrialCallback.retried_trial_number(retry) == 0
    assert recover_orphans(study, log=lambda _: None) == 0  # never twice


def test_an_untagged_running_trial_is_orphaned_after_the_grace_period() -> None:
    study = optuna.create_study()
    trial = study._storage.get_trial(study.ask()._trial_id)
    later = trial.datetime_start + datetime.timedelta(seconds=keys.UNOWNED_AFTER_S + 1)
    assert not keys.is_orphaned(trial, now=trial.datetime_start)
    assert keys.is_orphaned(trial, now=later)


def test_unneeded_waiting_trials_are_dropped() -> None:
    from optuna_kmtpe.workflow._storage import drop_waiting

    study = optuna.create_study()
    study.enqueue_trial({"x": 1})
    assert drop_waiting(study) == 1
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[keys.FAIL_REASON] == keys.FAIL_REASON_NOT_NEEDED


# 6. A worker never writes into a study kmtpe did not create.


@pytest.mark.parametrize("trials", [None, "5"])
def test_worker_refuses_foreign_studies(tmp_path: Path, capsys, trials: str | None) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    optuna.create_study(
        study_name="kmtpe", storage=url, directions=["maximize", "minimize", "minimize"]
    )
    code = main(["worker", "--storage", url, *(["--trials", trials] if trials else [])])
    err = capsys.readouterr().err
    assert code == 2 and "was not created by kmtpe" in err, err
    study = optuna.load_study(study_name="kmtpe", storage=url)
    assert not study.trials and not study.user_attrs


# 8. Cache writes cannot collide.


def test_interleaved_cache_writers_do_not_collide(tmp_path: Path) -> None:
    from optuna_kmtpe.workflow._prepare import write_atomically

    target = tmp_path / "model.pt"

    def outer(tmp: Path) -> None:
        tmp.write_text("outer")
        # Another process writes the same file meanwhile (it would have shared a fixed
        # "model.tmp" name and renamed it away under this writer).
        write_atomically(target, lambda other: other.write_text("inner"))

    write_atomically(target, outer)
    assert target.read_text() == "outer"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left


def test_cache_key_covers_the_data_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = SearchSettings(data="mnist", data_dir=str(tmp_path / "a"))
    second = first.replace(data_dir=str(tmp_path / "b"))
    assert _checkpoint_path(first, "mnist") != _checkpoint_path(second, "mnist")


# 9. Reproducible sampler seeds.


def test_sampler_seed_depends_on_the_first_trial_number_not_the_process() -> None:
    from optuna_kmtpe.workflow._samplers import sampler_seed

    assert sampler_seed(5, 0) == 5
    assert sampler_seed(5, 7) == sampler_seed(5, 7) != sampler_seed(5, 8)
    code = "from optuna_kmtpe.workflow._samplers import sampler_seed; print(sampler_seed(5, 7))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert int(other.stdout) == sampler_seed(5, 7)


def test_a_resumed_run_repeats_its_proposals() -> None:
    from optuna_kmtpe.workflow._samplers import ProcessSampler
    from optuna_kmtpe.workflow._samplers import sampler_seed

    def resumed_params() -> list[dict[str, int]]:
        study = optuna.create_study()
        for x in range(3):  # trials an earlier run finished
            study.add_trial(
                optuna.create_trial(
                    params={"x": x},
                    distributions={"x": optuna.distributions.IntDistribution(0, 99)},
                    value=float(x),
                )
            )
        study.sampler = ProcessSampler(
            lambda seed: make_sampler("random", seed=seed, n_objectives=1), seed=1
        )
        study.optimize(lambda t: t.suggest_int("x", 0, 99), n_trials=4)
        assert study.sampler.seed == sampler_seed(1, 3)
        assert {t.user_attrs[keys.WORKER] for t in study.trials[3:]} == {keys.worker_id()}
        return [t.params for t in study.trials[3:]]

    assert resumed_params() == resumed_params()


# 10. Small things.


def test_report_json_is_valid_json_and_empty_studies_say_so(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    study = optuna.create_study(study_name="kmtpe", storage=url, directions=["maximize"] * 2)
    study.add_trial(optuna.create_trial(values=[0.5, float("inf")]))
    assert main(["report", "--storage", url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert rows[0]["value1"] is None
    empty = optuna.create_study(study_name="empty", storage=url)
    assert pareto_rows(empty) == []
    assert main(["report", "--storage", url, "--study-name", "empty"]) == 0
    assert "No feasible completed trial yet" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["report", "worker", "dashboard"])
def test_mistyped_storage_paths_create_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # type: ignore[no-untyped-def]
    command: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for storage, message in [
        ("sqlite:///typo.db", "no storage file 'typo.db'"),
        ("typo.log", "no storage file 'typo.log'"),
        ("sqlite:///missing/dir.db", "directory 'missing' of the storage"),
    ]:
        assert main([command, "--storage", storage]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_watch_hint_names_the_study() -> None:
    from optuna_kmtpe.cli import _watch_hint

    hint = _watch_hint("postgresql://u:pw@db/k", "mine")
    assert hint == "kmtpe dashboard --storage postgresql://u:***@db/k --study-name mine"


# 7. A config another worker is training is waited for and reused, not trained twice.


def test_a_config_being_trained_elsewhere_is_waited_for_and_reused(tmp_path: Path) -> None:
    import socket

    from optuna_kmtpe.config import QuantConfig
    from optuna_kmtpe.objectives._objective import _same_config_trial

    config = QuantConfig.uniform(["a", "b"], weight_bits=4, act_bits=8)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    first, second = study.ask(), study.ask()
    first.set_user_attr(keys.CONFIG, config.to_dict())
    first.set_user_attr(keys.WORKER, keys.worker_id())  # alive: this process
    waiter, found = _waiting(second, config)
    assert waiter.is_alive(), "the second trial must wait for the first"
    study.tell(first, 0.9)
    waiter.join(timeout=10)
    assert [t.number for t in found] == [first.number]  # type: ignore[attr-defined]

    # The first never waits for the second (no deadlock), and nobody waits for a dead worker.
    third = study.ask()
    third.set_user_attr(
        keys.CONFIG, QuantConfig.uniform(["a", "b"], weight_bits=8, act_bits=8).to_dict()
    )
    assert (
        _same_config_trial(
            first, QuantConfig.uniform(["a", "b"], weight_bits=8, act_bits=8), wait_s=0.05
        )
        is None
    )
    fourth = study.ask()
    fourth.set_user_attr(
        keys.CONFIG, QuantConfig.uniform(["a", "b"], weight_bits=2, act_bits=8).to_dict()
    )
    fourth.set_user_attr(keys.WORKER, f"{socket.gethostname()}:{_dead_pid()}")
    fifth = study.ask()
    assert (
        _same_config_trial(
            fifth, QuantConfig.uniform(["a", "b"], weight_bits=2, act_bits=8), wait_s=0.05
        )
        is None
    )


def _waiting(trial: optuna.Trial, config: object) -> tuple[threading.Thread, list[object]]:
    """Start ``_same_config_trial(trial, config)`` in a thread, give it half a second, and
    return the thread and the list its result lands in."""
    from optuna_kmtpe.objectives._objective import _same_config_trial

    found: list[object] = []
    waiter = threading.Thread(
        target=lambda: found.append(_same_config_trial(trial, config, wait_s=0.05))
    )
    waiter.start()
    waiter.join(timeout=0.5)
    return waiter, found


def test_a_lower_trial_waits_for_a_higher_one_already_training_the_same_config(
    tmp_path: Path,
) -> None:
    """The race the lower-numbers rule leaves: trial 1 checked before trial 0 recorded its
    config, so it trains; trial 0 then sees it and must wait for it, not train too."""

    from optuna_kmtpe.config import QuantConfig
    from optuna_kmtpe.objectives._objective import _same_config_trial

    config = QuantConfig.uniform(["a", "b"], weight_bits=4, act_bits=8)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    lower, higher = study.ask(), study.ask()
    higher.set_user_attr(keys.CONFIG, config.to_dict())
    higher.set_user_attr(keys.WORKER, keys.worker_id())
    assert _same_config_trial(higher, config, wait_s=0.05) is None  # trial 1 trains
    higher.set_user_attr(keys.LAYER_LATENCY_S, {"a": 1e-6, "b": 1e-6})  # ...its costs first
    lower.set_user_attr(keys.CONFIG, config.to_dict())
    waiter, found = _waiting(lower, config)
    assert waiter.is_alive(), "trial 0 must wait for trial 1, which is training its config"
    study.tell(higher, 0.9)
    waiter.join(timeout=10)
    assert [t.number for t in found] == [higher.number]  # type: ignore[attr-defined]


_COLD_CACHE_WRITER = """
import os, sys, time
import os
from pathlib import Path
import torch
from optuna_kmtpe import quant
from optuna_kmtpe.data import load_digits
from optuna_kmtpe.workflow import SearchSettings, pretrained_model

me, other = Path(sys.argv[2]) / sys.argv[3], Path(sys.argv[2]) / sys.argv[4]

def train_float(model, loader, **kwargs):
    me.touch()
    while not other.exists():  # both processes write the cache at the same moment
        time.sleep(0.01)
    return model

real_save = torch.save

def slow_save(obj, path, *args, **kwargs):
    real_save(obj, path, *args, **kwargs)
    time.sleep(0.5)  # a slow disk: the other writer saves meanwhile

quant.train_float = train_float
torch.save = slow_save
settings = SearchSettings(cache_dir=sys.argv[1], pretrain_epochs=1)
pretrained_model(settings, load_digits(seed=0), log=lambda _: None)
"""


@pytest.mark.slow
def test_two_cold_processes_fill_the_cache_at_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    script = tmp_path / "writer.py"
    script.write_text(_COLD_CACHE_WRITER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(cache), str(tmp_path), mine, theirs],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mine, theirs in (("a", "b"), ("b", "a"))
    ]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert [p.suffix for p in cache.iterdir()] == [".pt"]  # one checkpoint, no temporary


def test_the_example_toml_loads_and_states_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "search.toml"
    assert SearchSettings.from_toml(example) == SearchSettings()


def test_kmtpe_called_in_process_leaves_the_callers_logging_as_it_was(
    tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    # A notebook or a test calling cli.main must not lose its logs afterwards.
    logger = logging.getLogger("optuna_kmtpe")
    before = optuna.logging.get_verbosity(), logger.level
    optuna.logging.set_verbosity(optuna.logging.INFO)
    logger.setLevel(logging.INFO)
    try:
        assert main(["report", "--storage", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
        assert (optuna.logging.get_verbosity(), logger.level) == (
            optuna.logging.INFO,
            logging.INFO,
        )
    finally:
        optuna.logging.set_verbosity(before[0])
        logger.setLevel(before[1])
