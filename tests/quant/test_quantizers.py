from __future__ import annotations

from typing import Any

import pytest
import torch

from optuna_kmtpe.quant import UniformQuantizer
from optuna_kmtpe.quant import integer_range
from optuna_kmtpe.quant import stochastic_round


def fake_quantize_weight(
    w: torch.Tensor, bits: int, generator: torch.Generator | None = None, **options: Any
) -> torch.Tensor:
    return UniformQuantizer(**options).fake_quantize_weight(w, bits, generator=generator)


def _weight(seed: int = 0, shape: tuple[int, ...] = (8, 4, 3, 3)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("range_method", ["max", "mse"])
def test_per_channel_weight_has_at_most_two_pow_bits_values_per_channel(
    bits: int, symmetric: bool, range_method: str
) -> None:
    w = _weight(shape=(6, 40, 3, 3))  # 360 values per channel: more than 2^8
    wq = fake_quantize_weight(w, bits, symmetric_weights=symmetric, range_method=range_method)
    for row in wq.reshape(6, -1):
        distinct = len(torch.unique(row))
        assert 2 <= distinct <= 2**bits
    # Quantization changes the values except at 8 bits where the error is tiny but non-zero.
    assert not torch.equal(wq, w)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_per_tensor_weight_has_at_most_two_pow_bits_values(bits: int) -> None:
    wq = fake_quantize_weight(_weight(), bits, per_channel=False)
    assert len(torch.unique(wq)) <= 2**bits


def test_per_channel_uses_one_scale_per_output_channel() -> None:
    w = _weight()
    w[0] *= 100.0  # a huge channel must not coarsen the others
    per_channel = fake_quantize_weight(w, 4, range_method="max")
    per_tensor = fake_quantize_weight(w, 4, per_channel=False, range_method="max")
    err_pc = (per_channel[1:] - w[1:]).abs().mean()
    err_pt = (per_tensor[1:] - w[1:]).abs().mean()
    assert err_pc < err_pt / 5


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_symmetric_weight_levels_and_range_are_symmetric(bits: int) -> None:
    w = _weight()
    q, scale, zero_point = UniformQuantizer(range_method="max").weight_to_int(w, bits)
    assert torch.all(zero_point == 0)
    q_min, q_max = integer_range(bits, signed=True)
    assert q_min == -q_max
    assert q.min() >= q_min and q.max() <= q_max
    # max-abs scaling: each channel's largest magnitude lands exactly on +-q_max.
    assert torch.all(q.reshape(q.shape[0], -1).abs().amax(dim=1) == q_max)
    # The quantizer is odd: Q(-W) = -Q(W).
    assert torch.allclose(fake_quantize_weight(-w, bits), -fake_quantize_weight(w, bits))


def test_symmetric_activation_range_is_symmetric() -> None:
    spec = UniformQuantizer(symmetric_acts=True)
    scale, zero_point = spec.activation_qparams(-0.5, 2.0, 4)
    assert float(zero_point) == 0.0
    x = torch.linspace(-3, 3, 101)
    xq = spec.fake_quantize_activation(x, 4, scale, zero_point)
    assert torch.isclose(xq.max(), torch.tensor(2.0))
    assert torch.isclose(xq.min(), torch.tensor(-2.0))


def test_asymmetric_activation_covers_observed_range_and_keeps_zero_exact() -> None:
    scale, zero_point = UniformQuantizer().activation_qparams(-1.0, 3.0, 8)
    x = torch.tensor([-1.0, 0.0, 3.0, 5.0, -4.0])
    xq = UniformQuantizer().fake_quantize_activation(x, 8, scale, zero_point)
    assert xq[1] == 0.0
    assert torch.allclose(xq, torch.tensor([-1.0, 0.0, 3.0, 3.0, -1.0]), atol=scale.item())


def test_asymmetric_weights_use_zero_point_and_unsigned_range() -> None:
    w = _weight().abs() + 0.1  # all positive: symmetric would waste half of the levels
    q, _, zero_point = UniformQuantizer(symmetric_weights=False, range_method="max").weight_to_int(
        w, 4
    )
    assert q.min() >= 0 and q.max() <= 15
    sym_err = (fake_quantize_weight(w, 4, range_method="max") - w).square().sum()
    asym = fake_quantize_weight(w, 4, symmetric_weights=False, range_method="max")
    asym_err = (asym - w).square().sum()
    assert asym_err < sym_err


def test_integer_weights_reconstruct_the_fake_quantized_tensor() -> None:
    w = _weight()
    for bits in (1, 3, 8):
        for symmetric in (True, False):
            q, scale, zero_point = UniformQuantizer(symmetric_weights=symmetric).weight_to_int(
                w, bits
            )
            rebuilt = scale.reshape(-1, 1, 1, 1) * (q - zero_point.reshape(-1, 1, 1, 1))
            assert torch.allclose(
                rebuilt, fake_quantize_weight(w, bits, symmetric_weights=symmetric)
            )


def test_binary_weights_are_sign_times_mean_abs_per_channel() -> None:
    w = _weight()
    wq = fake_quantize_weight(w, 1)
    mean_abs = w.abs().reshape(8, -1).mean(dim=1).reshape(-1, 1, 1, 1)
    assert torch.allclose(wq, torch.where(w >= 0, mean_abs, -mean_abs))


@pytest.mark.parametrize("bits", [16, 32])
def test_float_bits_leave_tensors_unchanged(bits: int) -> None:
    w = _weight()
    assert fake_quantize_weight(w, bits) is w
    one, zero = torch.tensor(1.0), torch.tensor(0.0)
    assert UniformQuantizer().fake_quantize_activation(w, bits, one, zero) is w


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_ste_passes_gradients_through(bits: int) -> None:
    w = _weight().requires_grad_(True)
    upstream = torch.randn(w.shape)
    (fake_quantize_weight(w, bits) * upstream).sum().backward()
    assert w.grad is not None and torch.equal(w.grad, upstream)

    x = torch.randn(5, 7, requires_grad=True)
    spec = UniformQuantizer()
    scale, zero_point = spec.activation_qparams(x.min().item(), x.max().item(), bits)
    spec.fake_quantize_activation(x, bits, scale, zero_point).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.ones_like(x))


def test_mse_range_beats_max_abs_at_low_bits_and_matches_at_eight() -> None:
    w = _weight(shape=(16, 16, 3, 3))
    for bits in (2, 3):
        mse = (fake_quantize_weight(w, bits, range_method="mse") - w).square().sum()
        mx = (fake_quantize_weight(w, bits, range_method="max") - w).square().sum()
        assert mse < 0.8 * mx
    assert torch.equal(
        fake_quantize_weight(w, 8, range_method="mse"),
        fake_quantize_weight(w, 8, range_method="max"),
    )


def test_stochastic_rounding_is_unbiased() -> None:
    x = torch.rand(200_000, generator=torch.Generator().manual_seed(1)) * 6 - 3
    rounded = stochastic_round(x, generator=torch.Generator().manual_seed(2))
    assert torch.all((rounded == torch.floor(x)) | (rounded == torch.ceil(x)))
    assert abs(float((rounded - x).mean())) < 0.005
    # Nearest rounding of a constant fraction is biased; stochastic is not.
    const = torch.full((100_000,), 0.3)
    sr = stochastic_round(const, generator=torch.Generator().manual_seed(3))
    assert abs(float(sr.mean()) - 0.3) < 0.01


def test_stochastic_rounding_is_seeded() -> None:
    w = _weight()

    def draw(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return fake_quantize_weight(w, 3, rounding="stochastic", generator=gen)

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_stochastic_weight_quantization_is_unbiased_inside_the_range() -> None:
    w = _weight(shape=(4, 64))
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack(
        [
            fake_quantize_weight(w, 3, rounding="stochastic", generator=gen, range_method="max")
            for _ in range(2000)
        ]
    )
    scale, _ = UniformQuantizer(range_method="max").weight_qparams(w, 3)
    assert (draws.mean(dim=0) - w).abs().max() < 0.1 * scale.max()


@pytest.mark.parametrize("bad", [0, 9, 12, -1, 2.0, True, "8"])
def test_bad_bits_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="1..8"):
        fake_quantize_weight(_weight(), bad)  # type: ignore[arg-type]


def test_bad_options_raise_value_error() -> None:
    with pytest.raises(ValueError, match="rounding"):
        fake_quantize_weight(_weight(), 4, rounding="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="range_method"):
        fake_quantize_weight(_weight(), 4, range_method="p99")  # type: ignore[arg-type]
