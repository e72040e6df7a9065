from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.geometry import kept_channels
from optuna_kmtpe.graph import channel_graph
from optuna_kmtpe.models import MLP
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.models import ResNet20
from optuna_kmtpe.quant import QuantConv2d
from optuna_kmtpe.quant import QuantLinear
from optuna_kmtpe.quant import activation_quantizers
from optuna_kmtpe.quant import apply_config
from optuna_kmtpe.quant import bops
from optuna_kmtpe.quant import calibrate
from optuna_kmtpe.quant import count_parameters
from optuna_kmtpe.quant import evaluate
from optuna_kmtpe.quant import export_quantized
from optuna_kmtpe.quant import layer_macs
from optuna_kmtpe.quant import model_size_bits
from optuna_kmtpe.quant import ptq
from optuna_kmtpe.quant import qat_finetune
from optuna_kmtpe.quant import quantizable_layers
from optuna_kmtpe.quant import recalibrate_batchnorm
from optuna_kmtpe.quant import save_quantized
from optuna_kmtpe.quant import train_float


DIGITS_INPUT = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
CIFAR_INPUT = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _seeded(model_cls: type[nn.Module], seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    return model_cls(**kwargs)


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    return state, modes


def _assert_unchanged(model: nn.Module, snapshot: tuple[dict, dict]) -> None:
    state, modes = snapshot
    now = model.state_dict()
    assert now.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(now[key], value), key
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert not any(isinstance(m, (QuantConv2d, QuantLinear)) for m in model.modules())


def _digits_batches(n: int = 3, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen))
        for _ in range(n)
    ]


# --- width -------------------------------------------------------------------------------


def test_width_keeps_exactly_the_largest_l1_channels_and_shrinks_consumers() -> None:
    model = _seeded(DigitsCNN).eval()
    config = QuantConfig({"features.3": LayerConfig(32, 32, 0.5)})
    qmodel = apply_config(model, config, example_input=DIGITS_INPUT)

    weight = model.features[3].weight.detach()
    norms = weight.abs().sum(dim=(1, 2, 3))
    expected = sorted(torch.topk(norms, 16).indices.tolist())
    kept_weight = qmodel.features[3].weight.detach()
    assert kept_weight.shape == (16, 16, 3, 3)
    assert torch.equal(kept_weight, weight[expected])
    # Every kept channel is at least as large as every removed one.
    removed = [i for i in range(32) if i not in expected]
    assert norms[expected].min() >= norms[removed].max()
    # BatchNorm of the pruned conv and the next conv's inputs follow.
    bn, next_conv = qmodel.features[4], qmodel.features[7]
    assert bn.num_features == 16
    assert torch.equal(bn.running_mean, model.features[4].running_mean[expected])
    assert torch.equal(bn.weight.detach(), model.features[4].weight.detach()[expected])
    assert next_conv.in_channels == 16
    assert torch.equal(next_conv.weight.detach(), model.features[7].weight.detach()[:, expected])


def test_width_keeps_forward_valid_and_reduces_params_by_the_expected_amount() -> None:
    model = _seeded(DigitsCNN)
    config = QuantConfig(
        {"features.0": LayerConfig(8, 8, 0.5), "features.7": LayerConfig(4, 8, 0.25)}
    )
    qmodel = apply_config(model, config, example_input=DIGITS_INPUT)
    assert qmodel(DIGITS_INPUT).shape == model(DIGITS_INPUT).shape
    # conv0: 16->8 out (1*9 weights each), BN0: 2 params/channel, conv3: 8 fewer inputs (32*8*9),
    # conv7: 32->8 out (32*9 each), BN7: 2 each, classifier: 24 fewer inputs (10*24).
    removed = 8 * 9 + 8 * 2 + 32 * 8 * 9 + 24 * 32 * 9 + 24 * 2 + 10 * 24
    assert count_parameters(model) - count_parameters(qmodel) == removed
    assert model_size_bits(model, config, example_input=DIGITS_INPUT) == model_size_bits(qmodel)


def test_width_after_flatten_removes_input_multiplier_features_per_channel() -> None:
    class FlattenNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=1)
            self.fc = nn.Linear(6 * 4 * 4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(x))
            x = nn.functional.max_pool2d(x, 2)
            return self.fc(x.flatten(1))

    model = _seeded(FlattenNet)
    qmodel = apply_config(model, {"conv": LayerConfig(4, 8, 0.5)}, example_input=DIGITS_INPUT)
    kept = qmodel.conv.kept_out_channels
    assert kept is not None and len(kept) == 3
    columns = [c * 16 + j for c in kept for j in range(16)]
    assert qmodel.fc.in_features == 48
    assert torch.equal(qmodel.fc.weight.detach(), model.fc.weight.detach()[:, columns])
    # With float bits the pruned model computes exactly the float model minus those channels.
    float_pruned = apply_config(
        model, {"conv": LayerConfig(32, 32, 0.5)}, example_input=DIGITS_INPUT
    )
    reference = model.fc.weight.detach()[:, columns]
    with torch.no_grad():
        feats = nn.functional.max_pool2d(torch.relu(model.conv(DIGITS_INPUT)), 2)[:, kept]
        expected = feats.flatten(1) @ reference.T + model.fc.bias
        assert torch.allclose(float_pruned(DIGITS_INPUT), expected, atol=1e-5)


def test_width_uses_kept_channels_rounding() -> None:
    model = _seeded(MLP)
    for width in (0.1, 0.33, 0.5, 0.77):
        qmodel = apply_config(
            model, {"net.3": LayerConfig(8, 8, width)}, example_input=DIGITS_INPUT
        )
        assert qmodel.net[3].out_features == kept_channels(32, width)
        assert qmodel.net[5].in_features == kept_channels(32, width)


def test_residual_ties_detected_on_resnet20() -> None:
    model = ResNet20()
    graph = channel_graph(model, CIFAR_INPUT)
    conv2s = [n for n in graph.layers if n.endswith("conv2")]
    assert len(conv2s) == 9
    tied = {name for group in graph.tied_groups for name in group}
    assert set(conv2s) <= tied and "conv1" in tied
    for name in conv2s:
        with pytest.raises(ValueError, match=rf"{name}.*residual"):
            apply_config(model, {name: LayerConfig(8, 8, 0.5)}, example_input=CIFAR_INPUT)
    # The first conv of each block is free: narrowing it keeps ResNet-20 valid.
    config = QuantConfig({n: LayerConfig(4, 4, 0.5) for n in graph.layers if n.endswith(".conv1")})
    qmodel = apply_config(model, config, example_input=CIFAR_INPUT)
    assert qmodel.layer2[1].conv1.out_channels == 16 and qmodel.layer2[1].conv2.in_channels == 16
    assert qmodel(CIFAR_INPUT).shape == (2, 10)


def test_prebuilt_graph_gives_the_same_model_without_tracing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _seeded(DigitsCNN)
    graph = channel_graph(model, DIGITS_INPUT)
    config = QuantConfig({"features.0": LayerConfig(4, 8, 0.5), "features.3": LayerConfig(8, 4)})
    traced = apply_config(model, config, example_input=DIGITS_INPUT)

    def no_trace(*args: object) -> None:
        raise AssertionError("traced again")

    monkeypatch.setattr("optuna_kmtpe.quant._apply.channel_graph", no_trace)
    handed = apply_config(model, config, example_input=DIGITS_INPUT, graph=graph)
    assert traced.state_dict().keys() == handed.state_dict().keys()
    assert all(torch.equal(a, handed.state_dict()[k]) for k, a in traced.state_dict().items())
    with pytest.raises(ValueError, match="traced on layers"):
        mlp_config = {"net.1": LayerConfig(8, 8, 0.5)}
        apply_config(_seeded(MLP), mlp_config, example_input=DIGITS_INPUT, graph=graph)


def test_output_layer_cannot_be_narrowed() -> None:
    with pytest.raises(ValueError, match="classifier.*model output"):
        apply_config(
            DigitsCNN(), {"classifier": LayerConfig(8, 8, 0.5)}, example_input=DIGITS_INPUT
        )


# --- validation and immutability ------------------------------------------------------------


def test_bad_configs_and_models_raise_value_error_naming_the_fix() -> None:
    model = DigitsCNN()
    with pytest.raises(ValueError, match="no quantizable layer"):
        apply_config(nn.Sequential(nn.ReLU()), {})
    with pytest.raises(ValueError, match="conv9"):
        apply_config(model, {"conv9": LayerConfig(8, 8, 1.0)})
    with pytest.raises(ValueError, match="weight_bits=0"):
        apply_config(model, {"features.0": {"weight_bits": 0}})
    with pytest.raises(ValueError, match="act_bits=9"):
        apply_config(model, {"features.0": {"act_bits": 9}})
    with pytest.raises(ValueError, match="width=0"):
        apply_config(model, {"features.0": {"width": 0}})
    with pytest.raises(ValueError, match="example_input"):
        apply_config(model, {"features.0": LayerConfig(8, 8, 0.5)})
    with pytest.raises(ValueError, match="rounding"):
        apply_config(model, {}, rounding="up")
    qmodel = apply_config(model, {"features.0": LayerConfig(8, 8, 1.0)})
    with pytest.raises(ValueError, match="already"):
        apply_config(qmodel, {})


@pytest.mark.parametrize("training", [True, False])
def test_user_model_unchanged_after_every_call(training: bool) -> None:
    model = _seeded(DigitsCNN).train(training)
    snapshot = _snapshot(model)
    names = list(quantizable_layers(model))
    config = QuantConfig(
        {**{n: LayerConfig(4, 4, 1.0) for n in names}, "features.3": LayerConfig(4, 4, 0.5)}
    )
    batches = _digits_batches()
    qmodel = apply_config(model, config, example_input=DIGITS_INPUT)
    assert qmodel.training == training
    q_snapshot = _snapshot(qmodel)
    tuned = qat_finetune(qmodel, batches, steps=2, progress=False)
    _assert_unchanged_state(qmodel, q_snapshot)  # QAT works on a copy of the quantized model
    trained = train_float(model, batches, epochs=1, progress=False)
    ptq(model, config, batches, example_input=DIGITS_INPUT)
    evaluate(model, batches)
    model_size_bits(model, config, example_input=DIGITS_INPUT)
    layer_macs(model, DIGITS_INPUT, config)
    bops(model, config, DIGITS_INPUT)
    channel_graph(model, DIGITS_INPUT)
    _assert_unchanged(model, snapshot)
    assert tuned is not qmodel and trained is not model


def _assert_unchanged_state(model: nn.Module, snapshot: tuple[dict, dict]) -> None:
    state, modes = snapshot
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_quantized_layers_keep_paths_types_and_float_layers_stay_float() -> None:
    model = _seeded(DigitsCNN)
    qmodel = apply_config(model, {"features.3": LayerConfig(4, 8, 1.0)})
    assert isinstance(qmodel.features[3], QuantConv2d)
    assert isinstance(qmodel.features[3], nn.Conv2d)
    assert type(qmodel.features[0]) is nn.Conv2d and type(qmodel.classifier) is nn.Linear
    assert list(quantizable_layers(qmodel)) == list(quantizable_layers(model))
    assert list(activation_quantizers(qmodel)) == ["features.3.input_quantizer"]
    # The quantized weight actually used has at most 2^4 values per channel.
    used = qmodel.features[3].quantized_weight().detach().reshape(32, -1)
    assert max(len(torch.unique(row)) for row in used) <= 16


def test_qat_gradients_reach_float_weights_through_ste() -> None:
    model = _seeded(DigitsCNN)
    names = list(quantizable_layers(model))
    qmodel = apply_config(model, QuantConfig.uniform(names, weight_bits=2, act_bits=2)).train()
    x, y = _digits_batches(1)[0]
    nn.functional.cross_entropy(qmodel(x), y).backward()
    for name in names:
        grad = qmodel.get_submodule(name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_activation_ranges_ema_during_training_and_frozen_in_eval() -> None:
    qmodel = apply_config(_seeded(MLP), QuantConfig.uniform(["net.1", "net.3"], act_bits=4))
    quantizer = qmodel.net[1].input_quantizer
    qmodel.train()
    qmodel(torch.full((8, 64), 1.0))
    assert float(quantizer.max_val) == pytest.approx(1.0)  # first batch initializes
    qmodel(torch.full((8, 64), 3.0))
    assert float(quantizer.max_val) == pytest.approx(1.0 + 0.1 * 2.0)  # EMA, momentum 0.1
    qmodel.eval()
    out = qmodel.net[1].input_quantizer(torch.full((2, 64), 5.0))
    assert float(quantizer.max_val) == pytest.approx(1.2)
    assert torch.allclose(out, torch.full((2, 64), 1.2))  # clipped to the stored range


def test_calibration_minmax_and_percentile() -> None:
    qmodel = apply_config(_seeded(MLP), QuantConfig.uniform(["net.1"], act_bits=8)).train()
    data = torch.rand(4, 256, 64, generator=torch.Generator().manual_seed(0))
    data[0, 0, 0] = 50.0  # one outlier
    calibrate(qmodel, list(data), method="minmax", num_batches=None)
    quantizer = qmodel.net[1].input_quantizer
    assert float(quantizer.max_val) == pytest.approx(50.0)
    calibrate(qmodel, list(data), method="percentile", num_batches=None, percentile=99.9)
    assert 0.9 < float(quantizer.max_val) < 2.0
    assert qmodel.training  # mode restored
    with pytest.raises(ValueError, match="method"):
        calibrate(qmodel, list(data), method="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no activation quantizer"):
        calibrate(MLP(), list(data))


def test_recalibrate_batchnorm_matches_batch_statistics() -> None:
    model = _seeded(DigitsCNN)
    batches = _digits_batches(2)
    recalibrate_batchnorm(model, batches, num_batches=None)
    with torch.no_grad():
        first = torch.cat([model.features[0](x) for x, _ in batches])
    expected = first.mean(dim=(0, 2, 3))
    assert torch.allclose(model.features[1].running_mean, expected, atol=1e-5)
    assert model.features[1].momentum == 0.1


# --- training loops ------------------------------------------------------------------------


def test_qat_callback_runs_per_epoch_and_may_raise() -> None:
    qmodel = apply_config(_seeded(MLP), QuantConfig.uniform(["net.1", "net.3", "net.5"]))
    batches = _digits_batches(3)
    seen: list[int] = []
    qat_finetune(qmodel, batches, epochs=3, progress=False, callback=lambda e, m: seen.append(e))
    assert seen == [0, 1, 2]
    seen.clear()
    qat_finetune(qmodel, batches, steps=7, progress=False, callback=lambda e, m: seen.append(e))
    assert seen == [0, 1, 2]  # two full passes and the partial third

    class Stop(Exception):
        pass

    def stop(epoch: int, model: nn.Module) -> None:
        raise Stop

    with pytest.raises(Stop):
        qat_finetune(qmodel, batches, epochs=2, progress=False, callback=stop)
    with pytest.raises(ValueError, match="exactly one"):
        qat_finetune(qmodel, batches, epochs=1, steps=1)
    with pytest.raises(ValueError, match="optimizer"):
        qat_finetune(qmodel, batches, epochs=1, optimizer="rmsprop")  # type: ignore[arg-type]


def test_training_is_seeded_and_reproducible() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10))
    batches = _digits_batches(2)
    a = train_float(model, batches, epochs=2, seed=3, progress=False)
    b = train_float(model, batches, epochs=2, seed=3, progress=False)
    c = train_float(model, batches, epochs=2, seed=4, progress=False)
    assert torch.equal(a[2].weight, b[2].weight)
    assert not torch.equal(a[2].weight, c[2].weight)


# --- accounting and export --------------------------------------------------------------------


def test_accounting_macs_size_and_bops() -> None:
    model = DigitsCNN()
    macs = layer_macs(model, DIGITS_INPUT)
    # conv0: 8x8 positions * 16 out * 1*9; conv3: 64 * 32 * 16*9; conv7 after pool: 16 * 32*32*9.
    assert macs == {
        "features.0": 64 * 16 * 9,
        "features.3": 64 * 32 * 16 * 9,
        "features.7": 16 * 32 * 32 * 9,
        "classifier": 320,
    }
    names = list(macs)
    config = QuantConfig(
        {
            "features.0": LayerConfig(8, 8, 1.0),
            "features.3": LayerConfig(4, 4, 1.0),
            "features.7": LayerConfig(2, 8, 1.0),
        }
    )
    expected_bops = (
        macs["features.0"] * 64
        + macs["features.3"] * 16
        + macs["features.7"] * 16
        + macs["classifier"] * 32 * 32
    )
    assert bops(model, config, DIGITS_INPUT) == expected_bops
    assert bops(apply_config(model, config), None, DIGITS_INPUT) == expected_bops
    float_bits = model_size_bits(model)
    weights = [model.get_submodule(n).weight.numel() for n in names]
    assert float_bits == 32 * (sum(weights) + 10)  # conv layers have no bias
    quant_bits = model_size_bits(model, config)
    assert quant_bits == (
        weights[0] * 8
        + weights[1] * 4
        + weights[2] * 2
        + weights[3] * 32
        + 10 * 32
        + (16 + 32 + 32) * 32  # per-channel scales
    )
    narrowed = QuantConfig({"features.3": LayerConfig(4, 4, 0.5)})
    pruned_macs = layer_macs(model, DIGITS_INPUT, narrowed)
    assert pruned_macs["features.3"] == macs["features.3"] // 2
    assert pruned_macs["features.7"] == macs["features.7"] // 2
    qmodel = apply_config(model, narrowed, example_input=DIGITS_INPUT)
    assert layer_macs(qmodel, DIGITS_INPUT) == pruned_macs


def test_export_reproduces_fake_quantized_weights(tmp_path: object) -> None:
    model = _seeded(DigitsCNN)
    config = QuantConfig(
        {
            "features.0": LayerConfig(8, 8, 1.0),
            "features.3": LayerConfig(3, 4, 0.5),
            "features.7": LayerConfig(1, 8, 1.0),
        }
    )
    qmodel = apply_config(model, config, example_input=DIGITS_INPUT)
    calibrate(qmodel, [DIGITS_INPUT])
    data = json.loads(json.dumps(export_quantized(qmodel)))
    assert QuantConfig.from_dict(data["config"]) == config
    for name in ("features.0", "features.3", "features.7"):
        entry = data["layers"][name]
        layer = qmodel.get_submodule(name)
        q = torch.tensor(entry["weight_int"], dtype=torch.float32)
        scale = torch.tensor(entry["weight_scale"]).reshape(-1, 1, 1, 1)
        zero = torch.tensor(entry["weight_zero_point"], dtype=torch.float32).reshape(-1, 1, 1, 1)
        assert torch.equal(scale * (q - zero), layer.quantized_weight().detach())
        bits = entry["weight_bits"]
        limit = 1 if bits == 1 else 2 ** (bits - 1) - 1
        assert q.abs().max() <= limit
        assert entry["input_calibrated"] and entry["input_scale"] > 0
    assert len(data["layers"]["features.3"]["kept_out_channels"]) == 16
    assert "weight" in data["layers"]["classifier"]  # float layer
    path = tmp_path / "model.json"  # type: ignore[operator]
    save_quantized(qmodel, path)
    assert json.loads(path.read_text())["format"] == data["format"]


def test_deepcopy_and_stochastic_rounding_model() -> None:
    model = _seeded(MLP)
    config = QuantConfig.uniform(["net.1", "net.3", "net.5"], weight_bits=3)
    qmodel = apply_config(model, config, rounding="stochastic", seed=1).train()
    x = torch.rand(4, 64)
    first = qmodel.net[1].quantized_weight()
    second = qmodel.net[1].quantized_weight()
    assert not torch.equal(first, second)  # fresh draws in training
    qmodel.eval()
    assert torch.equal(qmodel.net[1].quantized_weight(), qmodel.net[1].quantized_weight())
    again = apply_config(model, config, rounding="stochastic", seed=1).train()
    assert torch.equal(again.net[1].quantized_weight(), first)
    assert copy.deepcopy(qmodel)(x).shape == (4, 10)
