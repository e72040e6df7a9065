"""Tracing real models, pruned shapes, device presets and files, torch-free import."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch
from torch import nn

from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.hardware import DEFAULT_DEVICE
from optuna_kmtpe.hardware import DEVICE_PRESETS
from optuna_kmtpe.hardware import FPGAModel
from optuna_kmtpe.hardware import get_device
from optuna_kmtpe.hardware import trace_layer_shapes
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.models import ResNet20


class _MixedNet(nn.Module):
    """Conv1d, a depthwise and a grouped conv, and a Linear after flattening C x L."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 8, 3, padding=1)
        self.dw = nn.Conv1d(8, 16, 3, padding=1, groups=8)
        self.g = nn.Conv1d(16, 8, 1, groups=4)
        self.bn = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.g(self.dw(self.c1(x)))))
        return self.fc(torch.flatten(x, 1))


def test_trace_digits_cnn_shapes_and_producers() -> None:
    shapes = trace_layer_shapes(DigitsCNN(), torch.zeros(3, 1, 8, 8))
    assert shapes.names == ("features.0", "features.3", "features.7", "classifier")
    conv2 = shapes["features.3"]
    assert (conv2.kind, conv2.input_shape, conv2.output_shape) == (
        "conv2d",
        (16, 8, 8),
        (32, 8, 8),
    )
    assert (conv2.kernel, conv2.stride, conv2.groups, conv2.producer) == (
        (3, 3),
        (1, 1),
        1,
        "features.0",
    )
    assert shapes["features.7"].input_shape == (32, 4, 4)
    assert shapes["classifier"].producer == "features.7"
    assert shapes["classifier"].kind == "linear" and shapes["classifier"].macs == 320
    pruned = shapes.pruned({"features.0": 0.5, "features.3": 0.25})
    assert [(p.in_channels, p.out_channels) for p in pruned] == [(1, 8), (8, 8), (8, 32), (32, 10)]


def test_trace_resnet20_has_twenty_layers_and_residual_inputs() -> None:
    shapes = trace_layer_shapes(ResNet20(), torch.zeros(1, 3, 32, 32))
    assert len(shapes) == 20
    assert shapes["layer1.0.conv2"].producer == "layer1.0.conv1"
    # The second block reads a residual sum: its channels do not follow one layer.
    assert shapes["layer1.1.conv1"].producer is None
    assert shapes["layer2.0.conv1"].output_shape == (32, 16, 16)
    assert shapes["layer2.0.conv1"].stride == (2, 2)
    assert sum(layer.macs for layer in shapes) == shapes.macs > 40_000_000


def test_trace_mixed_kinds_and_flatten_multiplier() -> None:
    model = _MixedNet()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shapes = trace_layer_shapes(model, torch.randn(4, 2, 6))
    assert [s.kind for s in shapes] == ["conv1d", "depthwise", "grouped", "linear"]
    assert shapes["fc"].producer == "g" and shapes["fc"].input_multiplier == 6
    assert shapes["dw"].depth_multiplier == 2
    # Never mutates the model: modes and buffers (BatchNorm statistics) unchanged.
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # A narrower conv1d shrinks the depthwise layer that follows it.
    pruned = shapes.pruned({"c1": 0.5})
    assert [(p.in_channels, p.out_channels, p.groups) for p in pruned[:2]] == [
        (2, 4, 1),
        (4, 8, 4),
    ]
    report = FPGAModel(device="ultra96").evaluate(
        shapes, QuantConfig({"c1": LayerConfig(4, 8, 0.5), "fc": LayerConfig(2, 2, 1.0)})
    )
    assert report.layers[1].in_channels == 4 and report.latency_s > 0


def test_trace_rejects_non_modules() -> None:
    with pytest.raises(ValueError, match="nn.Module"):
        trace_layer_shapes("model", torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="batch axis"):
        trace_layer_shapes(DigitsCNN(), torch.zeros(8))


def test_presets_carry_sources_and_default_exists() -> None:
    assert DEFAULT_DEVICE in DEVICE_PRESETS
    assert {"pynq-z2", "ultra96", "zcu102", "u250", "vck190"} <= set(DEVICE_PRESETS)
    for name, device in DEVICE_PRESETS.items():
        assert device.name == name and device.sources
        assert get_device(name.upper()) is device
    assert get_device("zcu102").dsp_count == 2520 and get_device("pynq-z2").bram36 == 140


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_user_device_from_file(tmp_path, suffix: str) -> None:
    fields = dict(
        part="xczu7ev",
        dsp_kind="DSP48E2",
        dsp_count=1728,
        bram36=312,
        clock_hz=3e8,
        dram_bandwidth=19.2e9,
        static_power_w=0.6,
    )
    path = tmp_path / f"board{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(fields))
    else:
        path.write_text(
            "[device]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items())
        )
    device = get_device(path)
    assert device.name == "board" and device.dsp_count == 1728 and device.bram36 == 312
    assert FPGAModel(device=str(path)).device == device
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**fields, "dsps": 3}))
    with pytest.raises(ValueError, match="unknown keys"):
        get_device(bad)
    with pytest.raises(ValueError, match="does not exist"):
        get_device(tmp_path / "missing.toml")


def test_cost_model_imports_neither_torch_nor_optuna() -> None:
    # The package __init__ imports the (optuna) sampler; a bare package module skips it, so
    # that only what the cost model itself imports is loaded.
    code = (
        "import sys, types; pkg = types.ModuleType('optuna_kmtpe'); "
        "pkg.__path__ = [__import__('os').path.abspath('optuna_kmtpe')]; "
        "sys.modules['optuna_kmtpe'] = pkg; import optuna_kmtpe.hardware as h; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'optuna' not in sys.modules, 'optuna imported'; print(len(h.DEVICE_PRESETS))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == str(len(DEVICE_PRESETS))
