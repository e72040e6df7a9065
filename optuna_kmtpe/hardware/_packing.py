"""DSP kinds and operand packing: how many low-bit products one DSP computes per cycle.

The packing factor ``p(b_w, b_a)`` is a step function of the operand bit-widths. Its defaults
come from published, implemented packing schemes (sources per value below). Lowering bits
never lowers ``p`` (every built-in function is non-increasing in each argument), which is what
keeps the cost model monotone in bits.

Sources:
    * DSP48E2 two INT8 products with a shared operand: Xilinx WP486 "Deep Learning with INT8
      Optimization on Xilinx Devices" (2016); WP487 "8-Bit Dot-Product Acceleration" (2017,
      1.75 per DSP without LUT help, 2 with it); FINN ``mvu_8sx8u_dsp48`` (2 PEs per DSP).
    * DSP48E2 / DSP48E1 four INT4 products: FINN ``mvu_4sx4u`` (lane offsets {0, 8, 16, 23}
      on DSP48E2, {0, 7, 14, 21} on DSP48E1, narrow weights) and Xilinx's INT4 white paper.
    * "Overpacking" six 4-bit products per DSP48E2, approximate (mean absolute error 0.47):
      Sommer et al., "DSP-Packing: Squeezing Low-precision Arithmetic into FPGA DSP Blocks",
      arXiv 2203.11028. This is the variant behind the "6 multiplications at 4 bits" claim.
    * DSP58 three-element INT8 vector dot product and native single-precision float mode:
      Versal UG1273 "Programmable Logic" and AM004 (DSP Engine Architecture Manual); FINN
      ``mvu_vvu_8sx9_dsp58``.
    * Floating point on DSP48: a half-precision multiply fits one DSP (11-bit significands fit
      the 25x18/27x18 multiplier); a single-precision multiply takes 3 DSP48 slices in the
      Floating-Point Operator's full-DSP configuration (PG060) [unverified count; 2 in its
      medium configuration].
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import math
from typing import Any

import numpy as np


PACKING_VARIANTS: tuple[str, ...] = ("standard", "overpack", "none")
"""Built-in packing functions: published exact schemes, DSP-Packing's approximate
overpacking (6 products at <= 4 bits on DSP48E2), and no packing (one product per DSP)."""

PackingFunction = Callable[[int, int], float]
"""``p(weight_bits, act_bits) -> products per DSP per cycle`` (any positive number)."""

_MIN_BITS = 1
_MAX_BITS = 32


@dataclasses.dataclass(frozen=True, kw_only=True)
class DSPKind:
    """One DSP primitive: its multiplier and how many low-bit products it packs per cycle.

    Packing depends on the wider operand only, ``max(b_w, b_a)``: the first step of the variant
    whose bound it does not exceed gives the products; integer operands past the last step and
    half-precision floats (16 bits) give 1; single-precision floats (32 bits) give ``float32``.

    Attributes:
        name: The ``dsp_kind`` of an :class:`~optuna_kmtpe.hardware.FPGADevice`.
        multiplier: Operand widths of the signed multiplier, bits (information only).
        packing_axis: GEMM axis packed products extend: ``"output"`` (several output channels
            share one activation) or ``"reduction"`` (a dot product over input channels).
        standard: ``((max bits, products), ...)`` of the published exact schemes, bounds
            ascending and products non-increasing (so that lowering bits never lowers ``p``).
        float32: Single-precision products per DSP per cycle (1/3: three slices per multiply).
        overpack: Steps of the ``"overpack"`` variant; ``None``: as ``standard``.
    """

    name: str
    multiplier: tuple[int, int]
    packing_axis: str
    standard: tuple[tuple[int, float], ...]
    float32: float
    overpack: tuple[tuple[int, float], ...] | None = None

    def __post_init__(self) -> None:
        # The cost model is monotone in bits only if p never rises with the operand width.
        for steps in (self.standard, self.overpack or ()):
            bounds, products = [b for b, _ in steps], [p for _, p in steps]
            if (
                bounds != sorted(set(bounds))
                or products != sorted(products, reverse=True)
                or (steps and (bounds[-1] > 15 or products[-1] < 1))
            ):
                raise ValueError(
                    f"DSPKind {self.name!r}: packing steps need integer bounds (<= 15 bits) "
                    f"rising and products (>= 1) not rising, got {steps}."
                )
        if self.packing_axis not in ("output", "reduction"):
            raise ValueError(f"DSPKind {self.name!r}: packing_axis={self.packing_axis!r}.")
        if not 0 < self.float32 <= 1:
            raise ValueError(f"DSPKind {self.name!r}: float32 must lie in (0, 1].")

    def packing(self, weight_bits: int, act_bits: int, variant: str = "standard") -> float:
        """Products per DSP per cycle (arguments as in :func:`packing_factor`)."""
        widest = max(weight_bits, act_bits)
        if widest > 16:
            return self.float32
        steps = {"standard": self.standard, "overpack": self.overpack or self.standard}
        return next((p for bits, p in steps.get(variant, ()) if widest <= bits), 1.0)


DSP_KINDS: dict[str, DSPKind] = {
    kind.name: kind
    for kind in (
        DSPKind(name="DSP48E1", multiplier=(25, 18), packing_axis="output",  # 7-series
                standard=((4, 4.0), (8, 2.0)), float32=1 / 3),
        DSPKind(name="DSP48E2", multiplier=(27, 18), packing_axis="output",  # UltraScale(+)
                standard=((4, 4.0), (8, 2.0)), overpack=((4, 6.0), (8, 2.0)), float32=1 / 3),
        DSPKind(name="DSP58", multiplier=(27, 24), packing_axis="reduction",  # Versal
                standard=((8, 3.0),), float32=1.0),
    )
}  # fmt: skip
"""The DSP primitives the cost model knows, by name (sources in the module docstring). Adding a
kind is one entry: devices, packing functions and the cost model read it from here."""


def packing_factor(
    dsp_kind: str, weight_bits: int, act_bits: int, *, variant: str = "standard"
) -> float:
    """Products one DSP computes per cycle for the given operand bit-widths.

    Integer operands (1..15 bits) use the packing steps of the kind in :data:`DSP_KINDS`
    (``docs/hardware.md`` tabulates them); 16 and 32 bits mean float operands (half and single
    precision), as in the config type. Variant ``"none"`` packs no integer products.

    Args:
        dsp_kind: A key of :data:`DSP_KINDS`.
        weight_bits: Weight bits, 1..32.
        act_bits: Activation bits, 1..32.
        variant: One of :data:`PACKING_VARIANTS`.

    Returns:
        Products per DSP per cycle.

    Example:
        >>> packing_factor("DSP48E2", 8, 8), packing_factor("DSP48E2", 4, 4)
        (2.0, 4.0)
        >>> packing_factor("DSP48E2", 4, 4, variant="overpack")
        6.0
    """
    kind = dsp_kind_spec(dsp_kind)
    _check_variant(variant)
    check_operand_bits(weight_bits, field="weight_bits")
    check_operand_bits(act_bits, field="act_bits")
    return kind.packing(weight_bits, act_bits, variant)


def make_packing(dsp_kind: str, variant: str = "standard") -> PackingFunction:
    """A packing function ``p(weight_bits, act_bits)`` for a DSP kind and variant.

    Example:
        >>> make_packing("DSP58")(8, 8)
        3.0
    """
    dsp_kind_spec(dsp_kind)
    _check_variant(variant)

    def packing(weight_bits: int, act_bits: int) -> float:
        return packing_factor(dsp_kind, weight_bits, act_bits, variant=variant)

    packing.__name__ = f"packing_{dsp_kind}_{variant}"
    return packing


def packing_table(packing: PackingFunction) -> list[list[float]]:
    """``table[b_w][b_a]`` for every pair of bits in 1..32 (row and column 0 unused).

    The cost formulas look packing up in this table, so any user callable costs one call
    per bit pair, once. Raises ``ValueError`` if the callable returns a non-positive or
    non-finite value.
    """
    table = [[math.nan] * (_MAX_BITS + 1) for _ in range(_MAX_BITS + 1)]
    for bw in range(_MIN_BITS, _MAX_BITS + 1):
        for ba in range(_MIN_BITS, _MAX_BITS + 1):
            value = packing(bw, ba)
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"The packing function returned {value!r} for weight_bits={bw}, "
                    f"act_bits={ba}; it must return a positive number of products per DSP per "
                    f"cycle for every pair of bits in 1..32."
                )
            table[bw][ba] = value
    return table


def check_operand_bits(bits: Any, *, field: str) -> np.ndarray:
    """Operand bit-widths (an int or an array) as int64, if all are integers in 1..32: wider
    than a config's ``ALLOWED_BITS``, so that sweeps can price operands no config uses."""
    array = np.asarray(bits)
    is_int = np.issubdtype(array.dtype, np.integer)
    if not (is_int or np.issubdtype(array.dtype, np.floating)) or (
        array.size
        and (array.min() < 1 or array.max() > 32 or not np.all(array == np.floor(array)))
    ):
        got = repr(bits) if array.ndim == 0 else f"{array.dtype} values"
        raise ValueError(
            f"{field} must hold integers in 1..32 (1..8, or up to 15, for integer operands and "
            f"16 or 32 for float); got {got}."
        )
    return array.astype(np.int64)


def dsp_kind_spec(dsp_kind: str) -> DSPKind:
    """The :class:`DSPKind` called ``dsp_kind``; ``ValueError`` naming the known ones."""
    if dsp_kind not in DSP_KINDS:
        raise ValueError(f"Unknown DSP kind {dsp_kind!r}; use one of {tuple(DSP_KINDS)}.")
    return DSP_KINDS[dsp_kind]


def _check_variant(variant: str) -> None:
    if variant not in PACKING_VARIANTS:
        raise ValueError(f"Unknown packing variant {variant!r}; use one of {PACKING_VARIANTS}.")
