from __future__ import annotations

import pytest

from optuna_kmtpe.config import FLOAT_LAYER
from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.geometry import kept_channels


def test_json_round_trip_keeps_order_and_values() -> None:
    cfg = QuantConfig({"b": LayerConfig(4, 8, 0.5), "a": {"weight_bits": 1, "act_bits": 2}})
    back = QuantConfig.from_json(cfg.to_json())
    assert back == cfg
    assert list(back) == ["b", "a"]
    assert back["a"].width == 1.0
    assert hash(back) == hash(cfg)


@pytest.mark.parametrize("bits", [0, 9, 12, -1, 2.0, True, "8"])
def test_bad_bits_name_the_layer(bits: object) -> None:
    with pytest.raises(ValueError, match=r"layer 'conv1'.*weight_bits"):
        QuantConfig({"conv1": {"weight_bits": bits}})


@pytest.mark.parametrize("width", [0, 0.0, -0.5, 1.5, float("nan")])
def test_bad_width_names_the_layer(width: float) -> None:
    with pytest.raises(ValueError, match=r"layer 'fc'.*width"):
        QuantConfig({"fc": {"width": width}})


def test_unknown_keys_and_layers_rejected() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        QuantConfig({"fc": {"bits": 4}})
    cfg = QuantConfig.uniform(["conv1", "fc"])
    with pytest.raises(ValueError, match=r"\['fc'\].*Known quantizable layers"):
        cfg.check_layers(["conv1"])
    cfg.check_layers(["conv1", "fc", "extra"])


def test_missing_layer_is_float_and_replace() -> None:
    cfg = QuantConfig.uniform(["a"], weight_bits=4)
    assert cfg.layer("zzz") == FLOAT_LAYER
    cfg2 = cfg.replace("a", width=0.25)
    assert cfg2["a"] == LayerConfig(4, 8, 0.25)
    assert cfg["a"].width == 1.0


def test_bad_json() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        QuantConfig.from_json("{")
    with pytest.raises(ValueError, match="expects an object"):
        QuantConfig.from_json("[1]")


def test_kept_channels_rounding() -> None:
    assert kept_channels(16, 1.0) == 16
    assert kept_channels(16, 0.5) == 8
    assert kept_channels(10, 0.25) == 3  # 2.5 rounds half up
    assert kept_channels(7, 0.01) == 1
    with pytest.raises(ValueError):
        kept_channels(0, 0.5)
