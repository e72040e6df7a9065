"""Quantizer specs: how a layer maps float weights and activations onto integer levels.

A :class:`QuantizerSpec` is a frozen dataclass of options whose methods compute scales, zero
points and integer weights; every quantized layer holds one (``layer.quant_spec``) and the export
asks the layer for its integers. The built-ins ``"uniform"``, ``"binary"`` and ``"power_of_two"``
are registered like any other quantizer (in the torch-free ``optuna_kmtpe._registry``, so that
settings and ``kmtpe search --help`` read the names): a new one is a subclass and a
``register_quantizer`` call, in one file (``tests/quant/test_quantizer_specs.py`` defines one).

Conventions (also what ``_export.py`` writes out):

* A quantized value is ``scale * (q - zero_point)`` with an integer ``q``.
* Weights, symmetric (default): ``zero_point = 0`` and ``q`` in the *narrow* signed range
  ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (2^b - 1 levels, symmetric around zero). Narrow range is what
  packed low-bit FPGA multipliers require (FINN's ``mvu_4sx4u`` needs weights in [-7, 7]) and
  keeps ``-q`` representable.
* Weights, asymmetric: ``q`` in ``[0, 2^b - 1]`` with an integer zero point.
* 1-bit weights are binary, BinaryConnect/XNOR style: ``sign(W) * mean|W|`` (per channel), i.e.
  ``q`` in ``{-1, +1}`` and ``scale = mean|W|``, whatever ``symmetric_weights`` says.
* 16 and 32 bits mean "keep in float": the tensor is returned unchanged.
* Activations: asymmetric by default with ``q`` in ``[0, 2^b - 1]`` (post-ReLU activations are
  non-negative, so the range starts at 0 and no level is wasted on negatives); symmetric uses
  the narrow signed range like weights.
* Power-of-two scales (:class:`PowerOfTwoQuantizer`): every scale is a power of two ``2^k``, so
  that rescaling is a bit shift and the values map exactly onto fixed-point types (hls4ml's
  ``ap_fixed``, FINN's thresholds). Weight scales are rounded up (:func:`power_of_two_scale`)
  and the MSE clipping search picks among them; binary weights take the power of two nearest
  ``mean|W|``; activation scales take the nearest power of two in log scale (rounding them up
  cost 10 points on MNIST-1D at W4A4, the nearest one 0.3: see ``docs/export.md``).

The gradient is the straight-through estimator of ``x + (Q(x) - x).detach()``: quantized values
in the forward pass, the identity in the backward pass. ``Q(x)`` is computed under ``no_grad`` and
joined to the graph by a one-node autograd function (:func:`straight_through`), which keeps the
forward bit-exact and records nothing else, so QAT costs only a few percent per training step
over float (see ``docs/quantization.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import ClassVar

import torch

from optuna_kmtpe._registry import quantizer_entry
from optuna_kmtpe.config import RANGE_METHODS
from optuna_kmtpe.config import ROUNDING_MODES
from optuna_kmtpe.config import RangeMethod
from optuna_kmtpe.config import RoundingMode
from optuna_kmtpe.config import check_bits
from optuna_kmtpe.config import is_float_bits


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
    ratios = torch.linspace(
        _MSE_MIN_RATIO, 1.0, _MSE_GRID_SIZE, dtype=rows.dtype, device=rows.device
    )[:, None]  # (grid, 1)
    scale, zero_point = _params_from_ratio(rows[None], bits, symmetric, ratios, power_of_two)
    q_min, q_max = integer_range(bits, signed=symmetric)
    scale, zero_point = scale[..., None], zero_point[..., None]  # (grid, rows, 1)
    q = torch.clamp(torch.round(rows[None] / scale + zero_point), q_min, q_max)
    errors = ((q - zero_point) * scale - rows[None]).square().sum(dim=2)  # (grid, rows)
    return ratios[:, 0][errors.argmin(dim=0)]


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizerSpec:
    """How a layer quantizes: its options, and the integer machinery every quantizer shares.

    A subclass overrides :meth:`weight_qparams` and, where it differs, the other methods. The
    forward pass, the export and calibration only call these methods, so a registered subclass
    is trained, evaluated and exported like the built-ins.

    Attributes:
        per_channel: One weight scale per output channel (dim 0) instead of one per tensor.
        symmetric_weights: Zero point 0 and narrow signed levels; else unsigned levels with an
            integer zero point.
        symmetric_acts: The same for activations (default: unsigned, as after a ReLU).
        rounding: ``"nearest"``, or ``"stochastic"`` (unbiased) where a generator is given
            (weights, in training).
        range_method: Weight clipping range, ``"mse"`` (the per-channel range with the smallest
            squared error, 2..7 bits) or ``"max"``, for specs that search one.
        name: The registered name of the built-in (written into the export).
        power_of_two: Whether every scale is a power of two (written into the export).

    Example:
        >>> w = torch.tensor([[1.0, -0.5, 0.25]])
        >>> q, scale, zero_point = UniformQuantizer().weight_to_int(w, 3)
        >>> q.tolist(), zero_point.tolist()
        ([[3.0, -2.0, 1.0]], [0.0])
    """

    name: ClassVar[str] = ""
    power_of_two: ClassVar[bool] = False

    per_channel: bool = True
    symmetric_weights: bool = True
    symmetric_acts: bool = False
    rounding: RoundingMode = "nearest"
    range_method: RangeMethod = "mse"

    def __post_init__(self) -> None:
        for option, allowed in (("rounding", ROUNDING_MODES), ("range_method", RANGE_METHODS)):
            if getattr(self, option) not in allowed:
                raise ValueError(
                    f"{option} must be one of {list(allowed)}, got {getattr(self, option)!r}."
                )

    def for_weight_bits(self, bits: int) -> QuantizerSpec:
        """The spec quantizing ``bits``-bit weights: this one, or ``ValueError`` (1-bit weights
        are binary, which uniform specs hand over to their :class:`BinaryQuantizer`)."""
        if bits == 1:
            raise ValueError(f"The {self.name!r} quantizer has no 1-bit (binary) form.")
        return self

    def weight_signed(self, bits: int) -> bool:
        """Whether the integer weights are in the narrow signed range (else unsigned)."""
        return self.symmetric_weights

    def weight_clip_ratio(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        """Per-row fraction of the range a layer caches between refreshes (1: no clipping)."""
        rows = _channel_view(weight.detach(), self.per_channel)
        return torch.ones(rows.shape[0], dtype=rows.dtype, device=rows.device)

    def weight_qparams(
        self, weight: torch.Tensor, bits: int, *, clip_ratio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)``, shaped ``(out_channels,)`` per channel or ``()``."""
        raise NotImplementedError

    def weight_levels(
        self,
        weight: torch.Tensor,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        bits: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Integer-valued float ``q`` for ``weight`` given its scale and zero point."""
        x = weight / _broadcast(scale, weight, self.per_channel)
        x = x + _broadcast(zero_point, weight, self.per_channel)
        stochastic = generator is not None and self.rounding == "stochastic"
        x = stochastic_round(x, generator=generator) if stochastic else torch.round(x)
        return torch.clamp(x, *integer_range(bits, signed=self.weight_signed(bits)))

    def weight_to_int(
        self,
        weight: torch.Tensor,
        bits: int,
        *,
        clip_ratio: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q, scale, zero_point)`` with ``W ~= scale * (q - zero_point)``: what the forward
        pass computes and the export writes (``q`` integer-valued float, shaped like ``W``).

        Args:
            weight: Output channels first (Conv and Linear layout).
            bits: 1..8 (1: binary).
            clip_ratio: A cached :meth:`weight_clip_ratio` (skips the MSE search).
            generator: Rounds stochastically, if the spec's ``rounding`` says so.
        """
        check_bits(bits, field="weight bits", allow_float=False)
        spec = self.for_weight_bits(bits)
        scale, zero_point = spec.weight_qparams(weight, bits, clip_ratio=clip_ratio)
        with torch.no_grad():
            q = spec.weight_levels(weight.detach(), scale, zero_point, bits, generator)
        return q, scale, zero_point

    def fake_quantize_weight(
        self,
        weight: torch.Tensor,
        bits: int,
        *,
        clip_ratio: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Quantize-dequantize ``weight`` (returned as is at 16/32 bits), STE gradient; the
        arguments are those of :meth:`weight_to_int`."""
        check_bits(bits)
        if is_float_bits(bits):
            return weight
        q, scale, zero_point = self.weight_to_int(
            weight, bits, clip_ratio=clip_ratio, generator=generator
        )
        s = _broadcast(scale, weight, self.per_channel)
        z = _broadcast(zero_point, weight, self.per_channel)
        return straight_through(weight, (q - z) * s)

    def activation_qparams(
        self, min_val: torch.Tensor | float, max_val: torch.Tensor | float, bits: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero point of an activation range, widened to include 0 (so that zero,
        ReLU outputs and padding, is exact). Power-of-two scales are the nearest power of two
        in log scale (they may clip the top of the range by up to a factor sqrt(2)).

        Example:
            >>> scale, zero_point = UniformQuantizer().activation_qparams(0.0, 2.55, 8)
            >>> round(float(scale), 4), float(zero_point)
            (0.01, 0.0)
        """
        check_bits(bits, field="activation bits", allow_float=False)
        low = torch.as_tensor(min_val, dtype=torch.float32).clamp_max(0.0)
        high = torch.as_tensor(max_val, dtype=torch.float32).clamp_min(0.0)
        _, q_max = integer_range(bits, signed=self.symmetric_acts)
        extent = torch.maximum(-low, high) if self.symmetric_acts else high - low
        scale = (extent / q_max).clamp_min(torch.finfo(torch.float32).tiny)
        if self.power_of_two:
            scale = _log_nearest_power_of_two(scale)
        if self.symmetric_acts:
            return scale, torch.zeros_like(scale)
        zero_point = torch.clamp(torch.round(-low / scale), 0, q_max) + 0.0  # no -0.0
        return scale, zero_point

    def fake_quantize_activation(
        self, x: torch.Tensor, bits: int, scale: torch.Tensor, zero_point: torch.Tensor
    ) -> torch.Tensor:
        """Quantize-dequantize activations with a scale and zero point from
        :meth:`activation_qparams` (returned as is at 16/32 bits), STE gradient.

        Example:
            >>> spec = UniformQuantizer()
            >>> scale, zp = spec.activation_qparams(0.0, 1.0, 2)
            >>> spec.fake_quantize_activation(torch.tensor([0.1, 0.4, 0.9, 3.0]), 2, scale, zp)
            tensor([0.0000, 0.3333, 1.0000, 1.0000])
        """
        check_bits(bits)
        if is_float_bits(bits):
            return x
        q_min, q_max = integer_range(bits, signed=self.symmetric_acts)
        with torch.no_grad():
            xd = x.detach()
            if self.symmetric_acts and bits == 1:
                quantized = torch.where(xd >= 0, scale, -scale)  # binary: no zero level
            else:
                # round(x/s + z) - z == round(x/s) for an integer z, so the zero point only
                # shifts the clamp bounds: four in-place passes over one temporary (this runs on
                # every activation of every step, so it dominates QAT's overhead).
                quantized = torch.mul(xd, 1.0 / scale)
                quantized.round_()
                quantized.clamp_(q_min - zero_point, q_max - zero_point)
                quantized.mul_(scale)
        return straight_through(x, quantized)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BinaryQuantizer(QuantizerSpec):
    """1-bit binary weights, BinaryConnect/XNOR style: ``sign(W) * mean|W|`` per channel."""

    name: ClassVar[str] = "binary"

    def for_weight_bits(self, bits: int) -> QuantizerSpec:
        if bits != 1 and not is_float_bits(bits):
            raise ValueError(f"The binary quantizer quantizes 1-bit weights, not {bits} bits.")
        return self

    def weight_signed(self, bits: int) -> bool:
        return True

    def weight_qparams(
        self, weight: torch.Tensor, bits: int, *, clip_ratio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            rows = _channel_view(weight.detach(), self.per_channel)
            scale = rows.abs().mean(dim=1).clamp_min(torch.finfo(rows.dtype).tiny)
            if self.power_of_two:
                scale = _nearest_power_of_two(scale)
            if not (self.per_channel and weight.dim() > 1):
                scale = scale.reshape(())
        return scale, torch.zeros_like(scale)

    def weight_levels(
        self,
        weight: torch.Tensor,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        bits: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        return torch.where(weight >= 0, 1.0, -1.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UniformQuantizer(QuantizerSpec):
    """Uniform levels over the min-max range or the MSE-clipped one; binary at 1 bit."""

    name: ClassVar[str] = "uniform"
    binary: ClassVar[type[BinaryQuantizer]] = BinaryQuantizer

    def for_weight_bits(self, bits: int) -> QuantizerSpec:
        return self.binary(**dataclasses.asdict(self)) if bits == 1 else self

    def weight_clip_ratio(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        """``"max"`` (and 1 or >= 8 bits) gives 1. ``"mse"`` searches a grid of 24 ratios in
        [0.3, 1] for the one with the smallest squared error, per row: at 2..4 bits max-abs
        scaling rounds most weights to zero (the Brevitas gotcha in the notes). With
        power-of-two scales the error is that of the power of two each ratio rounds up to.

        Example:
            >>> w = torch.cat([torch.linspace(-1, 1, 99), torch.tensor([8.0])])[None]
            >>> float(UniformQuantizer().weight_clip_ratio(w, 3)) < 0.5  # an outlier: clip it
            True
        """
        if self.range_method == "max" or bits == 1 or bits >= 8:
            return super().weight_clip_ratio(weight, bits)
        with torch.no_grad():
            rows = _channel_view(weight.detach(), self.per_channel)
            return _search_clip_ratio(rows, bits, self.symmetric_weights, self.power_of_two)

    def weight_qparams(
        self, weight: torch.Tensor, bits: int, *, clip_ratio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if clip_ratio is None:
            clip_ratio = self.weight_clip_ratio(weight, bits)
        with torch.no_grad():
            rows = _channel_view(weight.detach(), self.per_channel)
            scale, zero_point = _params_from_ratio(
                rows, bits, self.symmetric_weights, clip_ratio.reshape(-1), self.power_of_two
            )
            if not (self.per_channel and weight.dim() > 1):
                scale, zero_point = scale.reshape(()), zero_point.reshape(())
        return scale, zero_point


class _PowerOfTwoBinaryQuantizer(BinaryQuantizer):
    power_of_two: ClassVar[bool] = True


class PowerOfTwoQuantizer(UniformQuantizer):
    """Uniform with every scale a power of two: rescaling is a shift, fixed-point types exact."""

    name: ClassVar[str] = "power_of_two"
    power_of_two: ClassVar[bool] = True
    binary: ClassVar[type[BinaryQuantizer]] = _PowerOfTwoBinaryQuantizer


def quantizer_spec(name: str = "uniform", **options: Any) -> QuantizerSpec:
    """The quantizer registered as ``name``, built with ``options`` (the spec's fields).

    Example:
        >>> spec = quantizer_spec("power_of_two", symmetric_acts=True)
        >>> type(spec).__name__, spec.symmetric_acts
        ('PowerOfTwoQuantizer', True)
    """
    return quantizer_entry(name).resolve()(**options)
