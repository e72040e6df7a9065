"""The quantizer options: settings, flags and TOML keys, stored with the study, on to the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_kmtpe.cli import _search_settings
from optuna_kmtpe.cli import build_parser
from optuna_kmtpe.cli import main
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import recipe_for
from optuna_kmtpe.workflow._settings import QUANTIZER_SETTINGS
from optuna_kmtpe.workflow._settings import load_settings
from optuna_kmtpe.workflow._settings import resumed_settings


CHANGED = {
    "power_of_two_scales": True,
    "rounding": "stochastic",
    "range_method": "max",
    "symmetric_weights": False,
    "symmetric_acts": True,
}
FLAGS = [
    "--power-of-two-scales",
    "--rounding", "stochastic",
    "--range-method", "max",
    "--no-symmetric-weights",
    "--symmetric-acts",
]  # fmt: skip


def test_defaults_are_the_first_choice_and_every_option_is_covered() -> None:
    settings = SearchSettings()
    assert set(CHANGED) == set(QUANTIZER_SETTINGS)
    assert all(getattr(settings, n) == values[0] for n, values in QUANTIZER_SETTINGS.items())


def _built_layer(settings: SearchSettings):
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
    assert {n: getattr(settings, n) for n in CHANGED} == CHANGED
    layer = _built_layer(settings.replace(mode="ptq"))
    assert layer.quant_spec.power_of_two and layer.input_quantizer.quant_spec.power_of_two
    assert (layer.quant_spec.rounding, layer.quant_spec.range_method) == ("stochastic", "max")
    assert layer.quant_spec.symmetric_weights is False and layer.quant_spec.symmetric_acts is True


def test_flags_reach_the_quantizer() -> None:
    _assert_changed(_search_settings(build_parser().parse_args(["search", *FLAGS])))


def test_toml_keys_reach_the_quantizer(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        "[search]\npower-of-two-scales = true\nrounding = 'stochastic'\n"
        "range-method = 'max'\nsymmetric-weights = false\nsymmetric_acts = true\n"
    )
    settings, names = load_settings(config=path, overrides={})
    assert set(CHANGED) <= names
    _assert_changed(settings)
    assert SearchSettings.from_dict(settings.to_dict()) == settings  # stored and read back


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rounding", "up"], "rounding must be one of ['nearest', 'stochastic'], got 'up'."),
        (["--range-method", "minmax"], "range_method must be one of ['mse', 'max']"),
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


def test_a_bad_toml_value_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.toml"
    path.write_text("symmetric-weights = 'yes'\n")
    assert main(["search", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kmtpe: error: ")
    assert "symmetric_weights must be true or false, got 'yes'" in err[0]


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_changing_an_option_on_resume_is_refused(name: str) -> None:
    stored = SearchSettings()
    given = stored.replace(**{name: CHANGED[name]})
    with pytest.raises(ValueError, match=f"other settings: {name} "):
        resumed_settings(stored, given, explicit={name})
    assert resumed_settings(stored, stored, explicit={name}) == stored
