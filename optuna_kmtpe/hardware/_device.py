"""FPGA device descriptions: presets with part data, and user devices (kwargs, TOML, JSON)."""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from optuna_kmtpe.hardware._packing import DSP_KINDS


@dataclasses.dataclass(frozen=True)
class FPGADevice:
    """One FPGA part on one board, as the cost model sees it.

    Args:
        name: Short name (the preset key, e.g. ``"zcu102"``).
        part: Part number.
        dsp_kind: A key of :data:`DSP_KINDS` (``"DSP48E1"``, ``"DSP48E2"``, ``"DSP58"``).
        dsp_count: DSP slices of the part.
        bram36: 36 Kb block RAMs of the part (each two 18 Kb halves). UltraRAM is listed for
            information but the model places buffers in block RAM only.
        clock_hz: Clock of the accelerator (a typical achieved design clock, not the DSP's
            datasheet maximum).
        dram_bandwidth: Peak off-chip memory bandwidth available to the accelerator, bytes/s.
        static_power_w: Static (leakage) power of the device in watts.
        uram: 288 Kb UltraRAM blocks (information only).
        description: Board and notes.
        sources: Where each number comes from; ``[unverified]`` marks numbers not checked
            against the datasheet in this project, ``[estimate]`` marks modelling choices.

    Example:
        >>> dev = FPGADevice(name="mine", part="xczu3eg", dsp_kind="DSP48E2", dsp_count=360,
        ...                  bram36=216, clock_hz=250e6, dram_bandwidth=8.5e9,
        ...                  static_power_w=0.3)
        >>> dev.bram18
        432
    """

    name: str
    part: str
    dsp_kind: str
    dsp_count: int
    bram36: int
    clock_hz: float
    dram_bandwidth: float
    static_power_w: float
    uram: int = 0
    description: str = ""
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"FPGADevice {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("FPGADevice needs a non-empty name.")
        if self.dsp_kind not in DSP_KINDS:
            raise ValueError(
                f"{where}: dsp_kind={self.dsp_kind!r}; use one of {tuple(DSP_KINDS)}."
            )
        for field, low in (("dsp_count", 1), ("bram36", 1), ("uram", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{where}: {field} must be an int >= {low}, got {value!r}.")
        for field in ("clock_hz", "dram_bandwidth", "static_power_w"):
            value = getattr(self, field)
            strict = field != "static_power_w"  # only the static power may be 0
            if not _is_number(value) or value < 0 or (strict and value == 0):
                bound = "> 0" if strict else ">= 0"
                raise ValueError(f"{where}: {field} must be a number {bound}, got {value!r}.")
        object.__setattr__(self, "sources", tuple(self.sources))

    def __str__(self) -> str:
        return (
            f"{self.part}: {self.dsp_count} {self.dsp_kind}, {self.bram36} BRAM36, "
            f"{self.clock_hz / 1e6:g} MHz, {self.dram_bandwidth / 1e9:g} GB/s DRAM, "
            f"{self.static_power_w:g} W static"
        )

    @property
    def bram18(self) -> int:
        """18 Kb block RAM halves."""
        return 2 * self.bram36

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sources"] = list(self.sources)
        return data


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


_PS = "[estimate] static power: typical device static power for the part size; use Xilinx XPE"
_CLK = "[estimate] clock: typical achieved accelerator clock on this part, not the DSP maximum"

DEVICE_PRESETS: dict[str, FPGADevice] = {
    "pynq-z2": FPGADevice(
        name="pynq-z2",
        part="xc7z020clg400-1",
        dsp_kind="DSP48E1",
        dsp_count=220,
        bram36=140,
        clock_hz=100e6,
        dram_bandwidth=2.1e9,
        static_power_w=0.15,
        description="TUL PYNQ-Z2 (Zynq-7020, Artix-7 fabric), 512 MB DDR3.",
        sources=(
            "DSP/BRAM: Zynq-7000 product table DS190 (XC7Z020: 220 DSP48E1, 140 BRAM36 = 4.9 "
            "Mb); confirmed by FINN's platform table (finn.builder.platforms: dsp 220, "
            "bram_18k 280) and a third-party part list",
            "DRAM: 16-bit DDR3 at 1050 MT/s = 2.1 GB/s [unverified]",
            "clock: 100 MHz, the FINN/PYNQ default fabric clock; " + _CLK,
            _PS,
        ),
    ),
    "ultra96": FPGADevice(
        name="ultra96",
        part="xczu3eg-sbva484-1",
        dsp_kind="DSP48E2",
        dsp_count=360,
        bram36=216,
        clock_hz=250e6,
        dram_bandwidth=8.5e9,
        static_power_w=0.3,
        description="Avnet Ultra96-V2 (Zynq UltraScale+ ZU3EG), 2 GB LPDDR4.",
        sources=(
            "DSP/BRAM: Zynq UltraScale+ product table DS891 (ZU3EG: 360 DSP48E2, 216 BRAM36 = "
            "7.6 Mb); FINN's platform table lists dsp 360 and 'Datasheet: 216' block RAMs",
            "DRAM: 32-bit LPDDR4 at 2133 MT/s = 8.5 GB/s [unverified]",
            _CLK,
            _PS,
        ),
    ),
    "zcu102": FPGADevice(
        name="zcu102",
        part="xczu9eg-ffvb1156-2",
        dsp_kind="DSP48E2",
        dsp_count=2520,
        bram36=912,
        clock_hz=300e6,
        dram_bandwidth=19.2e9,
        static_power_w=0.7,
        description="Xilinx ZCU102 (Zynq UltraScale+ ZU9EG), 4 GB PS DDR4 (64-bit).",
        sources=(
            "DSP/BRAM: Zynq UltraScale+ product table DS891 (ZU9EG: 2,520 DSP48E2, 912 BRAM36 "
            "= 32.1 Mb); confirmed by FINN's platform table (dsp 2520, bram_18k 1824) and "
            "other public ZCU102 resource budgets",
            "DRAM: 64-bit PS DDR4 at 2400 MT/s = 19.2 GB/s [unverified]",
            "clock: 300 MHz, the usual Vitis AI DPU clock on ZCU102; " + _CLK,
            _PS,
        ),
    ),
    "u250": FPGADevice(
        name="u250",
        part="xcu250-figd2104-2L",
        dsp_kind="DSP48E2",
        dsp_count=12288,
        bram36=2688,
        uram=1280,
        clock_hz=300e6,
        dram_bandwidth=77e9,
        static_power_w=15.0,
        description="AMD Alveo U250 data-center card, 64 GB DDR4 in 4 channels.",
        sources=(
            "DSP/BRAM/URAM: Alveo U250 data sheet DS962 (12,288 DSP slices, 2,688 BRAM36 = "
            "94.5 Mb, 1,280 URAM); FINN's platform table gives the same datasheet numbers "
            "(and 11,520 DSPs left to user kernels by the shell)",
            "DRAM: 77 GB/s for DDR-based Alveo cards, Vitis UG1393 'HBM Configuration and Use'",
            "clock: 300 MHz, the default Vitis kernel clock on Alveo; " + _CLK,
            _PS + " (large part: several W to tens of W)",
        ),
    ),
    "vck190": FPGADevice(
        name="vck190",
        part="xcvc1902-vsva2197-2MP",
        dsp_kind="DSP58",
        dsp_count=1968,
        bram36=967,
        uram=463,
        clock_hz=400e6,
        dram_bandwidth=25.6e9,
        static_power_w=5.0,
        description="AMD Versal VCK190 (VC1902); programmable logic only (AI Engines not "
        "modelled), DDR4 DIMM.",
        sources=(
            "DSP/BRAM/URAM: Versal AI Core product table DS950 (VC1902: 1,968 DSP58, 967 BRAM36"
            ", 463 URAM) [unverified]",
            "DSP58 modes (27x24 multiplier, 3-element INT8 dot product, single-precision "
            "float): Versal UG1273 'Programmable Logic'",
            "DRAM: 64-bit DDR4 DIMM at 3200 MT/s = 25.6 GB/s [unverified]",
            _CLK,
            _PS,
        ),
    ),
}
"""Built-in devices, keyed by name. Numbers and their sources are in each device's
``sources``; anything marked ``[unverified]`` comes from vendor tables recalled but not checked
here, and should be confirmed before quoting."""

DEFAULT_DEVICE = "pynq-z2"
"""The preset used when none is named (``FPGAModel()``, ``kmtpe search``). A small board: on
large parts a small CNN fits in one pass of the array and its latency stops depending on the
bit-widths, which would leave a bit-width search nothing to trade."""


def get_device(name_or_path: str | os.PathLike[str] | FPGADevice) -> FPGADevice:
    """A preset by name, or a user-defined device read from a ``.toml`` or ``.json`` file.

    A device file holds the :class:`FPGADevice` fields at top level (or under a ``[device]``
    table), for example::

        name = "my-board"
        part = "xczu7ev"
        dsp_kind = "DSP48E2"
        dsp_count = 1728
        bram36 = 312
        clock_hz = 300e6
        dram_bandwidth = 19.2e9
        static_power_w = 0.6

    Args:
        name_or_path: A key of :data:`DEVICE_PRESETS` (case-insensitive), a path to a device
            file, or an :class:`FPGADevice` (returned as is).

    Returns:
        The device.

    Example:
        >>> get_device("zcu102").dsp_count
        2520
    """
    if isinstance(name_or_path, FPGADevice):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(
            f"get_device expects a preset name, a path or an FPGADevice, got "
            f"{type(name_or_path).__name__}."
        )
    key = os.fspath(name_or_path)
    if key.lower() in DEVICE_PRESETS:
        return DEVICE_PRESETS[key.lower()]
    path = Path(key)
    if path.suffix.lower() in (".toml", ".json"):
        if not path.is_file():
            raise ValueError(f"Device file {str(path)!r} does not exist.")
        return device_from_file(path)
    raise ValueError(
        f"Unknown device {key!r}; use one of the presets {sorted(DEVICE_PRESETS)} or the path "
        f"of a .toml/.json device file."
    )


def device_from_file(path: str | os.PathLike[str]) -> FPGADevice:
    """Read a user-defined device from a TOML or JSON file (see :func:`get_device`)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib  # Python >= 3.11

            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ImportError:
        raise ValueError(
            "Reading TOML device files needs Python >= 3.11 (tomllib); use a .json file."
        ) from None
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError both subclass ValueError
        raise ValueError(f"Device file {str(path)!r} is not valid: {exc}.") from exc
    if isinstance(data, Mapping) and isinstance(data.get("device"), Mapping):
        data = data["device"]
    if not isinstance(data, Mapping):
        raise ValueError(f"Device file {str(path)!r} must hold a table of FPGADevice fields.")
    data = dict(data)
    data.setdefault("name", path.stem)
    data.setdefault("part", data["name"])
    return device_from_dict(data, where=f"device file {str(path)!r}")


def device_from_dict(data: Mapping[str, Any], *, where: str = "device") -> FPGADevice:
    """Build an :class:`FPGADevice` from a mapping of its fields, naming missing/unknown keys."""
    fields = {f.name for f in dataclasses.fields(FPGADevice)}
    required = {
        f.name
        for f in dataclasses.fields(FPGADevice)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown = sorted(set(data) - fields)
    missing = sorted(required - set(data))
    if unknown or missing:
        raise ValueError(
            f"{where}: unknown keys {unknown} and missing keys {missing}; an FPGADevice needs "
            f"{sorted(required)} and may add {sorted(fields - required)}."
        )
    values = dict(data)  # (FPGADevice makes the sources a tuple)
    for field in ("dsp_count", "bram36", "uram"):
        value = values.get(field)
        if isinstance(value, float) and value.is_integer():
            values[field] = int(value)
    return FPGADevice(**values)
