"""Accounting: parameters, model size in bits, MACs and bit operations (BOPs) per layer.

All figures can be computed either on a model returned by
:func:`~optuna_kmtpe.quant.apply_config` (its real, possibly narrowed shapes and bits) or, without
building anything, on the original float model plus a config: widths are then applied
analytically with the same ``kept_channels`` rule and channel graph that ``apply_config`` uses.

Conventions:

* Size is :func:`optuna_kmtpe.geometry.deployed_size_bits` over the quantizable layers:
  weights at their bit-width (float as 32), biases at 32 bits, and one 32-bit scale per output
  channel of a layer with quantized weights. BatchNorm folds into the scale and the bias.
* MACs are per sample (the batch size of ``example_input`` is divided out); pruned shapes and
  weight counts come from :mod:`optuna_kmtpe.geometry`, as in the FPGA model.
* BOPs are :func:`optuna_kmtpe.geometry.bops_float32` (HAWQ-V3's and HAQ's definition, float
  operands counted as 32 bits). A study records the FPGA model's ``size_bits`` and ``bops``
  instead (see :mod:`optuna_kmtpe.geometry`).
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import torch
from torch import nn

from optuna_kmtpe import geometry
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.graph import layer_channels
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.graph import record_layer_calls
from optuna_kmtpe.quant._apply import applied_config
from optuna_kmtpe.quant._apply import as_quant_config
from optuna_kmtpe.quant._apply import kept_output_channels


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
    return sum(row["size_bits"] for row in layer_report(model, config, example_input))


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
    return {row["layer"]: row["macs"] for row in layer_report(model, config, example_input)}


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
    return sum(row["bops"] for row in layer_report(model, config, example_input))


def layer_report(
    model: nn.Module,
    config: QuantConfig | Mapping[str, Any] | None,
    example_input: torch.Tensor | None,
) -> list[dict[str, Any]]:
    """One row per quantizable layer: bits, width, channels, parameters, MACs, BOPs, size bits.

    Without ``example_input`` (only possible at full width) MACs and BOPs are 0.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import MLP
        >>> rows = layer_report(MLP(), None, torch.zeros(1, 64))
        >>> rows[0]["layer"], rows[0]["macs"], rows[0]["weight_bits"]
        ('net.1', 4096, 32)
    """
    layers = quantizable_layers(model)
    own = applied_config(model)
    cfg = as_quant_config(config) if config is not None else (own or QuantConfig({}))
    cfg.check_layers(layers)
    names = list(layers)
    facts = [layer_channels(layer) for layer in layers.values()]
    # On a model from apply_config the widths are already physical: never apply them twice.
    widths = [1.0 if own is not None else cfg.layer(name).width for name in names]
    graph = None if own is not None else kept_output_channels(model, layers, cfg, example_input)[1]
    producers: list[int | None] = [None] * len(names)
    multiplier = [1] * len(names)
    if graph is not None:
        index = {name: i for i, name in enumerate(names)}
        producers = [index.get(graph.producers[name]) for name in names]  # type: ignore[arg-type]
        multiplier = [graph.input_multiplier[name] for name in names]
    pruned = geometry.ChannelLayout(
        out_channels=[out for out, *_ in facts],
        in_channels=[cin for _, cin, *_ in facts],
        groups=[groups for *_, groups, _ in facts],
        producers=producers,
        input_multiplier=multiplier,
    ).pruned(widths)
    calls = record_layer_calls(model, example_input, layers) if example_input is not None else {}
    rows = []
    for j, (name, layer) in enumerate(layers.items()):
        cin, cout, groups = (int(a[0, j]) for a in pruned)
        weights = int(geometry.weight_count(cin, cout, groups, facts[j][3]))
        biases = cout if getattr(layer, "bias", None) is not None else 0
        # Output positions per sample (H_out * W_out; rows for a Linear), over every call.
        positions = sum(
            math.prod(out) // max(1, out[0]) // max(1, facts[j][0])
            for _, out in calls.get(name, ())
        )
        weight_bits = getattr(layer, "weight_bits", cfg.layer(name).weight_bits)
        act_bits = getattr(layer, "act_bits", cfg.layer(name).act_bits)
        rows.append(
            {
                "layer": name,
                "type": type(layer).__name__,
                "weight_bits": weight_bits,
                "act_bits": act_bits,
                "width": cfg.layer(name).width,
                "in_channels": cin,
                "out_channels": cout,
                "params": weights + biases,
                "macs": weights * positions,
                "bops": geometry.bops_float32(weights * positions, weight_bits, act_bits),
                "size_bits": geometry.deployed_size_bits(weights, biases, cout, weight_bits),
            }
        )
    return rows
