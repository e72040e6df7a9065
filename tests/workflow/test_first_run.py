"""First-run friction (issue 14 items 11, 15): budgets and short runs say what they do."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
import pytest

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives import warm_start_configs
from optuna_kmtpe.sensitivity import LayerSensitivity
from optuna_kmtpe.sensitivity import SensitivityReport
from optuna_kmtpe.space import MonotoneSearchSpace
from optuna_kmtpe.workflow._budgets import over_budget_note
from optuna_kmtpe.workflow._tables import TrialLine


def _latency(config: QuantConfig) -> dict[str, float]:
    return {
        "latency_s": sum(
            (1e-5 if max(c.weight_bits, c.act_bits) <= 4 else 2e-5) * c.width
            for c in config.values()
        )
    }


def _space(budget: float | None) -> MonotoneSearchSpace:
    layers = tuple(
        LayerSensitivity(f"l{i}", "Linear", 100 * (i + 1), 8, 8, 0.1 / (i + 1), 1e-4, 64,
                         {b: 4.0**-b for b in (2, 4, 8)})
        for i in range(3)
    )  # fmt: skip
    return MonotoneSearchSpace(
        SensitivityReport(layers=layers),
        weight_bits=(2, 4, 8),
        act_bits=(4, 8),
        widths=(0.5, 1.0),
        prunable_layers=["l0", "l1", "l2"],
        order_sigma=float("inf"),
        budgets=None if budget is None else {"latency_s": budget},
        cost_fn=_latency,
    )


def test_warm_starts_over_the_budget_are_replaced_not_dropped() -> None:
    free = warm_start_configs(_space(None), weight_bits=(2, 4, 8), act_bits=(4, 8))
    lines: list[str] = []
    space = _space(2.5e-5)
    kept = warm_start_configs(space, weight_bits=(2, 4, 8), act_bits=(4, 8), log=lines.append)
    assert len(kept) == len(free)
    assert all(space.fits_budget(config) for _, config in kept)
    for _, config in kept:
        space.params_for(config)  # enqueueable
    assert any(label == "uniform-w8a8 within budget" for label, _ in kept)
    assert any("uniform-w8a8 breaks the budgets: replaced" in line for line in lines)


def test_an_over_budget_trial_prints_the_metric_and_the_limit() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_s"])
    trial = optuna.trial.create_trial(
        state=TrialState.COMPLETE,
        values=[0.0, 3e-5],
        user_attrs={
            keys.FEASIBLE: False,
            keys.CONSTRAINTS: {"latency_s": 0.5},
            "latency_s": 3e-5,
            keys.CONFIG: QuantConfig.uniform(["a"], weight_bits=8).to_dict(),
        },
    )
    study.add_trial(trial)
    lines: list[str] = []
    try:  # the metric objects of the study (issue 11); older code took the names
        from optuna_kmtpe.records import study_metrics

        metrics: list = list(study_metrics(study))
    except ImportError:
        metrics = ["accuracy", "latency_s"]
    TrialLine(1, metrics, lines.append)(study, study.trials[0])
    assert "over budget: latency_s 30.00us > limit 20.00us, not trained" in lines[0]
    assert "accuracy" not in lines[0] and "0.00%" not in lines[0]
    assert over_budget_note({keys.CONSTRAINTS: {"device_dsp": 3.0}}) == (
        "over budget: device_dsp exceeded by 3, not trained"
    )


def test_short_runs_and_worker_counts_say_what_they_mean(capsys) -> None:  # type: ignore[no-untyped-def]
    from optuna_kmtpe.cli import main
    from optuna_kmtpe.workflow._tables import running_line
    from optuna_kmtpe.workflow._tables import warm_start_line

    assert "all 5 trials are warm starts, the kmtpe sampler proposes none" in (
        warm_start_line(5, n_trials=5, sampler="kmtpe")
    )
    assert "trials 1-5 of 40; the tpe sampler proposes the other 35" in (
        warm_start_line(5, n_trials=40, sampler="tpe")
    )
    assert "the study's total" in running_line(3, n_trials=10, sampler="kmtpe", worker=True)
    for command, wanted in (("search", "the sampler proposes the rest"), ("worker", "total")):
        try:
            main([command, "--help"])
        except SystemExit:
            pass
        assert wanted in " ".join(capsys.readouterr().out.split())


def test_a_bare_toml_number_is_a_one_element_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optuna_kmtpe.workflow import SearchSettings

    (tmp_path / "run.toml").write_text("weight_bits = 4\nact_bits = 8\nwidths = 1\n")
    settings = SearchSettings.from_toml(tmp_path / "run.toml")
    assert (settings.weight_bits, settings.act_bits, settings.widths) == ((4,), (8,), (1.0,))


def test_export_to_an_unwritable_path_fails_before_retraining(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from optuna_kmtpe.workflow import _inspect

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("retrained before checking the output path")

    monkeypatch.setattr(_inspect, "prepare_job", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    study = optuna.create_study()
    for path in (blocker / "model.json", tmp_path / "missing" / "model.json", tmp_path):
        with pytest.raises(ValueError, match="Cannot write the model"):
            _inspect.export_trial_model(study, 0, str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no probe left behind


def test_progress_in_a_log_file_is_one_line_per_update(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    from optuna_kmtpe import _progress

    log = (tmp_path / "log.txt").open("w")
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(_progress, "LOG_INTERVAL_S", 0.0)
    with _progress.progress_bar(total=4, desc="Training", mininterval=0.0) as bar:
        for _ in range(4):
            bar.update(1)
    log.close()
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert len(lines) >= 4 and "\r" not in "".join(lines)
    assert all(len(line) < 200 and line.startswith("Training") for line in lines)


def test_float_training_shows_progress(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optuna_kmtpe import quant
    from optuna_kmtpe.workflow import SearchSettings
    from optuna_kmtpe.workflow._prepare import load_data
    from optuna_kmtpe.workflow._prepare import pretrained_model

    seen: list[bool] = []

    def fake_train_float(model, loader, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("progress"))
        return model

    monkeypatch.setattr(quant, "train_float", fake_train_float)
    settings = SearchSettings(cache_dir=str(tmp_path), pretrain_epochs=1)
    pretrained_model(settings, load_data(settings), log=lambda _m: None, progress=True)
    assert seen == [True]


def test_the_pruning_prior_is_on_by_default_and_a_flag_or_key_turns_it_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optuna_kmtpe.cli import _search_settings
    from optuna_kmtpe.cli import build_parser
    from optuna_kmtpe.workflow import SearchSettings
    from optuna_kmtpe.workflow._settings import load_settings

    def parsed(*flags: str) -> SearchSettings:
        return _search_settings(build_parser().parse_args(["search", *flags]))

    assert parsed().pruning_prior is True
    assert parsed("--no-pruning-prior").pruning_prior is False
    path = tmp_path / "run.toml"
    path.write_text("[search]\npruning-prior = false\n")
    settings, names = load_settings(config=path, overrides={})
    assert settings.pruning_prior is False and "pruning_prior" in names
    assert SearchSettings.from_dict(settings.to_dict()) == settings  # stored and read back
    # A study stored before the setting existed loads with the default.
    stored = SearchSettings().to_dict()
    del stored["pruning_prior"]
    assert SearchSettings.from_dict(stored).pruning_prior is True


def test_the_accuracy_window_is_a_flag_a_key_and_validated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optuna_kmtpe.cli import _search_settings
    from optuna_kmtpe.cli import build_parser
    from optuna_kmtpe.workflow import SearchSettings
    from optuna_kmtpe.workflow._settings import load_settings

    def parsed(*flags: str) -> SearchSettings:
        return _search_settings(build_parser().parse_args(["search", *flags]))

    assert parsed().accuracy_window == 0.05
    assert parsed("--accuracy-window", "0.2").accuracy_window == 0.2
    path = tmp_path / "run.toml"
    path.write_text("[search]\naccuracy-window = 0.15\n")
    settings, names = load_settings(config=path, overrides={})
    assert settings.accuracy_window == 0.15 and "accuracy_window" in names
    stored = SearchSettings().to_dict()
    del stored["accuracy_window"]  # a study stored before the setting existed
    assert SearchSettings.from_dict(stored).accuracy_window == 0.05
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="accuracy_window must be a fraction in"):
            SearchSettings(accuracy_window=bad)
