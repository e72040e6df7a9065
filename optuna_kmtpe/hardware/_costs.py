"""The cost formulas: one layer on a weight-stationary systolic array, scalar and vectorized.

Both paths implement the same formulas (see ``docs/hardware.md``); the scalar one is plain
Python on one config and feeds the per-layer report, the vectorized one evaluates arrays of
configs of shape ``(n_configs, n_layers)`` with numpy. Tests check that they agree.

Per layer, after widths (G groups, K = ceil(Cin'/G) * taps, Nc = ceil(Cout'/G), M = positions
x batch, p = packing(b_w, b_a)):

* tiles = G * ceil(K / R_eff) * ceil(Nc / C_eff), with R_eff = R*p (DSP58 dot product, packed
  along the reduction) or C_eff = C*p (DSP48, packed along output channels);
* cycles = tiles * (ceil(M / PP) + R + C - 2 + t_wload); PP copies of the array share the
  weights and take different output positions (pixel parallelism, as in Xilinx's DPU); fill/
  drain R + C - 2; t_wload = 0 with double buffering, else R;
* DRAM bits = weights * b_w + inputs * b_a + outputs * b_out (every layer reads its input from
  and writes its output to DRAM: an overlay processing one layer at a time);
* time = max(cycles / f, DRAM bytes / bandwidth) with double buffering (roofline), else the
  sum;
* on-chip bits = weights * b_w + (input stream, once per output tile) + (partial sums, written
  once and read-modify-written per extra reduction tile, at accumulator width);
* energy = MACs * e_MAC(b_w, b_a) * fpga_factor + on-chip bits * e_BRAM + DRAM bits * e_DRAM
  + static power * time.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from optuna_kmtpe import geometry
from optuna_kmtpe.geometry import NetworkShape
from optuna_kmtpe.geometry import PrunedChannels
from optuna_kmtpe.hardware._energy import EnergyParams


# Guards ceil() of a ratio computed with a fractional packing factor (1/3) from landing one
# tile too high through rounding: ratios closer than this to an integer count as that integer.
_EPS = 1e-9

# Block RAM aspect ratios of one 18 Kb half (depth, width), UG573 / AM007.
_BRAM18_MODES: tuple[tuple[int, int], ...] = (
    (16384, 1),
    (8192, 2),
    (4096, 4),
    (2048, 9),
    (1024, 18),
    (512, 36),
)


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """The resolved accelerator parameters both paths read."""

    rows: int
    cols: int
    pixel_parallel: int
    clock_hz: float
    dram_bandwidth: float
    static_power_w: float
    pack_reduction: bool
    packing_table: np.ndarray  # (33, 33) products per DSP per cycle, indexed [b_w, b_a]
    double_buffer: bool
    output_bits: int
    energy: EnergyParams

    @property
    def weight_load_cycles(self) -> int:
        return 0 if self.double_buffer else self.rows

    @property
    def buffers(self) -> int:
        return 2 if self.double_buffer else 1


def bram18_blocks(depth: int, width: int) -> int:
    """18 Kb block RAM halves for one memory bank of ``depth`` words of ``width`` bits."""
    return min(-(-width // w) * -(-depth // d) for d, w in _BRAM18_MODES)


def _bram18_blocks_array(depth: np.ndarray, width: np.ndarray) -> np.ndarray:
    best = None
    for d, w in _BRAM18_MODES:
        blocks = (-(-width // w)) * (-(-depth // d))
        best = blocks if best is None else np.minimum(best, blocks)
    assert best is not None
    return best


def layer_cost(
    acc: Accelerator,
    *,
    in_channels: int,
    out_channels: int,
    groups: int,
    kernel_size: int,
    out_positions: int,
    in_positions: int,
    weight_bits: int,
    act_bits: int,
    out_bits: int,
    batch: int,
) -> dict[str, Any]:
    """Every cost of one layer for one config (scalar path). Quantities are per batch."""
    rows, cols = acc.rows, acc.cols
    reduction = geometry.reduction_length(in_channels, groups, kernel_size)
    outputs = geometry.outputs_per_group(out_channels, groups)
    weights = groups * reduction * outputs  # geometry.weight_count
    m = out_positions * batch
    m_per_copy = -(-m // acc.pixel_parallel)
    macs = m * weights
    p = float(acc.packing_table[weight_bits, act_bits])
    rows_eff = rows * p if acc.pack_reduction else float(rows)
    cols_eff = float(cols) if acc.pack_reduction else cols * p
    k_tiles = math.ceil(reduction / rows_eff - _EPS)
    n_tiles = math.ceil(outputs / cols_eff - _EPS)
    tiles = groups * k_tiles * n_tiles
    cycles = tiles * (m_per_copy + rows + cols - 2 + acc.weight_load_cycles)
    utilization = macs / (cycles * rows * cols * acc.pixel_parallel * p)
    compute_s = cycles / acc.clock_hz

    weight_bits_total = geometry.weight_size_bits(weights, weight_bits)
    in_bits = batch * in_channels * in_positions * act_bits
    out_bits_total = batch * out_channels * out_positions * out_bits
    dram_bits = weight_bits_total + in_bits + out_bits_total
    dram_bytes = dram_bits / 8
    memory_s = dram_bytes / acc.dram_bandwidth
    if acc.double_buffer:
        latency_s = max(compute_s, memory_s)
    else:
        latency_s = compute_s + memory_s

    energy = acc.energy
    acc_bits = energy.accumulator_bits(weight_bits, act_bits, reduction)
    onchip_bits = (
        weight_bits_total
        + groups * n_tiles * m * reduction * act_bits
        + groups * m * outputs * acc_bits * (2 * k_tiles - 1)
    )
    mac_j = macs * energy.mac_pj(weight_bits, act_bits, acc_bits) * energy.fpga_factor * 1e-12
    bram_j = onchip_bits * energy.bram_pj_per_bit * 1e-12
    dram_j = dram_bits * energy.dram_pj_per_bit * 1e-12
    static_j = acc.static_power_w * latency_s

    packed = max(1, math.ceil(p - _EPS))
    in_banks = rows * acc.pixel_parallel
    input_bram18 = in_banks * bram18_blocks(
        -(-(batch * in_channels * in_positions) // in_banks), act_bits
    )
    psum_depth = m_per_copy * (1 if acc.pack_reduction else packed)
    psum_banks = cols * acc.pixel_parallel
    psum_bram18 = acc.buffers * psum_banks * bram18_blocks(psum_depth, acc_bits)
    weight_bram18 = acc.buffers * cols * bram18_blocks(rows * packed, weight_bits)
    return {
        "packing": p,
        "reduction": reduction,
        "outputs_per_group": outputs,
        "macs": macs,
        "tiles": tiles,
        "cycles": cycles,
        "utilization": utilization,
        "compute_s": compute_s,
        "dram_bytes": dram_bytes,
        "memory_s": memory_s,
        "latency_s": latency_s,
        "bound": "compute" if compute_s >= memory_s else "memory",
        "accumulator_bits": acc_bits,
        "onchip_bits": onchip_bits,
        "mac_energy_j": mac_j,
        "bram_energy_j": bram_j,
        "dram_energy_j": dram_j,
        "static_energy_j": static_j,
        "energy_j": mac_j + bram_j + dram_j + static_j,
        "weight_count": weights,
        "weight_bytes": weight_bits_total / 8,
        "input_bytes": in_bits / 8,
        "output_bytes": out_bits_total / 8,
        "input_bram18": input_bram18,
        "psum_bram18": psum_bram18,
        "weight_bram18": weight_bram18,
    }


def _column(network: NetworkShape, attribute: str) -> np.ndarray:
    """One int attribute of every layer (module order), for the vectorized path."""
    return np.asarray([getattr(layer, attribute) for layer in network], dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class BatchTables:
    """Lookup tables that turn the vectorized path's heavy per-element work into gathers.

    Indexed by ``b_w * 33 + b_a`` (bit pairs), by accumulator bits, and per layer by the kept
    input channels, so that a batch of configs needs no integer division.
    """

    packing: np.ndarray  # (33*33,) products per DSP per cycle
    mac_base_pj: np.ndarray  # (33*33,) multiply (integer) or whole MAC (float) energy
    int_mask: np.ndarray  # (33*33,) 1.0 for integer operands (accumulator add counted), else 0
    weight_bram18: np.ndarray  # (33*33,) weight buffer blocks
    packed_code: np.ndarray  # (33*33,) index into the distinct ceil(p) values
    psum_bram18: np.ndarray  # (L * (max_acc + 1) * n_codes,) partial-sum buffer blocks
    n_codes: int
    input_offset: np.ndarray  # (L,) start of each layer's input-buffer table
    input_bram18: np.ndarray  # concatenated (in_channels + 1) * 33 tables

    @classmethod
    def build(cls, acc: Accelerator, network: NetworkShape, batch: int) -> BatchTables:
        bits = np.arange(33)
        bw, ba = np.meshgrid(bits, bits, indexing="ij")
        table = acc.packing_table.copy()
        table[0, :] = table[:, 0] = 1.0  # unused row/column (bits start at 1)
        packed = np.maximum(1, np.ceil(table - _EPS)).astype(np.int64)
        codes, packed_code = np.unique(packed, return_inverse=True)
        energy = acc.energy
        widest = np.maximum(bw, ba)
        mac_base = np.where(
            widest > 16,
            energy.fp32_mac_pj,
            np.where(widest == 16, energy.fp16_mac_pj, energy.int_mult_8x8_pj * bw * ba / 64.0),
        )
        weight_bram = np.array(
            [
                acc.buffers * acc.cols * bram18_blocks(acc.rows * int(k), int(w))
                for k, w in zip(packed.ravel(), np.maximum(bw, 1).ravel())
            ],
            dtype=np.int64,
        )
        max_acc = energy.max_accumulator_bits
        psum = np.zeros((len(network), max_acc + 1, len(codes)), dtype=np.int64)
        banks = acc.cols * acc.pixel_parallel
        for j, positions in enumerate(_column(network, "out_positions")):
            m_per_copy = -(-int(positions) * batch // acc.pixel_parallel)
            for c, k in enumerate(codes):
                depth = m_per_copy * (1 if acc.pack_reduction else int(k))
                for a in range(1, max_acc + 1):
                    psum[j, a, c] = acc.buffers * banks * bram18_blocks(depth, a)
        in_banks = acc.rows * acc.pixel_parallel
        offsets, tables = [], []
        offset = 0
        for layer in network:
            cin = np.arange(layer.in_channels + 1)[:, None]
            depth = -(-(batch * cin * layer.in_positions) // in_banks)
            blocks = in_banks * _bram18_blocks_array(depth, bits[None, :])
            offsets.append(offset)
            tables.append(blocks.ravel())
            offset += blocks.size
        return cls(
            packing=table.ravel(),
            mac_base_pj=mac_base.ravel(),
            int_mask=(widest < 16).astype(np.float64).ravel(),
            weight_bram18=weight_bram,
            packed_code=packed_code.ravel().astype(np.int64),
            psum_bram18=psum.ravel(),
            n_codes=len(codes),
            input_offset=np.asarray(offsets, dtype=np.int64),
            input_bram18=np.concatenate(tables),
        )


def batch_costs(
    acc: Accelerator,
    network: NetworkShape,
    tables: BatchTables,
    weight_bits: np.ndarray,
    act_bits: np.ndarray,
    pruned: PrunedChannels,
    batch: int,
) -> dict[str, np.ndarray]:
    """Network costs of many configs at once (vectorized path); inputs are ``(n, L)``.

    ``pruned`` holds the configs' channels (:meth:`~optuna_kmtpe.geometry.ChannelLayout.pruned`).
    Same formulas as :func:`layer_cost`; divisions of integers are done in float64, which is
    exact here (quotients of integers below 2**53 round to an integer only when they are one).
    """
    n, n_layers = weight_bits.shape
    rows, cols = acc.rows, acc.cols

    cin = pruned.in_channels.astype(np.float64)
    cout = pruned.out_channels.astype(np.float64)
    groups = pruned.groups.astype(np.float64)
    reduction = geometry.reduction_length(cin, groups, _column(network, "kernel_size"))
    outputs = geometry.outputs_per_group(cout, groups)
    out_positions = _column(network, "out_positions")
    index = {name: j for j, name in enumerate(network.names)}
    out_bits = np.empty((n, n_layers))
    for j, name in enumerate(network.names):
        readers = [index[reader] for reader in network.output_readers(name)]
        if len(readers) == 1:
            out_bits[:, j] = act_bits[:, readers[0]]
        elif readers:
            out_bits[:, j] = act_bits[:, readers].max(axis=1)
        else:
            out_bits[:, j] = acc.output_bits

    pair = weight_bits * 33 + act_bits
    wbf = weight_bits.astype(np.float64)
    abf = act_bits.astype(np.float64)
    p = tables.packing.take(pair)
    m = (out_positions * batch).astype(np.float64)
    m_per_copy = np.ceil(m / acc.pixel_parallel)
    weights = groups * reduction * outputs  # geometry.weight_count
    macs = m * weights
    if acc.pack_reduction:
        k_tiles = np.ceil(reduction / (rows * p) - _EPS)
        n_tiles = np.ceil(outputs / float(cols) - _EPS)
    else:
        k_tiles = np.ceil(reduction / float(rows) - _EPS)
        n_tiles = np.ceil(outputs / (cols * p) - _EPS)
    tiles = groups * k_tiles * n_tiles
    cycles = tiles * (m_per_copy + (rows + cols - 2 + acc.weight_load_cycles))
    compute_s = cycles / acc.clock_hz

    weight_bits_total = geometry.weight_size_bits(weights, wbf)
    in_bits = (batch * _column(network, "in_positions")) * cin * abf
    out_bits_total = (batch * out_positions) * cout * out_bits
    dram_bits = weight_bits_total + in_bits + out_bits_total
    memory_s = dram_bits / 8 / acc.dram_bandwidth
    if acc.double_buffer:
        layer_s = np.maximum(compute_s, memory_s)
    else:
        layer_s = compute_s + memory_s

    energy = acc.energy
    # ceil(log2 K) is the bit length of K - 1, the exponent frexp returns.
    log2_reduction = np.frexp(reduction - 1)[1]
    acc_bits = np.minimum(energy.max_accumulator_bits, wbf + abf + log2_reduction)
    mac_pj = tables.mac_base_pj.take(pair) + energy.int_add_pj_per_bit * acc_bits * (
        tables.int_mask.take(pair)
    )
    onchip_bits = (
        weight_bits_total
        + groups * n_tiles * m * reduction * abf
        + groups * m * outputs * acc_bits * (2 * k_tiles - 1)
    )
    dynamic_j = (
        macs * mac_pj * (energy.fpga_factor * 1e-12)
        + onchip_bits * (energy.bram_pj_per_bit * 1e-12)
        + dram_bits * (energy.dram_pj_per_bit * 1e-12)
    )
    latency_s = layer_s.sum(axis=1)
    energy_j = dynamic_j.sum(axis=1) + acc.static_power_w * latency_s

    pipeline_s = pipeline_interval(
        acc,
        packed_work=(macs / p).sum(axis=1),
        weight_bytes=weight_bits_total.sum(axis=1) / 8,
        first_input_bytes=in_bits[:, 0] / 8,
        last_output_bytes=out_bits_total[:, -1] / 8,
    )

    layer_index = np.arange(n_layers) * (energy.max_accumulator_bits + 1)
    psum_index = (layer_index + acc_bits.astype(np.int64)) * tables.n_codes + (
        tables.packed_code.take(pair)
    )
    input_index = tables.input_offset + cin.astype(np.int64) * 33 + act_bits
    bram18 = (
        tables.input_bram18.take(input_index).max(axis=1)
        + tables.psum_bram18.take(psum_index).max(axis=1)
        + tables.weight_bram18.take(pair).max(axis=1)
    )

    return {
        "latency_s": latency_s,
        "throughput_ips": batch / pipeline_s,
        "sequential_throughput_ips": batch / latency_s,
        "energy_j": energy_j,
        "energy_per_inference_j": energy_j / batch,
        "bram_used": -(-bram18 // 2),
        "size_bits": weight_bits_total.sum(axis=1),
        "bops": geometry.bops(macs / batch, wbf, abf).sum(axis=1),
        "macs": macs.sum(axis=1) / batch,
        "layer_latency_s": layer_s,
    }


def pipeline_interval(
    acc: Accelerator,
    *,
    packed_work: Any,
    weight_bytes: Any,
    first_input_bytes: Any,
    last_output_bytes: Any,
) -> Any:
    """Seconds between batches of a layer-pipelined design with the same DSP budget.

    The R*C DSPs are split among the layers in proportion to their packed work (FINN-style
    folding, ideal balance), so the compute interval is ``sum(MACs / p) / (R * C * f)``; the
    pipeline streams weights and the network input/output through DRAM once per batch, while
    activations between layers stay on chip.
    """
    compute = packed_work / (acc.rows * acc.cols * acc.pixel_parallel * acc.clock_hz)
    memory = (weight_bytes + first_input_bytes + last_output_bytes) / acc.dram_bandwidth
    return np.maximum(compute, memory) if isinstance(compute, np.ndarray) else max(compute, memory)
