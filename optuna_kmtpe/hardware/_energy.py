"""Energy constants and the energy of one multiply-accumulate as a function of bit-widths."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class EnergyParams:
    """Energy constants of the cost model. Every default has a published source.

    Args:
        int_mult_8x8_pj: Energy of an 8x8-bit integer multiply, pJ. Horowitz, "Computing's
            energy problem", ISSCC 2014, 45 nm, 0.9 V: 0.2 pJ. Integer multiplies scale as
            ``int_mult_8x8_pj * b_w * b_a / 64`` (32x32 then gives 3.2 pJ against the table's
            3.1 pJ).
        int_add_pj_per_bit: Energy of an integer add per accumulator bit, pJ. Horowitz: 8-bit
            add 0.03 pJ, 32-bit add 0.1 pJ, about 0.0035 pJ/bit.
        fp16_mac_pj: Half-precision multiply + add, pJ. Horowitz: 1.1 + 0.4.
        fp32_mac_pj: Single-precision multiply + add, pJ. Horowitz: 3.7 + 0.9.
        bram_pj_per_bit: On-chip buffer access per bit, pJ. Han et al., "Learning both Weights
            and Connections", NeurIPS 2015 (45 nm): 5 pJ per 32-bit SRAM access.
        dram_pj_per_bit: Off-chip DRAM access per bit, pJ. Han et al. 2015: 640 pJ per 32-bit
            access.
        fpga_factor: FPGA-over-ASIC factor applied to MAC energy. Kuon & Rose, "Measuring the
            gap between FPGAs and ASICs", IEEE TCAD 26(2), 2007: dynamic power about 14x an
            ASIC for logic, smaller with hard blocks (DSPs, BRAM); 14 is the conservative end.
        max_accumulator_bits: Accumulator width cap (DSP48 accumulators are 48 bits).

    Example:
        >>> float(EnergyParams().mac_pj(8, 8, 16))
        0.256
    """

    int_mult_8x8_pj: float = 0.2
    int_add_pj_per_bit: float = 0.0035
    fp16_mac_pj: float = 1.5
    fp32_mac_pj: float = 4.6
    bram_pj_per_bit: float = 5.0 / 32.0
    dram_pj_per_bit: float = 640.0 / 32.0
    fpga_factor: float = 14.0
    max_accumulator_bits: int = 48

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"EnergyParams.{field.name} must be a finite number >= 0, got {value!r}."
                )
        if self.max_accumulator_bits < 1:
            raise ValueError("EnergyParams.max_accumulator_bits must be >= 1.")
        if not self.fp16_mac_pj <= self.fp32_mac_pj:
            raise ValueError("EnergyParams: fp16_mac_pj must not exceed fp32_mac_pj.")
        widest_int = float(self.mac_pj(15, 15, self.max_accumulator_bits))
        if widest_int > self.fp16_mac_pj:
            raise ValueError(
                f"EnergyParams: a 15x15-bit integer MAC ({widest_int:.3g} pJ) costs more than "
                f"fp16_mac_pj={self.fp16_mac_pj}; raise fp16_mac_pj or lower the integer "
                f"constants so that energy never grows when bits shrink."
            )

    def accumulator_bits(self, weight_bits: Any, act_bits: Any, reduction: Any) -> Any:
        """``min(cap, b_w + b_a + ceil(log2 K))``: the bits a K-term dot product needs.

        Elementwise on numbers or arrays; ``ceil(log2 K)`` is the bit length of ``K - 1``, the
        exponent :func:`numpy.frexp` returns (exact for integers below 2**53).
        """
        return np.minimum(
            self.max_accumulator_bits, weight_bits + act_bits + np.frexp(reduction - 1)[1]
        )

    def mac_pj(self, weight_bits: Any, act_bits: Any, accumulator_bits: Any) -> Any:
        """Energy of one MAC in an ASIC at 45 nm, pJ (multiply by ``fpga_factor`` for FPGA).

        Integer operands: ``int_mult_8x8_pj * b_w * b_a / 64 + int_add_pj_per_bit * b_acc``.
        Float operands (16 or 32 bits on either side): the half- or single-precision MAC.
        The integer cost below 16 bits never exceeds the fp16 MAC with the defaults, so the
        energy never grows when bits shrink. Elementwise on numbers or arrays.
        """
        widest = np.maximum(weight_bits, act_bits)
        integer = (
            self.int_mult_8x8_pj * weight_bits * act_bits / 64.0
            + self.int_add_pj_per_bit * accumulator_bits
        )
        return np.where(
            widest > 16, self.fp32_mac_pj, np.where(widest == 16, self.fp16_mac_pj, integer)
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
