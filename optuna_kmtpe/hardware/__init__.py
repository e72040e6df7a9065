"""Analytic FPGA cost model: latency, throughput, energy and resources of a quantized network.

A weight-stationary systolic array of DSP processing elements with operand packing, a DRAM
roofline, Horowitz-scaled MAC energy and device presets with real part data. The cost model
imports only numpy; :func:`trace_layer_shapes` imports torch when called.

Example:
    >>> from optuna_kmtpe.config import QuantConfig
    >>> from optuna_kmtpe.hardware import FPGAModel, LayerShape
    >>> conv = LayerShape(name="conv", kind="conv2d", in_channels=16, out_channels=64,
    ...                   input_shape=(16, 8, 8), output_shape=(64, 8, 8), kernel=(3, 3))
    >>> model = FPGAModel(device="zcu102")
    >>> r8 = model.evaluate([conv], QuantConfig.uniform(["conv"], weight_bits=8, act_bits=8))
    >>> r4 = model.evaluate([conv], QuantConfig.uniform(["conv"], weight_bits=4, act_bits=4))
    >>> r4.layers[0].cycles < r8.layers[0].cycles
    True
"""

from __future__ import annotations

from optuna_kmtpe.geometry import LAYER_KINDS
from optuna_kmtpe.geometry import LayerShape
from optuna_kmtpe.geometry import NetworkShape
from optuna_kmtpe.geometry import PrunedLayer
from optuna_kmtpe.hardware._device import DEFAULT_DEVICE
from optuna_kmtpe.hardware._device import DEVICE_PRESETS
from optuna_kmtpe.hardware._device import FPGADevice
from optuna_kmtpe.hardware._device import device_from_dict
from optuna_kmtpe.hardware._device import device_from_file
from optuna_kmtpe.hardware._device import get_device
from optuna_kmtpe.hardware._energy import EnergyParams
from optuna_kmtpe.hardware._model import FPGAModel
from optuna_kmtpe.hardware._model import HardwareReport
from optuna_kmtpe.hardware._model import LayerCost
from optuna_kmtpe.hardware._model import config_arrays
from optuna_kmtpe.hardware._packing import DSP_KINDS
from optuna_kmtpe.hardware._packing import PACKING_VARIANTS
from optuna_kmtpe.hardware._packing import DSPKind
from optuna_kmtpe.hardware._packing import make_packing
from optuna_kmtpe.hardware._packing import packing_factor
from optuna_kmtpe.hardware._trace import trace_layer_shapes


__all__ = [
    "DEFAULT_DEVICE",
    "DEVICE_PRESETS",
    "DSP_KINDS",
    "DSPKind",
    "EnergyParams",
    "FPGADevice",
    "FPGAModel",
    "HardwareReport",
    "LAYER_KINDS",
    "LayerCost",
    "LayerShape",
    "NetworkShape",
    "PACKING_VARIANTS",
    "PrunedLayer",
    "config_arrays",
    "device_from_dict",
    "device_from_file",
    "get_device",
    "make_packing",
    "packing_factor",
    "trace_layer_shapes",
]
