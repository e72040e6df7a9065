"""Accounting: parameters, model size in bits, MACs and bit operations (BOPs) per layer.

All figures can be computed either on a model returned by
:func:`~optuna_kmtpe.quant.apply_config` (its real, possibly narrowed shapes and bits) or, without
building anything, on the original float model plus a config: widths are then applied
analytically with the same ``kept_channels`` rule and channel graph that ``apply_config`` uses.

Conventions:

* Size counts the quantizable layers only: weights at their bit-width, biases at 32 bits, and
  one 32-bit scale per output channel of a layer with quantized weights (symmetric weights need
  no zero point). BatchNorm is not counted: at deployment it folds into the per-channel scale
  and the bias.
* MACs are per sample (the batch size of ``example_input`` is divided out).
* BOPs = sum over layers of MACs * b_w * b_a (HAWQ-V3's and HAQ's definition), with float
  operands counted as 32 bits.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import torch
from torch import nn

from optuna_kmtpe.config import FLOAT_BITS
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.config import kept_channels
from optuna_kmtpe.graph import channel_graph
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.graph import record_layer_calls
from optuna_kmtpe.quant._apply import applied_config
from optuna_kmtpe.quant._apply import as_quant_config
from optuna_kmtpe.quant._quantizers import is_float_bits


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those with ``requires_grad``).

    Example:
        >>> count_parameters(nn.Linear(10, 3))
        33
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_size_bits(
    model: nn.Module,
    config: QuantConfig | Mapping[str, Any] | None = None,
    *,
    example_input: torch.Tensor | None = None,
) -> int:
    """Storage of the quantizable layers in bits under ``config``.

    Args:
        model: The original float model (``config`` then gives bits and widths; widths below 1
            need ``example_input``), or a model returned by ``apply_config`` (its own shapes
            and config are used; ``config`` may be omitted).
        config: Per-layer bits and widths; ``None`` on a float model means all 32-bit.
        example_input: One input batch, needed to apply widths below 1 analytically.

    Example:
        >>> from optuna_kmtpe.models import MLP
        >>> model = MLP()  # 64->64->32->10 Linear layers with biases
        >>> model_size_bits(model) // 32 == count_parameters(model)
        True
        >>> model_size_bits(model, QuantConfig.uniform(["net.1", "net.3", "net.5"], weight_bits=4))
        32640
    """
    total = 0
    for shape in _layer_shapes(model, config, example_input).values():
        weight_bits = shape["weight_bits"]
        bits_per_weight = FLOAT_BITS if is_float_bits(weight_bits) else weight_bits
        total += shape["weight_numel"] * bits_per_weight + shape["bias_numel"] * FLOAT_BITS
        if not is_float_bits(weight_bits):
            total += shape["out"] * FLOAT_BITS  # one scale per output channel
    return total


def layer_macs(
    model: nn.Module,
    example_input: torch.Tensor,
    config: QuantConfig | Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Multiply-accumulates per sample of each quantizable layer, in module order.

    Args:
        model: The original model, or one returned by ``apply_config`` (real shapes).
        example_input: One input batch (its batch size is divided out).
        config: Widths to apply analytically to the original model (bits are ignored here).

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import MLP
        >>> layer_macs(MLP(), torch.zeros(1, 1, 8, 8))
        {'net.1': 4096, 'net.3': 2048, 'net.5': 320}
    """
    shapes = _layer_shapes(model, config, example_input)
    return {name: shape["macs"] for name, shape in shapes.items()}


def bops(
    model: nn.Module,
    config: QuantConfig | Mapping[str, Any] | None,
    example_input: torch.Tensor,
) -> int:
    """Bit operations per sample: sum of MACs * weight bits * activation bits (float = 32).

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import MLP
        >>> names = ["net.1", "net.3", "net.5"]
        >>> bops(MLP(), QuantConfig.uniform(names, weight_bits=4, act_bits=8), torch.zeros(1, 64))
        206848
    """
    total = 0
    for shape in _layer_shapes(model, config, example_input).values():
        w_bits = FLOAT_BITS if is_float_bits(shape["weight_bits"]) else shape["weight_bits"]
        a_bits = FLOAT_BITS if is_float_bits(shape["act_bits"]) else shape["act_bits"]
        total += shape["macs"] * w_bits * a_bits
    return total


def layer_report(
    model: nn.Module,
    config: QuantConfig | Mapping[str, Any] | None,
    example_input: torch.Tensor,
) -> list[dict[str, Any]]:
    """One row per quantizable layer: bits, width, channels, parameters, MACs, BOPs, size bits.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import MLP
        >>> rows = layer_report(MLP(), None, torch.zeros(1, 64))
        >>> rows[0]["layer"], rows[0]["macs"], rows[0]["weight_bits"]
        ('net.1', 4096, 32)
    """
    rows = []
    for name, shape in _layer_shapes(model, config, example_input).items():
        w_bits = FLOAT_BITS if is_float_bits(shape["weight_bits"]) else shape["weight_bits"]
        a_bits = FLOAT_BITS if is_float_bits(shape["act_bits"]) else shape["act_bits"]
        size = shape["weight_numel"] * w_bits + shape["bias_numel"] * FLOAT_BITS
        if not is_float_bits(shape["weight_bits"]):
            size += shape["out"] * FLOAT_BITS
        rows.append(
            {
                "layer": name,
                "type": shape["type"],
                "weight_bits": shape["weight_bits"],
                "act_bits": shape["act_bits"],
                "width": shape["width"],
                "in_channels": shape["in"],
                "out_channels": shape["out"],
                "params": shape["weight_numel"] + shape["bias_numel"],
                "macs": shape["macs"],
                "bops": shape["macs"] * w_bits * a_bits,
                "size_bits": size,
            }
        )
    return rows


def _layer_shapes(
    model: nn.Module,
    config: QuantConfig | Mapping[str, Any] | None,
    example_input: torch.Tensor | None,
) -> dict[str, dict[str, Any]]:
    """Per layer: type, bits, width, in/out channels, weight/bias numel and MACs per sample."""
    layers = quantizable_layers(model)
    own = applied_config(model)
    cfg = as_quant_config(config) if config is not None else (own or QuantConfig({}))
    cfg.check_layers(layers)
    # On a model from apply_config the widths are already physical: never apply them twice.
    widths_applied = own is not None
    narrowed = {
        name
        for name, layer in layers.items()
        if not widths_applied and kept_channels(_out(layer), cfg.layer(name).width) < _out(layer)
    }
    graph = None
    if narrowed:
        if example_input is None:
            raise ValueError(
                f"The config narrows {sorted(narrowed)}: pass example_input=<one input batch> "
                "to compute the pruned shapes."
            )
        graph = channel_graph(model, example_input)
        blocked = [name for name in narrowed if not graph.prunable[name]]
        if blocked:
            raise ValueError(
                f"Layer(s) {blocked} cannot be narrowed ({graph.reasons[blocked[0]]}); keep "
                "their width at 1.0."
            )
    spatial = _output_positions(model, layers, example_input) if example_input is not None else {}

    out_kept = {
        name: (
            kept_channels(_out(layer), cfg.layer(name).width) if name in narrowed else _out(layer)
        )
        for name, layer in layers.items()
    }
    shapes: dict[str, dict[str, Any]] = {}
    for name, layer in layers.items():
        in_channels = _in(layer)
        if graph is not None:
            producer = graph.producers[name]
            if producer is not None and producer in narrowed:
                in_channels = graph.input_multiplier[name] * out_kept[producer]
        out_channels = out_kept[name]
        groups = int(getattr(layer, "groups", 1))
        kernel = math.prod(layer.kernel_size) if not isinstance(layer, nn.Linear) else 1
        weight_numel = out_channels * (in_channels // groups) * kernel
        bias_numel = out_channels if getattr(layer, "bias", None) is not None else 0
        layer_config = cfg.layer(name)
        shapes[name] = {
            "type": type(layer).__name__,
            "weight_bits": getattr(layer, "weight_bits", layer_config.weight_bits),
            "act_bits": getattr(layer, "act_bits", layer_config.act_bits),
            "width": layer_config.width,
            "in": in_channels,
            "out": out_channels,
            "weight_numel": weight_numel,
            "bias_numel": bias_numel,
            "macs": weight_numel * spatial.get(name, 0),
        }
    return shapes


def _output_positions(
    model: nn.Module, layers: dict[str, nn.Module], example_input: torch.Tensor
) -> dict[str, int]:
    """Output positions per sample of each layer (H_out * W_out; rows for a Linear)."""
    calls = record_layer_calls(model, example_input, layers)
    return {
        name: sum(
            math.prod(out_shape) // max(1, out_shape[0]) // max(1, _out(layers[name]))
            for _, out_shape in layer_calls
        )
        for name, layer_calls in calls.items()
        if layer_calls
    }


def _out(layer: nn.Module) -> int:
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)


def _in(layer: nn.Module) -> int:
    return int(layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels)
