"""Power-of-two scales: every weight and activation scale is 2^k, and the model still learns."""

from __future__ import annotations

import torch

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.quant import PowerOfTwoQuantizer
from optuna_kmtpe.quant import UniformQuantizer
from optuna_kmtpe.quant import apply_config
from optuna_kmtpe.quant import calibrate
from optuna_kmtpe.quant import export_quantized
from optuna_kmtpe.quant import quantizable_layers


def _is_power_of_two(values: torch.Tensor) -> bool:
    exponents = torch.log2(values.double())
    return bool(torch.equal(exponents, exponents.round()))


def test_weight_scales_are_powers_of_two_at_every_bit_width() -> None:
    weight = torch.randn(8, 3, 3, 3)
    for bits in (1, 2, 3, 4, 8):
        for symmetric in (True, False):
            spec = PowerOfTwoQuantizer(symmetric_weights=symmetric)
            _, scale, zero_point = spec.weight_to_int(weight, bits)
            assert _is_power_of_two(scale), (bits, symmetric)
            assert torch.equal(zero_point, zero_point.round())


def test_power_of_two_weights_sit_on_their_grid_and_cost_some_error() -> None:
    torch.manual_seed(0)
    weight = torch.randn(16, 32)
    exact = UniformQuantizer().fake_quantize_weight(weight, 4)
    po2 = PowerOfTwoQuantizer().fake_quantize_weight(weight, 4)
    scale, _ = PowerOfTwoQuantizer().weight_qparams(weight, 4)
    levels = po2 / scale[:, None]
    assert torch.equal(levels, levels.round())
    assert levels.abs().max() <= 7
    # The MSE search picks among power-of-two scales: worse than free scales, not by much.
    error, po2_error = (exact - weight).square().mean(), (po2 - weight).square().mean()
    assert error <= po2_error < 2 * error


def test_binary_scale_is_the_nearest_power_of_two_of_mean_abs() -> None:
    weight = torch.tensor([[0.7, -0.7, 0.7, -0.7], [0.2, -0.2, 0.2, 0.2]])
    _, scale, _ = PowerOfTwoQuantizer().weight_to_int(weight, 1)
    assert scale.tolist() == [0.5, 0.25]


def test_activation_scale_is_the_nearest_power_of_two_in_log_scale() -> None:
    scale, zero_point = PowerOfTwoQuantizer().activation_qparams(-0.3, 2.6, 4)
    assert _is_power_of_two(scale)
    free, _ = UniformQuantizer().activation_qparams(-0.3, 2.6, 4)
    assert 2**-0.5 <= float(scale / free) <= 2**0.5
    assert float(zero_point) == round(0.3 / float(scale))


def test_apply_config_quantizes_the_whole_model_with_power_of_two_scales() -> None:
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    config = QuantConfig.uniform(quantizable_layers(model), weight_bits=4, act_bits=4)
    qmodel = apply_config(model, config, quantizer="power_of_two")
    calibrate(qmodel, [torch.rand(32, 1, 8, 8)], num_batches=1)
    for name, layer in quantizable_layers(qmodel).items():
        scale, _ = layer.input_quantizer.qparams()
        assert _is_power_of_two(scale), name
        assert _is_power_of_two(
            torch.tensor(export_quantized(qmodel)["layers"][name]["weight_scale"])
        )
    assert qmodel(torch.rand(2, 1, 8, 8)).shape == (2, 10)
