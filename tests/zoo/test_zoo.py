"""Every zoo architecture: the graph is right or refuses, and the whole pipeline runs on it."""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend
from torch.nn.attention import sdpa_kernel
from torch.utils.data import DataLoader
from torch.utils.data import TensorDataset
from zoo_models import ZOO
from zoo_models import zoo_model

from optuna_kmtpe import KMeansTPESampler
from optuna_kmtpe import hardware
from optuna_kmtpe.config import ALLOWED_BITS
from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.geometry import budget_size_bits
from optuna_kmtpe.geometry import kept_channels
from optuna_kmtpe.graph import UnsupportedModelError
from optuna_kmtpe.graph import channel_graph
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.graph import record_layer_calls
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.objectives import TrainingRecipe
from optuna_kmtpe.objectives import make_objective
from optuna_kmtpe.quant import QuantConv1d
from optuna_kmtpe.quant import QuantConv2d
from optuna_kmtpe.quant import QuantLinear
from optuna_kmtpe.quant import apply_config
from optuna_kmtpe.quant import layer_macs
from optuna_kmtpe.quant import layer_report
from optuna_kmtpe.quant import qat_finetune
from optuna_kmtpe.quant._modules import to_quantized_layer
from optuna_kmtpe.sensitivity import LayerSensitivity
from optuna_kmtpe.sensitivity import SensitivityReport
from optuna_kmtpe.sensitivity import compute_sensitivity
from optuna_kmtpe.space import MonotoneSearchSpace


WIDTHS = (0.25, 0.5, 0.75)
NAMES = sorted(ZOO)
_QUANT_TYPES = (QuantConv1d, QuantConv2d, QuantLinear)


def _uniform(
    names: tuple[str, ...] | list[str], bits: int, widths: dict[str, float]
) -> QuantConfig:
    return QuantConfig({n: LayerConfig(bits, bits, widths.get(n, 1.0)) for n in names})


@pytest.mark.parametrize("name", NAMES)
def test_every_offered_width_applies_at_the_smallest_bits(name: str) -> None:
    model, x, _ = zoo_model(name)
    graph = channel_graph(model, x[:2])
    layers = list(quantizable_layers(model))
    configs = [{layer: w} for layer in graph.prunable_layers for w in WIDTHS]
    configs.append(dict.fromkeys(graph.prunable_layers, min(WIDTHS)))
    for widths in configs:
        qmodel = apply_config(model, _uniform(layers, 2, widths), example_input=x[:2])
        assert qmodel(x).shape == model(x).shape, widths
    for layer in set(layers) - set(graph.prunable_layers):
        assert graph.reasons[layer]  # every refusal says why


@pytest.mark.parametrize("name", NAMES)
def test_every_call_of_a_quantized_layer_is_quantized(name: str) -> None:
    model, x, _ = zoo_model(name)
    layers = quantizable_layers(model)
    qmodel = apply_config(model, _uniform(list(layers), 2, {}), example_input=x[:2])
    float_calls = {n: len(c) for n, c in record_layer_calls(model, x, layers).items()}
    quant_calls: dict[str, int] = {}
    float_leaks: list[str] = []
    handles = []
    for path, module in qmodel.named_modules():  # an alias once, under its first path
        if isinstance(module, _QUANT_TYPES):
            handles.append(
                module.register_forward_hook(
                    lambda m, i, o, p=path: quant_calls.__setitem__(p, quant_calls.get(p, 0) + 1)
                )
            )
        elif type(module) in (nn.Conv1d, nn.Conv2d, nn.Linear):
            handles.append(
                module.register_forward_hook(lambda m, i, o, p=path: float_leaks.append(p))
            )
    with torch.no_grad():
        out = qmodel(x)
    for handle in handles:
        handle.remove()
    assert float_leaks == []
    assert quant_calls == {n: c for n, c in float_calls.items() if c}
    assert not torch.allclose(out, model(x), atol=1e-3)
    for path, module in qmodel.named_modules(remove_duplicate=False):
        if path in layers:
            assert isinstance(module, _QUANT_TYPES), path


@pytest.mark.parametrize("name", NAMES)
def test_fpga_and_quant_count_the_same_macs(name: str) -> None:
    model, x, _ = zoo_model(name)
    graph = channel_graph(model, x[:2])
    shapes = hardware.trace_layer_shapes(model, x[:2])
    hw = {layer.name: layer.macs for layer in shapes}
    quant = layer_macs(model, x[:2])
    assert hw == {n: m for n, m in quant.items() if m}
    config = _uniform(
        list(quantizable_layers(model)), 4, dict.fromkeys(graph.prunable_layers, 0.5)
    )
    analytic = layer_macs(model, x[:2], config)
    measured = layer_macs(apply_config(model, config, example_input=x[:2]), x[:2])
    report = hardware.FPGAModel().evaluate(shapes, config)
    assert analytic == measured
    assert {layer.name: layer.macs for layer in report.layers} == {
        n: m for n, m in analytic.items() if m
    }


@pytest.mark.parametrize("name", NAMES)
def test_geometry_agrees_between_scalar_vectorized_hardware_quant_and_space(name: str) -> None:
    model, x, _ = zoo_model(name)
    graph = channel_graph(model, x[:2])
    shapes = hardware.trace_layer_shapes(model, x[:2])
    layers = list(quantizable_layers(model))
    rng = np.random.default_rng(len(name))
    configs = []
    for _ in range(4):
        widths = {n: float(rng.choice((*WIDTHS, 1.0))) for n in graph.prunable_layers}
        bits = rng.choice(ALLOWED_BITS, size=(len(layers), 2)).tolist()
        configs.append(
            QuantConfig(
                {n: LayerConfig(w, a, widths.get(n, 1.0)) for n, (w, a) in zip(layers, bits)}
            )
        )
    wb, ab, wd = hardware.config_arrays(shapes, configs)
    vectorized = shapes.layout.pruned(wd)
    fpga = hardware.FPGAModel()
    batch = fpga.evaluate_batch(shapes, wb, ab, wd)
    report = _fake_report(model, layers)
    space = MonotoneSearchSpace(
        report, weight_bits=ALLOWED_BITS, act_bits=ALLOWED_BITS, widths=(*WIDTHS, 1.0),
        prunable_layers=graph.prunable_layers, producers=graph.producers, order_sigma=math.inf,
    )  # fmt: skip
    for i, config in enumerate(configs):
        scalar = shapes.pruned({n: config.layer(n).width for n in shapes.names})
        assert [(p.in_channels, p.out_channels, p.groups) for p in scalar] == list(
            zip(*(a[i].tolist() for a in vectorized))
        )
        for layer, kept in zip(shapes, scalar):
            if layer.kind != "depthwise":
                width = config.layer(layer.name).width
                assert kept.out_channels == kept_channels(layer.out_channels, width)
        rows = {row["layer"]: row for row in layer_report(model, config, x[:2])}
        assert {p.name: (p.in_channels, p.out_channels) for p in scalar} == {
            n: (rows[n]["in_channels"], rows[n]["out_channels"]) for n in shapes.names
        }
        hw = fpga.evaluate(shapes, config)
        assert {layer.name: layer.macs for layer in hw.layers} == {
            n: row["macs"] for n, row in rows.items() if row["macs"]
        }
        measured = layer_macs(apply_config(model, config, example_input=x[:2]), x[:2])
        assert measured == {n: row["macs"] for n, row in rows.items()}
        for key in ("macs", "size_bits", "bops"):
            assert batch[key][i] == getattr(hw, key)
        weights = {n: row["params"] - (row["out_channels"] if _has_bias(model, n) else 0)
                   for n, row in rows.items()}  # fmt: skip
        assert space.size_bits(config) == pytest.approx(
            sum(budget_size_bits(weights[n], config.layer(n).weight_bits) for n in layers)
        )


def _has_bias(model: nn.Module, name: str) -> bool:
    return model.get_submodule(name).bias is not None


def _fake_report(model: nn.Module, layers: list[str]) -> SensitivityReport:
    """A report with the model's real channel counts (the space's sizes read nothing else)."""
    bits = {b: 1.0 for b in ALLOWED_BITS if b < 16}
    entries = []
    for k, name in enumerate(layers):
        layer = model.get_submodule(name)
        out_c, in_c = (
            (layer.out_features, layer.in_features)
            if isinstance(layer, nn.Linear)
            else (layer.out_channels, layer.in_channels)
        )
        entries.append(
            LayerSensitivity(name, type(layer).__name__, layer.weight.numel(), out_c, in_c,
                             1.0 + k, 0.0, 1, bits)
        )  # fmt: skip
    return SensitivityReport(layers=tuple(entries))


def _exact_trace(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor) -> float:
    weight = dict(model.named_parameters())[f"{name}.weight"].detach()

    def loss(w: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, {f"{name}.weight": w}, (x,))
        return nn.functional.cross_entropy(out, y)

    hessian = torch.autograd.functional.hessian(loss, weight)
    n = weight.numel()
    return float(hessian.reshape(n, n).trace()) / n


@pytest.mark.parametrize("name", NAMES)
def test_hessian_traces_match_exact_hessians(name: str) -> None:
    model, x, y = zoo_model(name)
    report = compute_sensitivity(
        model,
        (x, y),
        max_probes=4,
        min_probes=2,
        deflation_rank=32,
        progress=False,
        weight_bits=(2,),
        act_bits=(4,),
        widths=(0.5,),
    )
    assert all(math.isfinite(layer.trace) for layer in report.layers)
    with sdpa_kernel(SDPBackend.MATH):  # the reference needs double backward too
        for layer in report.layers:
            if layer.n_params <= 64:  # computed exactly by the deflation
                expected = _exact_trace(model, layer.name, x, y)
                assert layer.trace == pytest.approx(expected, rel=1e-3, abs=1e-6), layer.name


@pytest.mark.parametrize("name", NAMES)
def test_qat_step_trains_the_quantized_model(name: str) -> None:
    model, x, y = zoo_model(name)
    layers = list(quantizable_layers(model))
    graph = channel_graph(model, x[:2])
    config = _uniform(layers, 4, dict.fromkeys(graph.prunable_layers, 0.5))
    qmodel = apply_config(model.train(), config, example_input=x[:2])
    before = {k: v.clone() for k, v in qmodel.state_dict().items()}
    trained = qat_finetune(qmodel, [(x, y)], steps=2, lr=0.1, progress=False)
    after = trained.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert torch.isfinite(trained.eval()(x)).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_short_study_completes(name: str) -> None:
    model, x, y = zoo_model(name)
    graph = channel_graph(model, x[:2])
    report = compute_sensitivity(
        model, (x, y), max_probes=4, min_probes=2, progress=False, widths=(0.5, 1.0)
    )
    space = MonotoneSearchSpace(
        report,
        weight_bits=(2, 4, 8),
        act_bits=(4, 8),
        widths=(0.5, 1.0),
        prunable_layers=graph.prunable_layers,
        producers=graph.producers,
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    objective = make_objective(
        model=model,
        train_loader=loader,
        val_loader=loader,
        space=space,
        fpga=hardware.FPGAModel(),
        example_input=x[:2],
        recipe=TrainingRecipe(epochs=1, calibration_batches=1),
        early_stop=None,
    )
    study = optuna.create_study(
        directions=objective.directions, sampler=KMeansTPESampler(seed=0, n_startup_trials=2)
    )
    study.optimize(objective, n_trials=4)
    states = {t.state for t in study.trials}
    assert states == {optuna.trial.TrialState.COMPLETE}


class _ReadsWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.out(h) + h @ self.out.weight.T  # a tied read of out's weight


def test_a_layer_weight_read_directly_is_refused_naming_layer_and_construct() -> None:
    with pytest.raises(UnsupportedModelError, match=r"Layer 'out': its weight is read directly"):
        channel_graph(_ReadsWeight(), torch.zeros(2, 4))
    assert issubclass(UnsupportedModelError, ValueError)  # the CLI prints it as one line


def test_norms_softmax_shared_and_attention_layers_are_not_offered_widths() -> None:
    graph = channel_graph(*zoo_model("norms_and_softmax")[:2])
    assert "GroupNorm" in graph.reasons["conv1"] and "softmax" in graph.reasons["conv2"]
    assert "LayerNorm" in graph.reasons["conv3"]
    graph = channel_graph(*zoo_model("shared_layer")[:2])
    assert "more than once" in graph.reasons["shared"] and "shared" in graph.reasons["inp"]
    model, x, _ = zoo_model("multihead_attention")
    assert list(quantizable_layers(model)) == ["embed", "head"]  # attn.out_proj stays float


def test_aliased_layer_is_quantized_under_every_path() -> None:
    model, x, _ = zoo_model("aliased_layer")
    qmodel = apply_config(model, {"body": LayerConfig(2, 2)})
    assert qmodel.alias is qmodel.body and isinstance(qmodel.body, QuantConv2d)


def test_quantized_layer_does_not_share_hooks_with_the_original() -> None:
    layer = nn.Linear(3, 2)
    quantized = to_quantized_layer(layer, weight_bits=4, act_bits=8)
    quantized.register_forward_hook(lambda *_: None)
    assert not layer._forward_hooks and quantized.weight is layer.weight


class _ScaledConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(x)


class _HasScaledConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.scaled = _ScaledConv(4, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.scaled(self.stem(x)).mean(dim=(2, 3)))


def test_a_user_subclass_of_a_torch_layer_is_refused_before_the_search() -> None:
    # Its quantized twin would run nn.Conv2d's forward and drop the factor 2 silently.
    with pytest.raises(UnsupportedModelError, match=r"Layer 'scaled': it is a _ScaledConv"):
        channel_graph(_HasScaledConv(), torch.zeros(1, 1, 8, 8))
    float_graph = channel_graph(DigitsCNN(), torch.zeros(1, 1, 8, 8))
    qmodel = apply_config(DigitsCNN(), {"features.0": LayerConfig(4, 8)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # traced, not the untraceable fallback
        quantized_graph = channel_graph(qmodel, torch.zeros(1, 1, 8, 8))
    assert quantized_graph == float_graph  # the package's own twins pass, with the same graph
