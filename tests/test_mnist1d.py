"""MNIST-1D: the offline generator, the 1-D ResNet-20, and the pipeline on Conv1d layers."""

from __future__ import annotations

import random
import socket
import sys
import urllib.request

import numpy as np
import pytest
import torch

from optuna_kmtpe import hardware
from optuna_kmtpe import quant
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.data import load_mnist1d
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.graph import channel_graph
from optuna_kmtpe.models import ResNet20_1D
from optuna_kmtpe.models import build_model


pytest.importorskip("mnist1d")


@pytest.fixture(scope="module")
def splits():  # type: ignore[no-untyped-def]
    return load_mnist1d(n_samples=400)


def _no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(repr(args[:2]))
        raise AssertionError(f"network access attempted: {args[:2]}")

    import requests

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


def test_shapes_dtypes_and_balanced_classes(splits) -> None:  # type: ignore[no-untyped-def]
    assert splits.name == "mnist1d" and splits.input_shape == (1, 40)
    assert splits.num_classes == 10
    assert [len(splits.train), len(splits.val), len(splits.test)] == [260, 60, 80]
    for part in (splits.train, splits.val, splits.test):
        x, y = part.tensors
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 40)
        assert y.dtype == torch.int64
    assert torch.bincount(splits.test.tensors[1], minlength=10).tolist() == [8] * 10


def test_deterministic_under_the_seed_without_touching_global_rngs(
    splits,  # type: ignore[no-untyped-def]
) -> None:
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    again = load_mnist1d(n_samples=400)
    assert (random.random(), np.random.rand()) == before  # the generator's reseeding is undone
    for a, b in zip(splits, again):
        if isinstance(a, torch.utils.data.TensorDataset):
            assert all(torch.equal(ta, tb) for ta, tb in zip(a.tensors, b.tensors))
    other = load_mnist1d(n_samples=400, seed=1)
    assert not torch.equal(splits.train.tensors[0], other.train.tensors[0])


def test_generation_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _no_network(monkeypatch)
    assert len(load_mnist1d(n_samples=200, seed=3).train) > 0
    assert calls == []


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # import raises ImportError
    with pytest.raises(ImportError, match="pip install mnist1d"):
        load_mnist1d(n_samples=200)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 50}, "n_samples"),
        ({"val_fraction": 0.5, "test_fraction": 0.45}, "at least 10%"),
        ({"val_fraction": 0.0}, r"\(0, 1\)"),
    ],
)
def test_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_mnist1d(**kwargs)  # type: ignore[arg-type]


def test_resnet20_1d_layout() -> None:
    model = build_model("resnet20_1d")
    assert isinstance(model, ResNet20_1D)
    assert len(quant.quantizable_layers(model)) == 20
    assert sum(p.numel() for p in model.parameters()) == 91_162
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)
    graph = channel_graph(model, torch.zeros(2, 1, 40))
    # Option-A shortcuts tie the stem and every block's second conv to the residual stream;
    # the first conv of each of the 9 blocks is free to narrow.
    assert graph.prunable_layers == tuple(
        f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)
    )
    (tied,) = graph.tied_groups
    assert tied[0] == "conv1" and len(tied) == 10
    assert graph.producers["layer2.0.conv2"] == "layer2.0.conv1"


def _mixed_config(model: torch.nn.Module, graph) -> QuantConfig:  # type: ignore[no-untyped-def]
    config = QuantConfig.uniform(quant.quantizable_layers(model), weight_bits=4, act_bits=4)
    for i, name in enumerate(graph.prunable_layers):
        config = config.replace(name, width=0.5 if i % 2 == 0 else 0.75, weight_bits=2)
    return config


def test_quantized_narrowed_model_runs_and_costs_follow(splits) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model("resnet20_1d").eval()
    example = splits.val.tensors[0][:2]
    graph = channel_graph(model, example)
    config = _mixed_config(model, graph)
    qmodel = quant.apply_config(model, config, example_input=example)
    layers = quant.quantizable_layers(qmodel)
    assert layers["layer1.0.conv1"].out_channels == 8  # 0.5 of 16
    assert layers["layer1.0.conv2"].in_channels == 8
    assert layers["layer3.1.conv1"].out_channels == 48  # 0.75 of 64
    assert layers["layer1.0.conv2"].out_channels == 16  # tied: full width
    quant.calibrate(qmodel, make_loader(splits.train, batch_size=64), num_batches=1)
    out = qmodel(splits.val.tensors[0])
    assert out.shape == (len(splits.val), 10) and torch.isfinite(out).all()
    assert sum(p.numel() for p in model.parameters()) == 91_162  # the original is untouched

    shapes = hardware.trace_layer_shapes(model, example)
    assert shapes.layers[0].kind == "conv1d" and shapes.layers[0].output_shape == (16, 40)
    fpga = hardware.FPGAModel(device=hardware.get_device("pynq-z2"))
    uniform8 = QuantConfig.uniform(layers, weight_bits=8, act_bits=8)
    cheap, full = fpga.evaluate(shapes, config), fpga.evaluate(shapes, uniform8)
    assert 0 < cheap.latency_s < full.latency_s and 0 < cheap.energy_j < full.energy_j


def test_sensitivity_on_conv1d(splits) -> None:  # type: ignore[no-untyped-def]
    from optuna_kmtpe.sensitivity import compute_sensitivity

    torch.manual_seed(0)
    model = build_model("resnet20_1d").eval()
    report = compute_sensitivity(
        model,
        make_loader(splits.train, batch_size=64),
        num_batches=1,
        max_probes=16,
        progress=False,
    )
    assert len(report.layers) == 20
    assert all(np.isfinite(layer.trace) for layer in report.layers)
