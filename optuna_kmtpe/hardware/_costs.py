"""The cost formulas: every layer of a network on a weight-stationary systolic array.

Written once, on arrays of configs of shape ``(n_configs, n_layers)``: :meth:`FPGAModel.evaluate`
runs one config as a batch of one and reads the per-layer arrays for its report,
:meth:`FPGAModel.evaluate_batch` runs thousands (see ``docs/hardware.md``).

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

Channel divisions run on integers; the other integer quantities are held in float64, which is
exact here (integers below 2**53; a quotient of such integers rounds to an integer only when it
is one). Network totals add the layers in module order, as Python's ``sum`` does, so that every
figure is the same bit for bit whether a config is evaluated alone or among others.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optuna_kmtpe import geometry
from optuna_kmtpe._metric_names import BOPS
from optuna_kmtpe._metric_names import ENERGY_J
from optuna_kmtpe._metric_names import LATENCY_S
from optuna_kmtpe._metric_names import SIZE_BITS
from optuna_kmtpe._metric_names import THROUGHPUT_IPS
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
    """The resolved accelerator parameters the formulas read."""

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


def bram18_blocks(depth: Any, width: Any) -> Any:
    """18 Kb block RAM halves for memory banks of ``depth`` words of ``width`` bits, elementwise
    on ints or int arrays: the cheapest of the block's aspect ratios."""
    return np.minimum.reduce([-(-width // w) * -(-depth // d) for d, w in _BRAM18_MODES])


@dataclasses.dataclass(frozen=True)
class BatchTables:
    """One network's constants, and lookup tables that turn per-element work into gathers.

    Bit pairs are indexed by ``b_w * 33 + b_a``; the tables are the formulas of this module
    evaluated once on every index a config can reach, so that a batch of configs needs no
    integer division and no branch.
    """

    kernel_size: np.ndarray  # (L,) kernel taps
    in_positions: np.ndarray  # (L,) input positions per sample
    out_positions: np.ndarray  # (L,) output positions per sample
    readers: tuple[tuple[int, ...], ...]  # layers reading each layer's output activations
    packing: np.ndarray  # (33*33,) products per DSP per cycle
    mac_pj: np.ndarray  # (33*33 * (max_acc + 1),) EnergyParams.mac_pj by [pair, acc bits]
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
        accumulator = np.arange(energy.max_accumulator_bits + 1)
        mac_pj = energy.mac_pj(bw[..., None], ba[..., None], accumulator)
        weight_bram = acc.buffers * acc.cols * bram18_blocks(acc.rows * packed, np.maximum(bw, 1))

        out_positions = np.array([layer.out_positions for layer in network], dtype=np.int64)
        in_positions = np.array([layer.in_positions for layer in network], dtype=np.int64)
        m_per_copy = -(-out_positions * batch // acc.pixel_parallel)
        # Packing along outputs stacks ceil(p) partial sums per word of the buffer.
        depth = m_per_copy[:, None, None] * (np.ones_like(codes) if acc.pack_reduction else codes)
        banks = acc.cols * acc.pixel_parallel
        psum = acc.buffers * banks * bram18_blocks(depth, accumulator[None, :, None])
        in_banks = acc.rows * acc.pixel_parallel
        tables = [
            in_banks
            * bram18_blocks(
                -(-(batch * np.arange(layer.in_channels + 1)[:, None] * positions) // in_banks),
                bits[None, :],
            ).ravel()
            for layer, positions in zip(network, in_positions)
        ]
        index = {name: j for j, name in enumerate(network.names)}
        return cls(
            kernel_size=np.array([layer.kernel_size for layer in network], dtype=np.int64),
            in_positions=in_positions,
            out_positions=out_positions,
            readers=tuple(
                tuple(index[reader] for reader in network.output_readers(name))
                for name in network.names
            ),
            packing=table.ravel(),
            mac_pj=mac_pj.ravel(),
            weight_bram18=weight_bram.ravel(),
            packed_code=packed_code.ravel().astype(np.int64),
            psum_bram18=psum.ravel(),
            n_codes=len(codes),
            input_offset=np.cumsum([0] + [t.size for t in tables[:-1]]).astype(np.int64),
            input_bram18=np.concatenate(tables),
        )


def batch_costs(
    acc: Accelerator,
    tables: BatchTables,
    weight_bits: np.ndarray,
    act_bits: np.ndarray,
    pruned: PrunedChannels,
    batch: int,
    *,
    per_layer: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Network and layer costs of many configs at once; inputs are ``(n, L)``.

    ``pruned`` holds the configs' channels (:meth:`~optuna_kmtpe.geometry.ChannelLayout.pruned`).

    Returns:
        The network totals (arrays of length ``n``, keyed by :class:`HardwareReport` field)
        and the per-layer costs (``(n, L)`` arrays keyed by :class:`LayerCost` field): the
        layer latencies only, or every field when ``per_layer``.
    """
    n_layers = weight_bits.shape[1]
    rows, cols = acc.rows, acc.cols

    # Ceil divisions on the int64 channels: numpy's float floor division is several times
    # slower than its integer one.
    reduction = geometry.reduction_length(pruned.in_channels, pruned.groups, tables.kernel_size)
    reduction = reduction.astype(np.float64)
    outputs = geometry.outputs_per_group(pruned.out_channels, pruned.groups).astype(np.float64)
    cin = pruned.in_channels.astype(np.float64)
    cout = pruned.out_channels.astype(np.float64)
    groups = pruned.groups.astype(np.float64)
    out_bits = act_bits.take([r[0] if len(r) == 1 else 0 for r in tables.readers], axis=1)
    for j, readers in enumerate(tables.readers):
        if len(readers) != 1:  # several readers, or none (the network output)
            out_bits[:, j] = act_bits[:, readers].max(axis=1) if readers else acc.output_bits

    pair = weight_bits * 33 + act_bits
    wbf = weight_bits.astype(np.float64)
    abf = act_bits.astype(np.float64)
    p = tables.packing.take(pair)
    m = (tables.out_positions * batch).astype(np.float64)
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
    in_bits = (batch * tables.in_positions) * cin * abf
    out_bits_total = (batch * tables.out_positions) * cout * out_bits
    dram_bits = weight_bits_total + in_bits + out_bits_total
    dram_bytes = dram_bits / 8
    memory_s = dram_bytes / acc.dram_bandwidth
    if acc.double_buffer:
        latency_s = np.maximum(compute_s, memory_s)
    else:
        latency_s = compute_s + memory_s

    energy = acc.energy
    acc_bits = energy.accumulator_bits(wbf, abf, reduction)
    acc_index = acc_bits.astype(np.int64)
    mac_pj = tables.mac_pj.take(pair * (energy.max_accumulator_bits + 1) + acc_index)
    onchip_bits = (
        weight_bits_total
        + groups * n_tiles * m * reduction * abf
        + groups * m * outputs * acc_bits * (2 * k_tiles - 1)
    )
    # Products in this order (not folded into one constant): the figures reports always gave.
    mac_j = macs * mac_pj * energy.fpga_factor * 1e-12
    bram_j = onchip_bits * energy.bram_pj_per_bit * 1e-12
    dram_j = dram_bits * energy.dram_pj_per_bit * 1e-12

    layer_index = np.arange(n_layers) * (energy.max_accumulator_bits + 1)
    psum_index = (layer_index + acc_index) * tables.n_codes + tables.packed_code.take(pair)
    input_index = tables.input_offset + pruned.in_channels * 33 + act_bits
    input_bram18 = tables.input_bram18.take(input_index)
    psum_bram18 = tables.psum_bram18.take(psum_index)
    weight_bram18 = tables.weight_bram18.take(pair)
    bram18 = input_bram18.max(axis=1) + psum_bram18.max(axis=1) + weight_bram18.max(axis=1)

    network_s = _sum_layers(latency_s)
    energy_j = _sum_layers(mac_j + bram_j + dram_j) + acc.static_power_w * network_s
    size_bits = _sum_layers(weight_bits_total)
    # A layer-pipelined design with the same DSP budget: the DSPs are split among the layers
    # in proportion to their packed work (FINN-style folding, ideal balance); weights and the
    # network input/output stream through DRAM once per batch, activations stay on chip.
    pipeline_s = np.maximum(
        _sum_layers(macs / p) / (rows * cols * acc.pixel_parallel * acc.clock_hz),
        (size_bits / 8 + in_bits[:, 0] / 8 + out_bits_total[:, -1] / 8) / acc.dram_bandwidth,
    )
    layer_bops = geometry.bops(macs / batch, wbf, abf)
    totals = {
        LATENCY_S: network_s,
        THROUGHPUT_IPS: batch / pipeline_s,
        "sequential_throughput_ips": batch / network_s,
        ENERGY_J: energy_j,
        "energy_per_inference_j": energy_j / batch,
        "bram_used": -(-bram18 // 2),
        SIZE_BITS: size_bits,
        BOPS: _sum_layers(layer_bops),
        "macs": _sum_layers(macs) / batch,
    }
    layers = {LATENCY_S: latency_s}
    if per_layer:
        static_j = acc.static_power_w * latency_s
        layers.update(
            packing=p,
            macs=macs,
            tiles=tiles,
            cycles=cycles,
            utilization=macs / (cycles * rows * cols * acc.pixel_parallel * p),
            compute_s=compute_s,
            dram_bytes=dram_bytes,
            memory_s=memory_s,
            bound=np.where(compute_s >= memory_s, "compute", "memory"),
            accumulator_bits=acc_bits,
            mac_energy_j=mac_j,
            bram_energy_j=bram_j,
            dram_energy_j=dram_j,
            static_energy_j=static_j,
            energy_j=mac_j + bram_j + dram_j + static_j,
            bram18=input_bram18 + psum_bram18 + weight_bram18,
            size_bits=weight_bits_total,
            bops=layer_bops,
        )
    return totals, layers


def _sum_layers(values: np.ndarray) -> np.ndarray:
    """Row sums of ``(n, L)`` in module order, as ``sum()`` adds (numpy's pairwise ``sum`` rounds
    differently, and along short rows it is slower than this loop over the columns)."""
    total = values[:, 0].copy()
    for column in values.T[1:]:
        total += column
    return total
