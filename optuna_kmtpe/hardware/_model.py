"""The FPGA cost model: a weight-stationary systolic array of DSP processing elements."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
import dataclasses
import math
import os
from typing import Any

import numpy as np

from optuna_kmtpe._metric_names import DSP_USED
from optuna_kmtpe._metric_names import FEASIBLE
from optuna_kmtpe._metric_names import LATENCY_S
from optuna_kmtpe._metric_names import LAYER_LATENCY_S
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.geometry import LayerShape
from optuna_kmtpe.geometry import NetworkShape
from optuna_kmtpe.hardware import _costs
from optuna_kmtpe.hardware._device import DEFAULT_DEVICE
from optuna_kmtpe.hardware._device import FPGADevice
from optuna_kmtpe.hardware._device import get_device
from optuna_kmtpe.hardware._energy import EnergyParams
from optuna_kmtpe.hardware._packing import DSP_KINDS
from optuna_kmtpe.hardware._packing import PACKING_VARIANTS
from optuna_kmtpe.hardware._packing import check_operand_bits
from optuna_kmtpe.hardware._packing import make_packing
from optuna_kmtpe.hardware._packing import packing_table


_DEFAULT_SIDE = 16


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """Costs of one layer for one config and batch (times in s, energy in J, memory in bytes).

    ``bram18`` is the block RAM this layer alone would need (input, partial-sum and weight
    buffers, in 18 Kb halves); the network needs the largest of each buffer over its layers.
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    weight_bits: int
    act_bits: int
    packing: float
    macs: int
    tiles: int
    cycles: int
    utilization: float
    compute_s: float
    dram_bytes: float
    memory_s: float
    latency_s: float
    bound: str
    accumulator_bits: int
    mac_energy_j: float
    bram_energy_j: float
    dram_energy_j: float
    static_energy_j: float
    energy_j: float
    bram18: int
    size_bits: int
    bops: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The Python type of a field (annotations are strings here) of the records built from arrays.
_TYPES = {"int": int, "float": float, "str": str}
# LayerCost fields read from the per-layer cost arrays (packing..bops), with their Python type.
_COST_FIELDS = tuple((f.name, _TYPES[f.type]) for f in dataclasses.fields(LayerCost)[6:])


@dataclasses.dataclass(frozen=True)
class HardwareReport:
    """What one config costs on one device.

    Attributes:
        device: Device name.
        batch: Inputs processed together (latency and energy are for the whole batch).
        latency_s: Layer-by-layer latency of the batch on the array (sum of layer times).
        throughput_ips: Inferences per second of a layer-pipelined design with the same DSP
            budget (layers folded onto the DSPs in proportion to their work).
        sequential_throughput_ips: ``batch / latency_s`` (one layer at a time).
        energy_j: Energy of the batch (dynamic + static power over the latency).
        energy_per_inference_j: ``energy_j / batch``.
        dsp_used, dsp_available: DSP slices of the array and of the device.
        bram_used, bram_available: 36 Kb block RAMs needed (largest input, partial-sum and
            weight buffers over the layers) and available.
        feasible: Whether the design fits the device.
        violations: For each resource that does not fit (``"dsp"``, ``"bram"``), the relative
            excess ``used / available - 1`` (> 0); empty when feasible. ``dict`` shaped so it
            can feed Optuna constraints (positive = violated).
        violation_messages: One readable line per violation, with the amounts.
        size_bits: Model size, :func:`optuna_kmtpe.geometry.weight_size_bits` summed over
            layers (kept weights x weight bits, a float layer at its own width).
        bops: Bit operations per inference, :func:`optuna_kmtpe.geometry.bops` summed over
            layers (MACs x b_w x b_a, float operands at their own width).
        macs: Multiply-accumulates per inference after widths.
        layers: Per-layer :class:`LayerCost` in module order.
    """

    device: str
    batch: int
    latency_s: float
    throughput_ips: float
    sequential_throughput_ips: float
    energy_j: float
    energy_per_inference_j: float
    dsp_used: int
    dsp_available: int
    bram_used: int
    bram_available: int
    feasible: bool
    violations: dict[str, float]
    violation_messages: tuple[str, ...]
    size_bits: int
    bops: int
    macs: int
    layers: tuple[LayerCost, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (layers as a list of dicts)."""
        data = dataclasses.asdict(self)  # nested records and dicts copied, tuples kept
        data["violation_messages"] = list(self.violation_messages)
        data["layers"] = list(data["layers"])
        return data


class FPGAModel:
    """Analytic latency, throughput, energy and resource model of a DSP systolic array.

    One weight-stationary ``rows x cols`` array of processing elements (one DSP each) runs the
    quantizable layers one after another; each DSP computes ``p(b_w, b_a)`` products per cycle
    (operand packing); weights and activations stream from DRAM (roofline); buffers live in
    block RAM. See ``docs/hardware.md`` for the formulas, constants and limits.

    Args:
        device: A preset name (see :data:`DEVICE_PRESETS`), a ``.toml``/``.json`` device file or
            an :class:`FPGADevice`.
        rows: Array rows (reduction axis). Default: 16 (Xilinx DPU's input-channel
            parallelism), or the largest square that fits a device with fewer than 256 DSPs.
        cols: Array columns (output-channel axis). Default: as ``rows``.
        pixel_parallel: Copies of the array that share weights and compute different output
            positions (the DPU's pixel parallelism). Default: as many as the DSPs allow.
        packing: A variant name (``"standard"``, ``"overpack"``, ``"none"``) or a callable
            ``p(weight_bits, act_bits) -> products per DSP per cycle``.
        packing_axis: ``"output"`` or ``"reduction"``: which GEMM axis packed products extend.
            Default: from the DSP kind (DSP58 packs along the reduction, DSP48 along outputs).
        energy: Energy constants.
        double_buffer: Overlap weight loading and DRAM transfers with compute (roofline max);
            without it, each tile waits ``rows`` cycles for its weights and memory time adds to
            compute time.
        output_bits: Bits of the outputs of the last layer (written to DRAM).

    Example:
        >>> from optuna_kmtpe.config import QuantConfig
        >>> layer = LayerShape(name="fc", kind="linear", in_channels=64, out_channels=10,
        ...                    input_shape=(64,), output_shape=(10,))
        >>> model = FPGAModel(device="zcu102", rows=8, cols=8, pixel_parallel=1)
        >>> report = model.evaluate([layer], QuantConfig.uniform(["fc"], weight_bits=4,
        ...                                                      act_bits=4))
        >>> report.layers[0].cycles, report.feasible
        (120, True)
    """

    def __init__(
        self,
        *,
        device: str | os.PathLike[str] | FPGADevice = DEFAULT_DEVICE,
        rows: int | None = None,
        cols: int | None = None,
        pixel_parallel: int | None = None,
        packing: str | Callable[[int, int], float] = "standard",
        packing_axis: str | None = None,
        energy: EnergyParams | None = None,
        double_buffer: bool = True,
        output_bits: int = 32,
    ) -> None:
        self.device = get_device(device)
        side = min(_DEFAULT_SIDE, math.isqrt(self.device.dsp_count))
        self.rows = _check_size(side if rows is None else rows, "rows")
        self.cols = _check_size(side if cols is None else cols, "cols")
        if pixel_parallel is None:
            pixel_parallel = max(1, self.device.dsp_count // (self.rows * self.cols))
        self.pixel_parallel = _check_size(pixel_parallel, "pixel_parallel")
        if isinstance(packing, str):
            packing = make_packing(self.device.dsp_kind, packing)
        elif not callable(packing):
            raise ValueError(
                f"packing must be a variant name {PACKING_VARIANTS} or a callable "
                f"p(weight_bits, act_bits) -> products per DSP per cycle, got "
                f"{type(packing).__name__}."
            )
        self.packing = packing
        default_axis = DSP_KINDS[self.device.dsp_kind].packing_axis
        axis = default_axis if packing_axis is None else packing_axis
        if axis not in ("output", "reduction"):
            raise ValueError(f"packing_axis must be 'output' or 'reduction', got {axis!r}.")
        self.packing_axis = axis
        if energy is not None and not isinstance(energy, EnergyParams):
            raise ValueError(f"energy must be an EnergyParams, got {type(energy).__name__}.")
        self.energy = energy if energy is not None else EnergyParams()
        check_operand_bits(output_bits, field="output_bits")
        self.double_buffer = bool(double_buffer)
        self.output_bits = output_bits
        self._accelerator = _costs.Accelerator(
            rows=self.rows,
            cols=self.cols,
            pixel_parallel=self.pixel_parallel,
            clock_hz=float(self.device.clock_hz),
            dram_bandwidth=float(self.device.dram_bandwidth),
            static_power_w=float(self.device.static_power_w),
            pack_reduction=axis == "reduction",
            packing_table=np.asarray(packing_table(packing), dtype=np.float64),
            double_buffer=self.double_buffer,
            output_bits=output_bits,
            energy=self.energy,
        )
        self._compiled: dict[tuple[NetworkShape, int], _costs.BatchTables] = {}

    def __repr__(self) -> str:
        return (
            f"FPGAModel(device={self.device.name!r}, rows={self.rows}, cols={self.cols}, "
            f"pixel_parallel={self.pixel_parallel}, "
            f"packing={getattr(self.packing, '__name__', 'custom')}, "
            f"double_buffer={self.double_buffer})"
        )

    @property
    def dsp_used(self) -> int:
        """DSP slices of the arrays (``rows * cols * pixel_parallel``)."""
        return self.rows * self.cols * self.pixel_parallel

    def evaluate(
        self,
        shapes: NetworkShape | Iterable[LayerShape],
        config: QuantConfig,
        *,
        batch: int = 1,
    ) -> HardwareReport:
        """Per-layer and network costs of one config.

        Args:
            shapes: The network's layer shapes (from :func:`trace_layer_shapes` or built).
            config: Bits and widths per layer; layers it omits run in float at full width.
                Widths of depthwise layers are ignored (their channels follow their input).
            batch: Inputs processed together.

        Returns:
            The :class:`HardwareReport`.
        """
        network = _as_network(shapes)
        weight_bits, act_bits, widths = config_arrays(network, [config])
        batch = _check_size(batch, "batch")
        pruned = network.layout.pruned(widths)
        totals, per_layer = _costs.batch_costs(
            self._accelerator,
            self._tables(network, batch),
            weight_bits,
            act_bits,
            pruned,
            batch,
            per_layer=True,
        )
        values = {field: column[0].tolist() for field, column in per_layer.items()}
        layers = tuple(
            LayerCost(
                name=layer.name,
                kind=layer.kind,
                in_channels=int(pruned.in_channels[0, j]),
                out_channels=int(pruned.out_channels[0, j]),
                weight_bits=int(weight_bits[0, j]),
                act_bits=int(act_bits[0, j]),
                **{field: cast(values[field][j]) for field, cast in _COST_FIELDS},
            )
            for j, layer in enumerate(network)
        )
        # The totals are keyed by HardwareReport field (latency_s, ..., bram_used, ..., macs).
        network_costs = {
            f.name: _TYPES[f.type](totals[f.name][0])
            for f in dataclasses.fields(HardwareReport)
            if f.name in totals
        }
        violations, messages = self._violations(network_costs["bram_used"])
        return HardwareReport(
            device=self.device.name,
            batch=batch,
            dsp_used=self.dsp_used,
            dsp_available=self.device.dsp_count,
            bram_available=self.device.bram36,
            feasible=not violations,
            violations=violations,
            violation_messages=messages,
            layers=layers,
            **network_costs,
        )

    def evaluate_batch(
        self,
        shapes: NetworkShape | Iterable[LayerShape],
        weight_bits: Any,
        act_bits: Any,
        widths: Any = None,
        *,
        batch: int = 1,
        chunk_size: int = 2048,
    ) -> dict[str, np.ndarray]:
        """Network costs of many configs at once (for sweeps and Pareto plots).

        Args:
            shapes: The network's layer shapes; columns follow their module order.
            weight_bits: Integer array ``(n_configs, n_layers)`` (or ``(n_layers,)`` for one
                config) of weight bits in 1..32.
            act_bits: Same shape, activation bits in 1..32.
            widths: Same shape, widths in (0, 1]; default all 1.0. Depthwise columns are
                ignored.
            batch: Inputs processed together.
            chunk_size: Configs processed per numpy pass (bounds memory).

        Returns:
            Arrays of length ``n_configs``: ``latency_s``, ``throughput_ips``,
            ``sequential_throughput_ips``, ``energy_j``, ``energy_per_inference_j``,
            ``dsp_used``, ``bram_used``, ``feasible``, ``size_bits``, ``bops``, ``macs``; and
            ``layer_latency_s`` of shape ``(n_configs, n_layers)``. Equal to
            :meth:`evaluate` config by config.

        Example:
            >>> import numpy as np
            >>> layer = LayerShape(name="fc", kind="linear", in_channels=64, out_channels=64,
            ...                    input_shape=(64,), output_shape=(64,))
            >>> out = FPGAModel(device="zcu102", rows=8, cols=8).evaluate_batch(
            ...     [layer], np.array([[8], [4]]), np.array([[8], [4]]))
            >>> bool(out["latency_s"][0] > out["latency_s"][1])
            True
        """
        network = _as_network(shapes)
        batch = _check_size(batch, "batch")
        chunk_size = _check_size(chunk_size, "chunk_size")
        n_layers = len(network)
        wb = check_operand_bits(
            _config_array(weight_bits, "weight_bits", n_layers), field="weight_bits"
        )
        ab = check_operand_bits(_config_array(act_bits, "act_bits", n_layers), field="act_bits")
        wd = _config_array(1.0 if widths is None else widths, "widths", n_layers).astype(float)
        if not np.all((wd > 0) & (wd <= 1)):
            raise ValueError("widths must lie in (0, 1] (the fraction of channels kept).")
        try:
            wb, ab, wd = np.broadcast_arrays(wb, ab, wd)
        except ValueError:
            raise ValueError(
                f"weight_bits, act_bits and widths must have the same number of configs, got "
                f"{wb.shape}, {ab.shape} and {wd.shape}."
            ) from None
        tables = self._tables(network, batch)
        parts = []
        for start in range(0, wb.shape[0], chunk_size):
            chunk = slice(start, start + chunk_size)
            totals, per_layer = _costs.batch_costs(
                self._accelerator,
                tables,
                wb[chunk],
                ab[chunk],
                network.layout.pruned(wd[chunk]),
                batch,
            )
            parts.append({**totals, LAYER_LATENCY_S: per_layer[LATENCY_S]})
        result = (
            parts[0]
            if len(parts) == 1
            else {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        )
        n = wb.shape[0]
        result[DSP_USED] = np.full(n, self.dsp_used, dtype=np.int64)
        result[FEASIBLE] = (result["bram_used"] <= self.device.bram36) & (
            self.dsp_used <= self.device.dsp_count
        )
        return result

    def _tables(self, network: NetworkShape, batch: int) -> _costs.BatchTables:
        key = (network, batch)
        if key not in self._compiled:
            if len(self._compiled) >= 8:  # bounded: sweeps use one or two networks
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = _costs.BatchTables.build(self._accelerator, network, batch)
        return self._compiled[key]

    def _violations(self, bram_used: int) -> tuple[dict[str, float], tuple[str, ...]]:
        device = self.device
        excess: dict[str, float] = {}
        messages = []
        if self.dsp_used > device.dsp_count:
            excess["dsp"] = self.dsp_used / device.dsp_count - 1.0
            messages.append(
                f"DSP: {self.pixel_parallel} x {self.rows}x{self.cols} arrays need "
                f"{self.dsp_used} DSPs, {device.name} has {device.dsp_count}"
            )
        if bram_used > device.bram36:
            excess["bram"] = bram_used / device.bram36 - 1.0
            messages.append(
                f"BRAM: needs {bram_used} BRAM36 blocks, {device.name} has {device.bram36}"
            )
        return excess, tuple(messages)


def config_arrays(
    shapes: NetworkShape | Iterable[LayerShape], configs: Iterable[QuantConfig]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weight_bits, act_bits, widths)`` arrays of shape ``(n_configs, n_layers)`` for
    :meth:`FPGAModel.evaluate_batch`, columns in the network's module order (layers a config
    omits are float at full width).

    Example:
        >>> layer = LayerShape(name="fc", kind="linear", in_channels=4, out_channels=2,
        ...                    input_shape=(4,), output_shape=(2,))
        >>> wb, ab, wd = config_arrays([layer], [QuantConfig.uniform(["fc"], weight_bits=4)])
        >>> wb.tolist(), ab.tolist(), wd.tolist()
        ([[4]], [[8]], [[1.0]])
    """
    network = _as_network(shapes)
    rows = []
    for config in configs:
        if not isinstance(config, QuantConfig):
            raise ValueError(
                f"configs must hold QuantConfig objects, got {type(config).__name__}; build "
                f"one with QuantConfig({{name: LayerConfig(...)}})."
            )
        config.check_layers(network.names)
        rows.append([dataclasses.astuple(config.layer(name)) for name in network.names])
    table = np.array(rows, dtype=np.float64).reshape(-1, len(network), 3)
    return table[..., 0].astype(np.int64), table[..., 1].astype(np.int64), table[..., 2]


def _as_network(shapes: NetworkShape | Iterable[LayerShape]) -> NetworkShape:
    if isinstance(shapes, NetworkShape):
        return shapes
    if isinstance(shapes, LayerShape):
        return NetworkShape([shapes])
    return NetworkShape(shapes)


def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _config_array(values: Any, name: str, n_layers: int) -> np.ndarray:
    """``values`` as ``(n_configs, n_layers)`` (one config, or a scalar, is broadcast)."""
    array = np.asarray(values)
    array = np.broadcast_to(array, (n_layers,)) if array.ndim == 0 else array
    array = array[None, :] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != n_layers:
        raise ValueError(
            f"{name} must have shape (n_configs, {n_layers}) (one column per layer in module "
            f"order), got {np.shape(values)}."
        )
    return array
