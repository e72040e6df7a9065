"""Apply a :class:`~optuna_kmtpe.config.QuantConfig` to any model: copy, prune widths, quantize.

Width first, on a float copy: for every layer whose width is below 1, keep the output channels
with the largest L1 norms (``kept_channels`` rounding), remove the others physically, and shrink
whatever reads those channels: per-channel modules on the way (BatchNorm, PReLU) and the input
channels of the consuming layers (a Linear after a flatten loses ``input_multiplier`` features
per channel). Which layers may lose channels, and who consumes them, comes from
:func:`optuna_kmtpe.graph.channel_graph`. Then every layer with quantized bits is swapped for its
quantized twin (``QuantConv2d`` etc.) at every module path that reaches it (aliases included).
"""

from __future__ import annotations

from collections.abc import Mapping
import copy
from typing import Any

import torch
from torch import nn

from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.config import is_float_bits
from optuna_kmtpe.geometry import kept_channels
from optuna_kmtpe.graph import ChannelGraph
from optuna_kmtpe.graph import channel_graph
from optuna_kmtpe.graph import layer_channels
from optuna_kmtpe.graph import module_paths
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.quant._modules import ActivationQuantizer
from optuna_kmtpe.quant._modules import to_quantized_layer
from optuna_kmtpe.quant._quantizers import quantizer_spec


APPLIED_CONFIG_ATTR = "kmtpe_quant_config"
"""Attribute holding the config on a model returned by :func:`apply_config`."""


def as_quant_config(config: QuantConfig | Mapping[str, Any]) -> QuantConfig:
    """Accept a :class:`QuantConfig` or a plain mapping (validated by ``QuantConfig``)."""
    return config if isinstance(config, QuantConfig) else QuantConfig(config)


def applied_config(model: nn.Module) -> QuantConfig | None:
    """The config :func:`apply_config` applied to ``model``, or ``None`` for a plain model."""
    config = getattr(model, APPLIED_CONFIG_ATTR, None)
    return config if isinstance(config, QuantConfig) else None


def apply_config(
    model: nn.Module,
    config: QuantConfig | Mapping[str, Any],
    *,
    example_input: torch.Tensor | None = None,
    per_channel: bool = True,
    symmetric_weights: bool = True,
    symmetric_acts: bool = False,
    rounding: str = "nearest",
    range_method: str = "mse",
    act_momentum: float = 0.1,
    range_update_interval: int | None = None,
    seed: int = 0,
    quantizer: str = "uniform",
    graph: ChannelGraph | None = None,
) -> nn.Module:
    """A quantized, width-pruned copy of ``model``; ``model`` itself is left untouched.

    Args:
        model: Any model built from Conv1d/Conv2d/Linear layers (plus BN, activations, pooling).
        config: Per-layer bits and widths, keyed by module path. Missing layers stay float at
            full width.
        example_input: One input batch; required when some width is below 1 (the channel graph
            is traced with it).
        per_channel: Per-output-channel weight scales (else one per tensor).
        symmetric_weights: Symmetric narrow-range weights (else asymmetric with a zero point).
        symmetric_acts: Symmetric activations (else unsigned with a zero point, the default).
        rounding: ``"nearest"`` or ``"stochastic"`` (weights, training mode only).
        range_method: Weight clipping: ``"mse"`` (default) or ``"max"``.
        act_momentum: EMA momentum of activation ranges during QAT.
        range_update_interval: Training steps between refreshes of the cached MSE weight
            clipping ratio; ``None``: every step for weights of 2 bits or fewer (a stale ratio
            destabilised 2-bit QAT), every 16 steps above.
        seed: Seed of stochastic rounding (each layer gets ``seed + its index``).
        quantizer: The registered quantizer (:func:`~optuna_kmtpe.quant.quantizer_names`) that
            every quantized layer holds, built with the options above. ``"power_of_two"``
            makes every weight and activation scale a power of two, so that the model maps
            exactly onto fixed-point hardware types (hls4ml, FINN), at some accuracy cost (see
            ``docs/export.md``).
        graph: ``channel_graph(model, example_input)`` traced once by the caller (a search
            applies thousands of configs to one model); None: traced here when a width is
            below 1.

    Returns:
        A new model, in the same train/eval mode as ``model``. Its quantized layers are
        ``QuantConv1d``/``QuantConv2d``/``QuantLinear`` (subclasses of the torch layers) at the
        same module paths; the config is kept in its ``kmtpe_quant_config`` attribute.

    Raises:
        ValueError: The model has no quantizable layer; the config names an unknown layer, or
            gives a width below 1 to a layer whose width cannot change (residual ties, the
            output layer, grouped convolutions), or no ``example_input`` was given for a width.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import DigitsCNN
        >>> model = DigitsCNN()
        >>> config = QuantConfig({"features.0": LayerConfig(4, 8, 0.5)})
        >>> qmodel = apply_config(model, config, example_input=torch.zeros(1, 1, 8, 8))
        >>> qmodel.features[0].out_channels, model.features[0].out_channels
        (8, 16)
        >>> qmodel(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    config = as_quant_config(config)
    if not isinstance(model, nn.Module):
        raise ValueError(f"Expected a torch.nn.Module, got {type(model).__name__}.")
    if applied_config(model) is not None:
        raise ValueError(
            "This model already has a quantization config applied; apply configs to the "
            "original float model instead."
        )
    layers = quantizable_layers(model)
    config.check_layers(layers)
    spec = quantizer_spec(  # validates the options
        quantizer,
        per_channel=per_channel,
        symmetric_weights=symmetric_weights,
        symmetric_acts=symmetric_acts,
        rounding=rounding,
        range_method=range_method,
    )
    for name, layer in layers.items():
        if type(layer) not in (nn.Conv1d, nn.Conv2d, nn.Linear) and _is_quantized(config, name):
            raise ValueError(
                f"Layer {name!r} is a {type(layer).__name__}, a subclass of a torch layer whose "
                f"forward may differ; only exact nn.Conv1d/nn.Conv2d/nn.Linear layers can be "
                f"quantized. Leave {name!r} out of the config (float) or use the torch class."
            )
    kept, graph = kept_output_channels(model, layers, config, example_input, graph=graph)

    qmodel = copy.deepcopy(model)
    if graph is not None and example_input is not None:
        _prune(qmodel, graph, kept)
        _check_forward(qmodel, example_input, kept)

    q_layers = quantizable_layers(qmodel)
    paths = module_paths(qmodel)
    for index, name in enumerate(layers):
        layer_config = config.layer(name)
        layer = q_layers[name]
        if _is_quantized(config, name):
            layer = to_quantized_layer(
                layer,
                weight_bits=layer_config.weight_bits,
                act_bits=layer_config.act_bits,
                spec=spec,
                act_momentum=act_momentum,
                range_update_interval=range_update_interval,
                seed=seed + index,
            )
            layer.kept_out_channels = kept[name].tolist() if name in kept else None
            for path in paths[name]:  # every alias, so that no call runs the float layer
                _set_submodule(qmodel, path, layer)
    setattr(qmodel, APPLIED_CONFIG_ATTR, config)
    return qmodel


def activation_quantizers(model: nn.Module) -> dict[str, ActivationQuantizer]:
    """The model's activation quantizers by module path."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, ActivationQuantizer)
    }


def _is_quantized(config: QuantConfig, name: str) -> bool:
    layer: LayerConfig = config.layer(name)
    return not (is_float_bits(layer.weight_bits) and is_float_bits(layer.act_bits))


def kept_output_channels(
    model: nn.Module,
    layers: dict[str, nn.Module],
    config: QuantConfig,
    example_input: torch.Tensor | None,
    *,
    graph: ChannelGraph | None = None,
) -> tuple[dict[str, torch.Tensor], ChannelGraph | None]:
    """The layers ``config`` narrows (name -> sorted indices of the output channels kept: the
    top-k L1 norms of :func:`channel_keep_order`) and the channel graph.

    The graph is ``graph`` when given (traced once by the caller), else traced here, and only
    when some layer is narrowed.

    Raises:
        ValueError: A width below 1 without ``example_input``, on a layer whose width cannot
            change (the graph says why), or a ``graph`` traced on other layers.
    """
    narrowed = {}
    for name, layer in layers.items():
        width = config.layer(name).width
        if width < 1.0:
            channels = layer_channels(layer)[0]
            kept = kept_channels(channels, width)
            if kept < channels:
                narrowed[name] = kept
    if not narrowed:
        return {}, None
    if example_input is None:
        raise ValueError(
            f"The config gives width < 1 to {sorted(narrowed)}: pass example_input=<one input "
            f"batch> so that the channel graph can be traced."
        )
    if graph is None:
        graph = channel_graph(model, example_input)
    elif graph.layers != tuple(layers):
        raise ValueError(
            f"The channel graph was traced on layers {list(graph.layers)}, not on this model's "
            f"{list(layers)}; pass graph=channel_graph(model, example_input) of this model."
        )
    for name in narrowed:
        if not graph.prunable[name]:
            why = graph.reasons.get(name, "its channels cannot be followed")
            raise ValueError(
                f"Layer {name!r} cannot be narrowed (width={config.layer(name).width}) because "
                f"{why}; keep its width at 1.0. Layers whose width can be searched: "
                f"{list(graph.prunable_layers)}."
            )
    kept = {}
    for name, k in narrowed.items():
        order = channel_keep_order(layers[name].weight.detach())
        kept[name] = torch.sort(order[:k]).values
    return kept, graph


def channel_keep_order(weight: torch.Tensor) -> torch.Tensor:
    """Output channels from the most to the least worth keeping: L1 norm, descending, stable.

    The first ``kept_channels(out, width)`` of them survive pruning; the sensitivity report's
    pruning terms use the same order.
    """
    norms = weight.abs().reshape(weight.shape[0], -1).sum(dim=1)
    return torch.argsort(norms, descending=True, stable=True)


def _prune(model: nn.Module, graph: ChannelGraph, kept: dict[str, torch.Tensor]) -> None:
    """Remove output channels in place (on the copy) and shrink followers and consumers."""
    modules = dict(model.named_modules())
    for name, index in kept.items():
        layer = modules[name]
        _select(layer, "weight", index, dim=0)
        if getattr(layer, "bias", None) is not None:
            _select(layer, "bias", index, dim=0)
        if isinstance(layer, nn.Linear):
            layer.out_features = len(index)
        else:
            layer.out_channels = len(index)
        followers = graph.followers.get(name, ())
        for follower_name in followers:
            _prune_per_channel_module(modules[follower_name], index)
        for consumer_name in (c for c in graph.consumers(name) if c not in followers):
            consumer = modules[consumer_name]
            multiplier = graph.input_multiplier[consumer_name]
            columns = (index[:, None] * multiplier + torch.arange(multiplier)[None]).reshape(-1)
            _select(consumer, "weight", columns, dim=1)
            if isinstance(consumer, nn.Linear):
                consumer.in_features = len(columns)
            else:
                consumer.in_channels = len(columns)


def _select(module: nn.Module, name: str, index: torch.Tensor, *, dim: int) -> None:
    tensor = getattr(module, name)
    selected = tensor.detach().index_select(dim, index.to(tensor.device)).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(selected, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, selected)


def _prune_per_channel_module(module: nn.Module, index: torch.Tensor) -> None:
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):  # depthwise: one filter per channel
        for attr in ("weight", "bias"):
            if getattr(module, attr, None) is not None:
                _select(module, attr, index, dim=0)
        module.in_channels = module.out_channels = module.groups = len(index)
        return
    if isinstance(module, nn.PReLU):
        if module.num_parameters > 1:
            _select(module, "weight", index, dim=0)
            module.num_parameters = len(index)
        return
    for attr in ("weight", "bias", "running_mean", "running_var"):
        if getattr(module, attr, None) is not None:
            _select(module, attr, index, dim=0)
    module.num_features = len(index)


def _check_forward(model: nn.Module, example_input: torch.Tensor, kept: dict[str, Any]) -> None:
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    except RuntimeError as exc:
        raise ValueError(
            f"Narrowing {sorted(kept)} broke the forward pass ({exc}). A module with per-channel "
            f"state is probably reached through a functional op; keep these widths at 1.0."
        ) from exc
    finally:
        model.train(was_training)


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)
