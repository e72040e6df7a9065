"""Pure fake-quantization functions with a straight-through estimator (STE).

Everything here is a stateless function of tensors: the modules in ``_modules.py`` only hold
the state (activation ranges, bit-widths) and call these.

Conventions (also what ``_export.py`` writes out):

* A quantized value is ``scale * (q - zero_point)`` with an integer ``q``.
* Weights, symmetric (default): ``zero_point = 0`` and ``q`` in the *narrow* signed range
  ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (2^b - 1 levels, symmetric around zero). Narrow range is what
  packed low-bit FPGA multipliers require (FINN's ``mvu_4sx4u`` needs weights in [-7, 7]) and
  keeps ``-q`` representable.
* Weights, asymmetric: ``q`` in ``[0, 2^b - 1]`` with an integer zero point.
* 1-bit weights are binary, BinaryConnect/XNOR style: ``sign(W) * mean|W|`` (per channel), i.e.
  ``q`` in ``{-1, +1}`` and ``scale = mean|W|``, whatever ``symmetric`` says.
* 16 and 32 bits mean "keep in float": the tensor is returned unchanged.
* Activations: asymmetric by default with ``q`` in ``[0, 2^b - 1]`` (post-ReLU activations are
  non-negative, so the range starts at 0 and no level is wasted on negatives); symmetric uses
  the narrow signed range like weights.
* Power-of-two scales (``power_of_two=True``, weights and activations): every scale is a power
  of two ``2^k``, so that rescaling is a bit shift and the values map exactly onto fixed-point
  types (hls4ml's ``ap_fixed``, FINN's thresholds). Weight scales are rounded up
  (:func:`power_of_two_scale`) and the MSE clipping search picks among them; binary weights
  take the power of two nearest ``mean|W|``; activation scales take the nearest power of two in
  log scale (rounding them up cost 10 points on MNIST-1D at W4A4, the nearest one 0.3: see
  ``docs/export.md``).

The gradient is the straight-through estimator of ``x + (Q(x) - x).detach()``: quantized values
in the forward pass, the identity in the backward pass. ``Q(x)`` is computed under ``no_grad`` and
joined to the graph by a one-node autograd function (:func:`straight_through`), which keeps the
forward bit-exact and records nothing else, so QAT costs only a few percent per training step
over float (see ``docs/quantization.md``).
"""

from __future__ import annotations

from typing import Literal
from typing import get_args

import torch

from optuna_kmtpe.config import check_bits
from optuna_kmtpe.config import is_float_bits


RoundingMode = Literal["nearest", "stochastic"]
RangeMethod = Literal["max", "mse"]
ROUNDING_MODES: tuple[str, ...] = get_args(RoundingMode)
RANGE_METHODS: tuple[str, ...] = get_args(RangeMethod)

_MSE_GRID_SIZE = 24
_MSE_MIN_RATIO = 0.3


def integer_range(bits: int, *, signed: bool) -> tuple[int, int]:
    """Integer range ``(q_min, q_max)`` of a ``bits``-bit quantizer.

    Signed ranges are narrow (symmetric): ``[-(2^(b-1) - 1), 2^(b-1) - 1]``; 1 signed bit is the
    binary set ``{-1, +1}``. Unsigned ranges are ``[0, 2^b - 1]``.

    Example:
        >>> integer_range(4, signed=True), integer_range(4, signed=False)
        ((-7, 7), (0, 15))
    """
    check_bits(bits, allow_float=False)
    if not signed:
        return 0, 2**bits - 1
    if bits == 1:
        return -1, 1
    half = 2 ** (bits - 1) - 1
    return -half, half


def power_of_two_scale(scale: torch.Tensor) -> torch.Tensor:
    """The smallest power of two ``2^k >= scale``, element-wise (``k`` any integer).

    Example:
        >>> power_of_two_scale(torch.tensor([0.3, 0.25, 3.0])).tolist()
        [0.5, 0.25, 4.0]
    """
    return torch.exp2(torch.ceil(torch.log2(scale)))


def _nearest_power_of_two(value: torch.Tensor) -> torch.Tensor:
    """The power of two closest to ``value`` in absolute distance (for binary scales, whose
    squared error is a parabola around ``mean|W|``)."""
    low = torch.exp2(torch.floor(torch.log2(value)))
    return torch.where(2 * low - value < value - low, 2 * low, low)


def _log_nearest_power_of_two(scale: torch.Tensor) -> torch.Tensor:
    return torch.exp2(torch.round(torch.log2(scale)))


def stochastic_round(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Round down or up at random, up with probability ``x - floor(x)``: unbiased, E[r(x)] = x.

    Args:
        x: Values to round.
        generator: Source of randomness (seed it for reproducible results); the global
            generator when ``None``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> rounded = stochastic_round(torch.full((10000,), 0.25), generator=g)
        >>> sorted(set(rounded.tolist())), abs(float(rounded.mean()) - 0.25) < 0.02
        ([0.0, 1.0], True)
    """
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return torch.floor(x + noise)


def _round(
    x: torch.Tensor, rounding: RoundingMode, generator: torch.Generator | None
) -> torch.Tensor:
    if rounding == "nearest":
        return torch.round(x)
    if rounding == "stochastic":
        return stochastic_round(x, generator=generator)
    raise ValueError(f"rounding must be one of {list(ROUNDING_MODES)}, got {rounding!r}.")


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantized tensor, bit-exact. Backward: the gradient passes to ``x`` unchanged.

    Same gradient as the usual ``x + (q - x).detach()``, but that expression is not bit-exact in
    float (``x + (q - x) != q`` in the last ulp, so a "4-bit" tensor would hold hundreds of
    distinct values) and costs two extra element-wise passes; this costs none (measured 2.5x
    faster on a 128x16x32x32 activation).
    """

    @staticmethod
    def forward(ctx: object, x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
        return quantized

    @staticmethod
    def backward(ctx: object, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output, None


def straight_through(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """``quantized`` in the forward pass, the identity gradient with respect to ``x`` backward.

    Example:
        >>> x = torch.tensor([0.4, 1.6], requires_grad=True)
        >>> y = straight_through(x, x.detach().round())
        >>> y.sum().backward(); y.tolist(), x.grad.tolist()
        ([0.0, 2.0], [1.0, 1.0])
    """
    if not (x.requires_grad and torch.is_grad_enabled()):
        return quantized
    return _StraightThrough.apply(x, quantized)


def _channel_view(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Weight as ``(channels, n)``: one row per output channel, or one row for the tensor."""
    if per_channel and weight.dim() > 1:
        return weight.reshape(weight.shape[0], -1)
    return weight.reshape(1, -1)


def _broadcast(values: torch.Tensor, weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Per-row values as a tensor broadcastable against ``weight``."""
    if per_channel and weight.dim() > 1:
        return values.reshape((-1,) + (1,) * (weight.dim() - 1))
    return values.reshape(())


def _clip_ratios(rows: torch.Tensor) -> torch.Tensor:
    return torch.linspace(
        _MSE_MIN_RATIO, 1.0, _MSE_GRID_SIZE, dtype=rows.dtype, device=rows.device
    )


def _params_from_ratio(
    rows: torch.Tensor, bits: int, symmetric: bool, ratio: torch.Tensor, power_of_two: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point per row (or per grid entry and row) for a clipping ratio.

    Symmetric: the range is ``ratio * max|W|`` mapped onto the narrow signed levels.
    Asymmetric: ``ratio * [min(W, 0), max(W, 0)]`` onto ``[0, 2^b - 1]``. With
    ``power_of_two`` the scale is then rounded up to a power of two.
    """
    tiny = torch.finfo(rows.dtype).tiny
    if symmetric:
        _, q_max = integer_range(bits, signed=True)
        scale = (ratio * rows.abs().amax(dim=-1) / q_max).clamp_min(tiny)
        if power_of_two:
            scale = power_of_two_scale(scale)
        return scale, torch.zeros_like(scale)
    _, q_max = integer_range(bits, signed=False)
    low = ratio * rows.amin(dim=-1).clamp_max(0.0)
    high = ratio * rows.amax(dim=-1).clamp_min(0.0)
    scale = ((high - low) / q_max).clamp_min(tiny)
    if power_of_two:
        scale = power_of_two_scale(scale)
    zero_point = torch.clamp(torch.round(-low / scale), 0, q_max) + 0.0  # no -0.0
    return scale, zero_point


def _search_clip_ratio(
    rows: torch.Tensor, bits: int, symmetric: bool, power_of_two: bool
) -> torch.Tensor:
    """Per row, the clipping ratio on a grid in [0.3, 1] with the smallest squared error."""
    ratios = _clip_ratios(rows)[:, None]  # (grid, 1)
    scale, zero_point = _params_from_ratio(rows[None], bits, symmetric, ratios, power_of_two)
    q_min, q_max = integer_range(bits, signed=symmetric)
    scale, zero_point = scale[..., None], zero_point[..., None]  # (grid, rows, 1)
    q = torch.clamp(torch.round(rows[None] / scale + zero_point), q_min, q_max)
    errors = ((q - zero_point) * scale - rows[None]).square().sum(dim=2)  # (grid, rows)
    return ratios[:, 0][errors.argmin(dim=0)]


def weight_clip_ratio(
    weight: torch.Tensor,
    bits: int,
    *,
    per_channel: bool = True,
    symmetric: bool = True,
    range_method: RangeMethod = "mse",
    power_of_two: bool = False,
) -> torch.Tensor:
    """Fraction of the full weight range each channel's quantizer covers (1 = no clipping).

    ``"max"`` (and 1 or >= 8 bits) gives 1. ``"mse"`` searches a grid of 24 ratios in
    [0.3, 1] for the one with the smallest squared quantization error, per channel: at 2..4 bits
    max-abs scaling rounds most weights to zero (the Brevitas gotcha in the notes). With
    ``power_of_two`` the error is that of the power-of-two scale each ratio rounds up to.

    Returns:
        Shape ``(out_channels,)`` per channel, ``(1,)`` per tensor.

    Example:
        >>> w = torch.cat([torch.linspace(-1, 1, 99), torch.tensor([8.0])])[None]
        >>> float(weight_clip_ratio(w, 3)) < 0.5  # one outlier: clip it
        True
    """
    check_bits(bits)
    _check_range_method(range_method)
    with torch.no_grad():
        rows = _channel_view(weight.detach(), per_channel)
        if range_method == "max" or bits == 1 or bits >= 8:
            return torch.ones(rows.shape[0], dtype=rows.dtype, device=rows.device)
        return _search_clip_ratio(rows, bits, symmetric, power_of_two)


def weight_qparams(
    weight: torch.Tensor,
    bits: int,
    *,
    per_channel: bool = True,
    symmetric: bool = True,
    range_method: RangeMethod = "mse",
    clip_ratio: torch.Tensor | None = None,
    power_of_two: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of a weight quantizer, one per output channel (or one per tensor).

    Args:
        weight: Weight tensor, output channels first (Conv and Linear layout).
        bits: 1..8 (1 = binary with scale ``mean|W|``).
        per_channel: One scale per output channel (dim 0) instead of one for the tensor.
        symmetric: Zero point 0 and a narrow signed range; else an unsigned range with an integer
            zero point.
        range_method: ``"max"`` maps the largest magnitude to the largest level; ``"mse"`` picks
            per channel the clipping range with the smallest squared quantization error (matters
            at 2..4 bits; 8 bits always uses ``"max"``).
        clip_ratio: A precomputed :func:`weight_clip_ratio` (skips the search; quantized layers
            cache it during QAT).
        power_of_two: Round every scale up to a power of two (binary weights: to the nearest
            one); see :func:`power_of_two_scale`.

    Returns:
        ``(scale, zero_point)`` as float tensors of shape ``(out_channels,)`` (per channel) or
        ``()`` (per tensor).

    Example:
        >>> scale, zero_point = weight_qparams(torch.tensor([[1.0, -0.5], [0.2, 0.1]]), 8)
        >>> scale.shape, zero_point.tolist()
        (torch.Size([2]), [0.0, 0.0])
    """
    check_bits(bits, allow_float=False)
    _check_range_method(range_method)
    with torch.no_grad():
        rows = _channel_view(weight.detach(), per_channel)
        if bits == 1:
            scale = rows.abs().mean(dim=1).clamp_min(torch.finfo(rows.dtype).tiny)
            if power_of_two:
                scale = _nearest_power_of_two(scale)
            zero_point = torch.zeros_like(scale)
        else:
            if clip_ratio is None:
                clip_ratio = weight_clip_ratio(
                    weight,
                    bits,
                    per_channel=per_channel,
                    symmetric=symmetric,
                    range_method=range_method,
                    power_of_two=power_of_two,
                )
            scale, zero_point = _params_from_ratio(
                rows, bits, symmetric, clip_ratio.reshape(-1), power_of_two
            )
        if not (per_channel and weight.dim() > 1):
            scale, zero_point = scale.reshape(()), zero_point.reshape(())
    return scale, zero_point


def quantize_weight_to_int(
    weight: torch.Tensor,
    bits: int,
    *,
    per_channel: bool = True,
    symmetric: bool = True,
    range_method: RangeMethod = "mse",
    clip_ratio: torch.Tensor | None = None,
    power_of_two: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer weights with their scale and zero point, so that ``W ~= scale * (q - zero_point)``.

    Returns:
        ``(q, scale, zero_point)``: ``q`` an int32 tensor shaped like ``weight``; ``scale`` and
        ``zero_point`` shaped as in :func:`weight_qparams`.

    Example:
        >>> q, scale, _ = quantize_weight_to_int(torch.tensor([[1.0, -0.5, 0.25]]), 3)
        >>> q.tolist()
        [[3, -2, 1]]
    """
    scale, zero_point = weight_qparams(
        weight,
        bits,
        per_channel=per_channel,
        symmetric=symmetric,
        range_method=range_method,
        clip_ratio=clip_ratio,
        power_of_two=power_of_two,
    )
    with torch.no_grad():
        w = weight.detach()
        s = _broadcast(scale, w, per_channel)
        z = _broadcast(zero_point, w, per_channel)
        if bits == 1:
            q = torch.where(w >= 0, 1.0, -1.0)
        else:
            q_min, q_max = integer_range(bits, signed=symmetric)
            q = torch.clamp(torch.round(w / s + z), q_min, q_max)
    return q.to(torch.int32), scale, zero_point


def fake_quantize_weight(
    weight: torch.Tensor,
    bits: int,
    *,
    per_channel: bool = True,
    symmetric: bool = True,
    rounding: RoundingMode = "nearest",
    generator: torch.Generator | None = None,
    range_method: RangeMethod = "mse",
    clip_ratio: torch.Tensor | None = None,
    power_of_two: bool = False,
) -> torch.Tensor:
    """Quantize-dequantize a weight tensor; the gradient passes straight through (STE).

    Args:
        weight: Weight tensor, output channels first (Conv and Linear layout).
        bits: 1 (binary, ``sign(W) * mean|W|``), 2..8, or 16/32 (returned unchanged).
        per_channel: One scale per output channel instead of one for the tensor.
        symmetric: Zero point 0 and narrow signed levels; else asymmetric with a zero point.
        rounding: ``"nearest"`` or ``"stochastic"`` (unbiased; seed it with ``generator``).
        generator: Random generator for stochastic rounding.
        range_method: How the clipping range is chosen; see :func:`weight_qparams`.
        clip_ratio: A precomputed :func:`weight_clip_ratio` (skips the MSE search).
        power_of_two: Power-of-two scales; see :func:`weight_qparams`.

    Returns:
        A float tensor shaped like ``weight`` holding at most ``2^bits`` distinct values per
        channel (per tensor when ``per_channel=False``).

    Example:
        >>> w = torch.randn(4, 3, 3, 3, requires_grad=True)
        >>> wq = fake_quantize_weight(w, 2)
        >>> max(len(torch.unique(row)) for row in wq.detach().reshape(4, -1)) <= 4
        True
        >>> wq.sum().backward(); bool((w.grad == 1).all())
        True
    """
    check_bits(bits)
    if is_float_bits(bits):
        return weight
    _check_range_method(range_method)
    scale, zero_point = weight_qparams(
        weight,
        bits,
        per_channel=per_channel,
        symmetric=symmetric,
        range_method=range_method,
        clip_ratio=clip_ratio,
        power_of_two=power_of_two,
    )
    with torch.no_grad():
        w = weight.detach()
        s = _broadcast(scale, w, per_channel)
        if bits == 1:
            quantized = torch.where(w >= 0, s, -s)
        else:
            z = _broadcast(zero_point, w, per_channel)
            q_min, q_max = integer_range(bits, signed=symmetric)
            q = torch.clamp(_round(w / s + z, rounding, generator), q_min, q_max)
            quantized = (q - z) * s
    return straight_through(weight, quantized)


def activation_qparams(
    min_val: torch.Tensor | float,
    max_val: torch.Tensor | float,
    bits: int,
    *,
    symmetric: bool = False,
    power_of_two: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of an activation quantizer for the observed range [min, max].

    The range is widened to include 0 so that zero (ReLU outputs, padding) is exact. With
    ``power_of_two`` the scale is the nearest power of two in log scale (it may clip the top of
    the range by up to a factor sqrt(2); rounding up instead wastes up to one bit).

    Example:
        >>> scale, zero_point = activation_qparams(0.0, 2.55, 8)
        >>> round(float(scale), 4), float(zero_point)
        (0.01, 0.0)
    """
    check_bits(bits, allow_float=False)
    low = torch.as_tensor(min_val, dtype=torch.float32).clamp_max(0.0)
    high = torch.as_tensor(max_val, dtype=torch.float32).clamp_min(0.0)
    tiny = torch.finfo(torch.float32).tiny
    if symmetric:
        _, q_max = integer_range(bits, signed=True)
        scale = (torch.maximum(-low, high) / q_max).clamp_min(tiny)
        if power_of_two:
            scale = _log_nearest_power_of_two(scale)
        return scale, torch.zeros_like(scale)
    _, q_max = integer_range(bits, signed=False)
    scale = ((high - low) / q_max).clamp_min(tiny)
    if power_of_two:
        scale = _log_nearest_power_of_two(scale)
    zero_point = torch.clamp(torch.round(-low / scale), 0, q_max) + 0.0  # no -0.0
    return scale, zero_point


def fake_quantize_activation(
    x: torch.Tensor,
    bits: int,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    *,
    symmetric: bool = False,
) -> torch.Tensor:
    """Quantize-dequantize activations with a given scale and zero point (STE gradient).

    Use :func:`activation_qparams` to get ``scale`` and ``zero_point`` from an observed range.

    Example:
        >>> scale, zp = activation_qparams(0.0, 1.0, 2)
        >>> fake_quantize_activation(torch.tensor([0.1, 0.4, 0.9, 3.0]), 2, scale, zp)
        tensor([0.0000, 0.3333, 1.0000, 1.0000])
    """
    check_bits(bits)
    if is_float_bits(bits):
        return x
    q_min, q_max = integer_range(bits, signed=symmetric)
    with torch.no_grad():
        xd = x.detach()
        if symmetric and bits == 1:
            quantized = torch.where(xd >= 0, scale, -scale)  # binary: no zero level at 1 bit
        else:
            # round(x/s + z) - z == round(x/s) for an integer z, so the zero point only shifts
            # the clamp bounds: four in-place passes over one temporary (this runs on every
            # activation of every step, so it dominates QAT's overhead).
            quantized = torch.mul(xd, 1.0 / scale)
            quantized.round_()
            quantized.clamp_(q_min - zero_point, q_max - zero_point)
            quantized.mul_(scale)
    return straight_through(x, quantized)


def _check_range_method(range_method: str) -> None:
    if range_method not in RANGE_METHODS:
        raise ValueError(
            f"range_method must be one of {list(RANGE_METHODS)}, got {range_method!r}."
        )
