"""Which layers are quantizable, and how their channels connect (for width search).

Width search removes output channels of a layer; that is only sound when every consumer of those
channels can follow (the next conv's or linear's inputs, BatchNorm, pooling, flatten) and when no
residual addition or concatenation ties the channels to another layer. This module finds that
out from the model itself with ``torch.fx``, without hard-coding model classes, so the
quantization engine (which physically prunes) and the hardware model (which computes pruned
shapes) share one answer.
"""

from __future__ import annotations

from collections.abc import Iterable
import dataclasses
import math
import operator
from typing import Any
import warnings

import torch
from torch import nn
import torch.nn.functional as F


QUANTIZABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
"""Module types whose weights and input activations are quantized."""

_INPUT = "<input>"

# Ops that keep the channel dimension as it is (one tensor in, same channels out).
_PASS_THROUGH_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Mish,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
_PASS_THROUGH_FUNCTIONS: frozenset[Any] = frozenset(
    {
        F.relu,
        F.relu6,
        F.leaky_relu,
        F.elu,
        F.gelu,
        F.silu,
        F.hardswish,
        F.hardtanh,
        F.dropout,
        F.max_pool1d,
        F.max_pool2d,
        F.avg_pool1d,
        F.avg_pool2d,
        F.adaptive_avg_pool1d,
        F.adaptive_avg_pool2d,
        F.adaptive_max_pool1d,
        F.adaptive_max_pool2d,
        torch.relu,
        torch.sigmoid,
        torch.tanh,
        F.sigmoid,
        F.tanh,
    }
)
_PASS_THROUGH_METHODS: frozenset[str] = frozenset(
    {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "detach"}
)
# Shape queries read metadata only: channels do not flow through them.
_METADATA_METHODS: frozenset[str] = frozenset({"size", "dim", "numel", "ndimension"})
_RESHAPE_FUNCTIONS: frozenset[Any] = frozenset({torch.flatten, torch.reshape})
_RESHAPE_METHODS: frozenset[str] = frozenset({"flatten", "view", "reshape"})
# Element-wise binary ops: two tensors with channels meeting here are tied (residuals).
_ELEMENTWISE_FUNCTIONS: frozenset[Any] = frozenset(
    {operator.add, operator.iadd, operator.mul, operator.sub, torch.add, torch.mul, torch.sub}
)
_ELEMENTWISE_METHODS: frozenset[str] = frozenset({"add", "add_", "mul", "mul_", "sub", "sub_"})


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's quantizable layers (Conv1d, Conv2d incl. grouped/depthwise, Linear).

    Args:
        model: Any PyTorch model.

    Returns:
        Module path -> layer, in ``model.named_modules()`` order. Module paths are the keys of
        :class:`~optuna_kmtpe.config.QuantConfig`.

    Raises:
        ValueError: If the model has no quantizable layer.

    Example:
        >>> from optuna_kmtpe.models import DigitsCNN
        >>> list(quantizable_layers(DigitsCNN()))
        ['features.0', 'features.3', 'features.7', 'classifier']
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"Expected a torch.nn.Module, got {type(model).__name__}.")
    layers = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, QUANTIZABLE_TYPES) and name
    }
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no quantizable layer: optuna-kmtpe quantizes "
            "nn.Conv1d, nn.Conv2d and nn.Linear layers; build the model from those."
        )
    return layers


Shape = tuple[int, ...]


def record_layer_calls(
    model: nn.Module, example_input: torch.Tensor, layers: dict[str, nn.Module]
) -> dict[str, list[tuple[Shape, Shape]]]:
    """The input and output shapes of every call of each layer in one forward pass.

    The pass runs in eval mode without gradients; the hooks are removed and every module's
    train/eval mode is restored afterwards, so the model is left as it was. Calls whose first
    input was passed by keyword or whose output is not a tensor are not visible to a forward
    hook and are not recorded.

    Args:
        model: The model to run.
        example_input: One input batch.
        layers: Module path -> layer, e.g. from :func:`quantizable_layers`.

    Returns:
        Module path -> ``[(input_shape, output_shape), ...]`` in call order (empty for a layer
        the forward pass never calls). Shapes include the batch axis.

    Example:
        >>> from optuna_kmtpe.models import DigitsCNN
        >>> model = DigitsCNN()
        >>> calls = record_layer_calls(model, torch.zeros(2, 1, 8, 8), quantizable_layers(model))
        >>> calls["classifier"]
        [((2, 32), (2, 10))]
    """
    calls: dict[str, list[tuple[Shape, Shape]]] = {name: [] for name in layers}

    def make_hook(name: str) -> Any:
        def hook(_: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
                calls[name].append((tuple(inputs[0].shape), tuple(output.shape)))

        return hook

    modes = {module: module.training for module in model.modules()}
    handles = [layer.register_forward_hook(make_hook(name)) for name, layer in layers.items()]
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return calls


@dataclasses.dataclass(frozen=True)
class ChannelGraph:
    """How the channels of a model's quantizable layers connect.

    Attributes:
        layers: Quantizable layers in module order.
        producers: For each layer, the quantizable layer whose output channels are this layer's
            input channels. ``None`` means the input channels never change with widths (the
            model input, or a source the analysis could not follow).
        input_multiplier: ``in_features = multiplier * producer channels`` (a Linear after
            flattening C x H x W gives H*W); 1 otherwise.
        tied_groups: Groups of layers whose outputs meet in an addition, a multiplication or a
            concatenation (residual connections). Each group has two or more layers.
        prunable: Whether a layer's output width may be searched: False for the layers that
            produce the model output, tied layers, layers feeding grouped convolutions, and
            layers feeding any op the analysis cannot follow.
        reasons: For each non-prunable layer, why (for error messages).
    """

    layers: tuple[str, ...]
    producers: dict[str, str | None]
    input_multiplier: dict[str, int]
    tied_groups: tuple[tuple[str, ...], ...]
    prunable: dict[str, bool]
    reasons: dict[str, str]

    @property
    def prunable_layers(self) -> tuple[str, ...]:
        return tuple(name for name in self.layers if self.prunable[name])

    def consumers(self, layer: str) -> tuple[str, ...]:
        """The quantizable layers whose input channels are ``layer``'s output channels."""
        return tuple(name for name in self.layers if self.producers[name] == layer)


def channel_graph(model: nn.Module, example_input: torch.Tensor) -> ChannelGraph:
    """Trace ``model`` with ``torch.fx`` and find producers, residual ties and prunable layers.

    The model is never mutated: one forward pass runs in eval mode without gradients (so
    BatchNorm statistics do not move) and the original train/eval mode is restored. A model that
    ``torch.fx`` cannot trace (data-dependent control flow) falls back, with a warning, to no
    width search (every producer ``None``, nothing prunable).

    Args:
        model: The model.
        example_input: One input batch (any batch size), used to read tensor shapes.

    Returns:
        The :class:`ChannelGraph`.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import ResNet20
        >>> g = channel_graph(ResNet20(), torch.zeros(1, 3, 32, 32))
        >>> g.prunable["layer1.0.conv1"], g.prunable["layer1.0.conv2"]
        (True, False)
    """
    layers = quantizable_layers(model)
    was_training = model.training
    try:
        model.eval()
        try:
            traced = torch.fx.symbolic_trace(model)
        except Exception as exc:  # fx raises many types for untraceable Python code
            warnings.warn(
                f"torch.fx could not trace {type(model).__name__} ({exc}); width search is "
                "disabled for it (every layer keeps its full width).",
                stacklevel=2,
            )
            return _untraceable_graph(layers)
        from torch.fx.passes.shape_prop import ShapeProp

        with torch.no_grad():
            ShapeProp(traced).propagate(example_input)
        return _analyse(traced, layers)
    finally:
        model.train(was_training)


@dataclasses.dataclass
class _Flow:
    """The channel sources of one fx node's output."""

    sources: frozenset[str]


def _analyse(traced: torch.fx.GraphModule, layers: dict[str, nn.Module]) -> ChannelGraph:
    modules = dict(traced.named_modules())
    flows: dict[torch.fx.Node, _Flow] = {}
    producers: dict[str, str | None] = {}
    multiplier: dict[str, int] = {}
    reasons: dict[str, str] = {}
    tie_sets: list[set[str]] = []
    seen_calls: set[str] = set()

    def block(sources: Iterable[str], why: str) -> None:
        for source in sources:
            if source != _INPUT:
                reasons.setdefault(source, why)

    for node in traced.graph.nodes:
        inputs = [arg for arg in node.all_input_nodes if arg in flows]
        in_sources = frozenset().union(*(flows[arg].sources for arg in inputs))
        if node.op == "placeholder":
            flows[node] = _Flow(frozenset({_INPUT}))
        elif node.op == "output":
            block(in_sources, "it produces the model output")
        elif node.op == "call_module" and node.target in layers:
            name = str(node.target)
            layer = layers[name]
            if name in seen_calls:
                reasons.setdefault(name, "the module is called more than once")
                flows[node] = _Flow(frozenset({name}))
                continue
            seen_calls.add(name)
            producer, mult = _producer_of(node, in_sources, layer, layers)
            producers[name] = producer
            multiplier[name] = mult
            if producer is None:
                block(in_sources - {_INPUT}, f"its channels feed {name!r} in a way not followed")
            if getattr(layer, "groups", 1) != 1:
                block(in_sources, f"it feeds the grouped convolution {name!r}")
                reasons.setdefault(name, "grouped convolutions keep their width")
            flows[node] = _Flow(frozenset({name}))
        elif _is_pass_through(node, modules):
            flows[node] = _Flow(in_sources)
        elif _is_elementwise(node) and any(a.op == "get_attr" for a in node.all_input_nodes):
            block(in_sources, f"its channels are scaled by a parameter in {node.name!r}")
            flows[node] = _Flow(in_sources)
        elif _is_elementwise(node) and len(inputs) >= 2:
            tied = {s for s in in_sources}
            tie_sets.append(tied)
            block(tied, "its output is tied to other layers by a residual connection")
            flows[node] = _Flow(in_sources)
        elif _is_elementwise(node) or _is_flatten_like(node):
            flows[node] = _Flow(in_sources)
        elif node.op == "get_attr" or not in_sources or _is_metadata_query(node):
            continue
        else:
            if node.target in (torch.cat, torch.concat, torch.stack):
                tie_sets.append(set(in_sources))
            block(in_sources, f"its channels pass through {node.format_node()!s:.60}")
            flows[node] = _Flow(in_sources)

    names = tuple(layers)
    for name in names:
        producers.setdefault(name, None)
        multiplier.setdefault(name, 1)
    tied_groups = _merge_tie_sets(tie_sets, names)
    return ChannelGraph(
        layers=names,
        producers=producers,
        input_multiplier=multiplier,
        tied_groups=tied_groups,
        prunable={name: name not in reasons for name in names},
        reasons=reasons,
    )


def _producer_of(
    node: torch.fx.Node, sources: frozenset[str], layer: nn.Module, layers: dict[str, nn.Module]
) -> tuple[str | None, int]:
    if len(sources) != 1:
        return None, 1
    (source,) = sources
    if source == _INPUT:
        return None, 1
    out_channels = _out_channels(layers[source])
    in_channels = _in_channels(layer)
    if in_channels % out_channels != 0:
        return None, 1
    mult = in_channels // out_channels
    if mult != 1 and not isinstance(layer, nn.Linear):
        return None, 1
    return source, mult


def _out_channels(layer: nn.Module) -> int:
    return int(layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels)


def _in_channels(layer: nn.Module) -> int:
    return int(layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels)


def _is_pass_through(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), _PASS_THROUGH_MODULES) or (
            isinstance(modules.get(str(node.target)), nn.Flatten) and _is_flatten_like(node)
        )
    if node.op == "call_function":
        if node.target in _PASS_THROUGH_FUNCTIONS:
            return True
        if node.target is operator.getitem:
            return _keeps_channel_axis(node)
        return node.target in _RESHAPE_FUNCTIONS and _is_flatten_like(node)
    if node.op == "call_method":
        if node.target in _PASS_THROUGH_METHODS:
            return True
        return node.target in _RESHAPE_METHODS and _is_flatten_like(node)
    return False


def _is_metadata_query(node: torch.fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _METADATA_METHODS
    return node.op == "call_function" and node.target is getattr


def _is_elementwise(node: torch.fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS


def _keeps_channel_axis(node: torch.fx.Node) -> bool:
    """``x[:, :, ::2, ::2]``-style indexing that leaves the batch and channel axes whole."""
    index = node.args[1]
    if not isinstance(index, tuple) or len(index) < 2:
        return False
    whole = slice(None, None, None)
    return index[0] == whole and index[1] == whole


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _is_flatten_like(node: torch.fx.Node) -> bool:
    """A reshape that only merges the non-batch axes after the channel axis, or does nothing."""
    if node.op not in ("call_function", "call_method", "call_module"):
        return False
    if node.op != "call_module" and not (
        node.target in _RESHAPE_FUNCTIONS or node.target in _RESHAPE_METHODS
    ):
        return False
    out_shape = _shape(node)
    in_shape = _shape(node.all_input_nodes[0]) if node.all_input_nodes else None
    if out_shape is None or in_shape is None or len(in_shape) < 2:
        return False
    if out_shape == in_shape:
        return True
    return (
        len(out_shape) == 2
        and out_shape[0] == in_shape[0]
        and out_shape[1] == math.prod(in_shape[1:])
    )


def _merge_tie_sets(
    tie_sets: list[set[str]], names: tuple[str, ...]
) -> tuple[tuple[str, ...], ...]:
    groups: list[set[str]] = []
    for tied in tie_sets:
        tied = {s for s in tied if s != _INPUT}
        merged = [g for g in groups if g & tied]
        for g in merged:
            groups.remove(g)
            tied |= g
        groups.append(tied)
    order = {name: i for i, name in enumerate(names)}
    return tuple(
        tuple(sorted(g, key=order.__getitem__))
        for g in sorted(groups, key=lambda g: min(order[n] for n in g))
        if len(g) >= 2
    )


def _untraceable_graph(layers: dict[str, nn.Module]) -> ChannelGraph:
    names = tuple(layers)
    return ChannelGraph(
        layers=names,
        producers={name: None for name in names},
        input_multiplier={name: 1 for name in names},
        tied_groups=(),
        prunable={name: False for name in names},
        reasons={name: "the model could not be traced with torch.fx" for name in names},
    )
