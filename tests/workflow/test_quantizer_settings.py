"""The quantizer options: settings, flags and TOML keys, stored with the study, on to the model.

The quantizer is one setting, ``quantizer`` (any registered name); the deprecated
``power_of_two_scales`` is accepted as ``quantizer = "power_of_two"``, also in the settings that
studies stored before the ``quantizer`` setting existed.
"""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
import pytest

import optuna_kmtpe
from optuna_kmtpe import records as keys
from optuna_kmtpe.cli import _search_settings
from optuna_kmtpe.cli import build_parser
from optuna_kmtpe.cli import main
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import _api
from optuna_kmtpe.workflow import recipe_for
from optuna_kmtpe.workflow._settings import QUANTIZER_SETTINGS
from optuna_kmtpe.workflow._settings import load_settings
from optuna_kmtpe.workflow._settings import resumed_settings


CHANGED = {
    "quantizer": "power_of_two",
    "rounding": "stochastic",
    "range_method": "max",
    "symmetric_weights": False,
    "symmetric_acts": True,
}
FLAGS = [
    "--quantizer", "power_of_two",
    "--rounding", "stochastic",
    "--range-method", "max",
    "--no-symmetric-weights",
    "--symmetric-acts",
]  # fmt: skip
UNKNOWN = "Unknown quantizer 'lsq'; choose one of ['uniform', 'binary', 'power_of_two']"


def test_every_option_is_covered_and_the_defaults_are_the_recipes() -> None:
    from optuna_kmtpe.quant import TrainingRecipe

    assert set(CHANGED) == set(QUANTIZER_SETTINGS)
    recipe, default = recipe_for(SearchSettings()), TrainingRecipe()
    assert all(getattr(recipe, n) == getattr(default, n) for n in QUANTIZER_SETTINGS)


def _built_layer(settings: SearchSettings) -> Any:
    import torch

    from optuna_kmtpe.config import QuantConfig
    from optuna_kmtpe.data import load_digits
    from optuna_kmtpe.data import make_loader
    from optuna_kmtpe.models import MLP
    from optuna_kmtpe.quant import run_recipe

    splits = load_digits()
    torch.manual_seed(0)
    config = QuantConfig.uniform(["net.1", "net.3", "net.5"], weight_bits=4, act_bits=4)
    recipe = recipe_for(settings)
    loader = make_loader(splits.val, batch_size=256)
    return run_recipe(MLP(), config, recipe, train_loader=loader, val_loader=loader).model.net[1]


def _assert_changed(settings: SearchSettings) -> None:
    from optuna_kmtpe.quant import PowerOfTwoQuantizer

    assert {n: getattr(settings, n) for n in CHANGED} == CHANGED
    layer = _built_layer(settings.replace(mode="ptq"))
    assert type(layer.quant_spec) is PowerOfTwoQuantizer
    assert layer.quant_spec.power_of_two and layer.input_quantizer.quant_spec.power_of_two
    assert (layer.quant_spec.rounding, layer.quant_spec.range_method) == ("stochastic", "max")
    assert layer.quant_spec.symmetric_weights is False and layer.quant_spec.symmetric_acts is True


def test_flags_reach_the_quantizer() -> None:
    _assert_changed(_search_settings(build_parser().parse_args(["search", *FLAGS])))


def test_toml_keys_reach_the_quantizer(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        "[search]\nquantizer = 'power_of_two'\nrounding = 'stochastic'\n"
        "range-method = 'max'\nsymmetric-weights = false\nsymmetric_acts = true\n"
    )
    settings, names = load_settings(config=path, overrides={})
    assert set(CHANGED) <= names
    _assert_changed(settings)
    assert SearchSettings.from_dict(settings.to_dict()) == settings  # stored and read back


def test_the_deprecated_power_of_two_flag_and_key_are_the_power_of_two_quantizer(
    tmp_path: Path,
) -> None:
    power_of_two = SearchSettings(quantizer="power_of_two")
    argv = ["search", "--power-of-two-scales"]
    assert _search_settings(build_parser().parse_args(argv)) == power_of_two
    path = tmp_path / "run.toml"
    for value, expected in (("true", power_of_two), ("false", SearchSettings())):
        path.write_text(f"power-of-two-scales = {value}\n")
        assert load_settings(config=path, overrides={})[0] == expected
    # The flag overrides the file, as every flag does; the same setting twice must agree.
    path.write_text("quantizer = 'binary'\n")
    overrides = {"power_of_two_scales": True}
    assert load_settings(config=path, overrides=overrides)[0] == power_of_two
    with pytest.raises(ValueError, match="conflicts with quantizer 'binary'"):
        SearchSettings.from_dict({"quantizer": "binary", "power_of_two_scales": True})


def test_settings_stored_before_the_quantizer_setting_load_and_resume() -> None:
    for flag, quantizer in ((True, "power_of_two"), (False, "uniform")):
        stored = SearchSettings(quantizer=quantizer).to_dict()
        del stored["quantizer"]
        old = SearchSettings.from_dict({**stored, "power_of_two_scales": flag})
        assert old == SearchSettings(quantizer=quantizer)
        # Re-running the study's original command line resumes it; another quantizer does not.
        given = SearchSettings(quantizer=quantizer, n_trials=50)
        assert resumed_settings(old, given, explicit={"quantizer", "n_trials"}).n_trials == 50
        other = SearchSettings(quantizer="uniform" if flag else "power_of_two")
        with pytest.raises(ValueError, match="other settings: quantizer "):
            resumed_settings(old, other, explicit={"quantizer"})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quantizer", "lsq"], UNKNOWN),
        (["--quantizer", "binary", "--power-of-two-scales"], "conflicts with quantizer 'binary'"),
        (["--rounding", "up"], "rounding must be one of ['nearest', 'stochastic'], got 'up'."),
        (["--range-method", "minmax"], "range_method must be one of ['max', 'mse']"),
        (
            ["--quantizer", "binary", "--weight-bits", "1,2"],
            "quantizer 'binary' cannot use weight_bits 2: The binary quantizer quantizes 1-bit",
        ),
    ],
)
def test_a_bad_flag_value_is_one_error_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    assert main(["search", "--storage", storage, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kmtpe: error: ") and message in err[0]
    assert not (tmp_path / "kmtpe.db").exists()


@pytest.mark.parametrize(
    "toml, message",
    [
        ("symmetric-weights = 'yes'\n", "symmetric_weights must be true or false, got 'yes'"),
        ("quantizer = 'lsq'\n", UNKNOWN),
        ("power-of-two-scales = 'yes'\n", "power_of_two_scales must be true or false"),
    ],
)
def test_a_bad_toml_value_is_one_error_line(
    toml: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(toml)
    storage = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    assert main(["search", "--config", str(path), "--storage", storage]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kmtpe: error: ") and message in err[0]
    assert not (tmp_path / "kmtpe.db").exists()


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_changing_an_option_on_resume_is_refused(name: str) -> None:
    stored = SearchSettings()
    given = stored.replace(**{name: CHANGED[name]})
    with pytest.raises(ValueError, match=f"other settings: {name} "):
        resumed_settings(stored, given, explicit={name})
    assert resumed_settings(stored, stored, explicit={name}) == stored


@pytest.fixture
def halving() -> Iterator[type]:
    """A quantizer registered in this process: uniform, with every weight scale halved."""
    from optuna_kmtpe.quant import UniformQuantizer
    from optuna_kmtpe.quant import register_quantizer
    from optuna_kmtpe.quant import unregister_quantizer

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class HalvingQuantizer(UniformQuantizer):
        def weight_qparams(self, weight, bits, *, clip_ratio=None):  # type: ignore[no-untyped-def]
            scale, zero_point = super().weight_qparams(weight, bits, clip_ratio=clip_ratio)
            return scale / 2, zero_point

    register_quantizer("halving", HalvingQuantizer)
    yield HalvingQuantizer
    unregister_quantizer("halving")


def test_a_registered_quantizer_is_selected_by_the_settings(halving: type) -> None:
    settings = SearchSettings.from_dict({"quantizer": "halving", "mode": "ptq"})
    assert type(_built_layer(settings).quant_spec) is halving
    assert _search_settings(build_parser().parse_args(["search", "--quantizer", "halving"]))


def test_a_registered_quantizer_is_selected_by_the_python_search(
    halving: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch import nn
    from torch.utils.data import TensorDataset

    class Started(Exception):
        pass

    def run_search(settings: SearchSettings, **_: Any) -> None:
        raise Started(settings)

    monkeypatch.setattr(_api, "run_search", run_search)
    model, data = nn.Linear(4, 2), TensorDataset()
    storage = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    with pytest.raises(Started) as started:
        optuna_kmtpe.search(model, data, data, quantizer="halving", storage=storage)
    assert started.value.args[0].quantizer == "halving"
    with pytest.raises(
        ValueError, match=r"Unknown quantizer 'lsq'; .*'power_of_two', 'halving'\]"
    ):
        optuna_kmtpe.search(model, data, data, quantizer="lsq", storage=storage)
    assert not (tmp_path / "kmtpe.db").exists()


def test_power_of_two_search_worker_resume_and_export_keep_the_quantizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna_kmtpe import quant

    specs: list[set[str]] = []
    run_recipe = quant.run_recipe

    def spy(*args: Any, **kwargs: Any) -> quant.RecipeResult:
        result = run_recipe(*args, **kwargs)
        layers = quant.quantizable_layers(result.model).values()
        specs.append({type(layer.quant_spec).__name__ for layer in layers})
        return result

    monkeypatch.setattr(quant, "run_recipe", spy)
    monkeypatch.setenv("KMTPE_CACHE_DIR", str(tmp_path / "cache"))
    storage = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    fast = ["--storage", storage, "--qat-epochs", "1", "--threads", "1", "--quiet"]
    search = ["search", *fast, "--pretrain-epochs", "3", "--hessian-max-probes", "8"]
    search += ["--no-warm-start", "--weight-bits", "4,8", "--act-bits", "8", "--widths", "1"]
    assert main([*search, "--trials", "2", "--quantizer", "power_of_two"]) == 0
    study = optuna.load_study(study_name="kmtpe", storage=storage)
    assert study.user_attrs[keys.STUDY_RUN]["quantizer"] == "power_of_two"
    # The study as a version before the quantizer setting stored it: it resumes, and a worker
    # and the export rebuild the same quantizer from it.
    old = dict(study.user_attrs[keys.STUDY_RUN])
    del old["quantizer"]
    study.set_user_attr(keys.STUDY_RUN, {**old, "power_of_two_scales": True})
    assert main([*search, "--trials", "3", "--power-of-two-scales"]) == 0
    assert main(["worker", *fast[:2], "--trials", "4", "--quiet"]) == 0
    path = tmp_path / "model.json"
    argv = ["report", *fast[:2], "--trial", "0", "--export-model", str(path)]
    assert main(argv) == 0
    assert len(study.trials) == 4 and len(specs) >= 3  # a duplicate config is not retrained
    assert all(found == {"PowerOfTwoQuantizer"} for found in specs)
    exported = json.loads(path.read_text())
    assert exported["quantizer"] == "power_of_two"
    assert all(layer["weight_power_of_two"] for layer in exported["layers"].values())
