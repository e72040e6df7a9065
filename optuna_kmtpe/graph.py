"""Which layers are quantizable, and how their channels connect (for width search).

Width search removes output channels of a layer; that is only sound when every consumer of those
channels can follow (the next conv's or linear's inputs, BatchNorm, pooling, flatten) and when no
residual addition or concatenation ties the channels to another layer. This module finds that
out from the model itself with ``torch.fx``, without hard-coding model classes, so the
quantization engine (which physically prunes) and the hardware model (which computes pruned
shapes) share one answer.
"""

from __future__ import annotations

import collections
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
# The functions, and tensor methods by name, that keep the channel dimension as it is.
_PASS_THROUGH_OPS: frozenset[Any] = frozenset(
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
        *("relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "detach"),
    }
)
# Shape queries read metadata only: channels do not flow through them.
_METADATA_OPS: frozenset[Any] = frozenset({getattr, "size", "dim", "numel", "ndimension"})
_RESHAPE_OPS: frozenset[Any] = frozenset(
    {torch.flatten, torch.reshape, "flatten", "view", "reshape"}
)
# Reductions over axes other than the channel axis keep each channel apart (global pooling).
_REDUCTION_OPS: frozenset[Any] = frozenset(
    {torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin"}
)
_TRANSPOSE_OPS: frozenset[Any] = frozenset(
    {torch.transpose, torch.permute, "transpose", "permute"}
)
# Element-wise binary ops: two tensors with channels meeting here are tied (residuals).
_ELEMENTWISE_OPS: frozenset[Any] = frozenset(
    {
        operator.add,
        operator.iadd,
        operator.mul,
        operator.imul,
        operator.sub,
        operator.truediv,
        torch.add,
        torch.mul,
        torch.sub,
        torch.div,
        *("add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"),
    }
)
# Modules with one parameter (or statistic) per channel: they follow a pruned layer.
_PER_CHANNEL_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.PReLU,
)


class UnsupportedModelError(ValueError):
    """A construct in the model that optuna-kmtpe cannot quantize or prune correctly.

    Raised by :func:`channel_graph` before any search starts, so that no trial runs on a model
    whose quantized or narrowed copy would be wrong.

    Attributes:
        layer: Module path of the layer concerned.
        construct: What in the model is not supported.
    """

    def __init__(self, layer: str, construct: str, hint: str) -> None:
        super().__init__(f"Layer {layer!r}: {construct}. {hint}")
        self.layer = layer
        self.construct = construct


# Containers only route calls; any other torch.nn module is one fused op to torch.fx, and its
# forward may read a child layer's weight directly (nn.MultiheadAttention.out_proj, the fast path
# of nn.TransformerEncoderLayer), so a quantized twin swapped in there would never be called.
_CONTAINER_TYPES: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's quantizable layers (Conv1d, Conv2d incl. grouped/depthwise, Linear).

    A layer inside one of torch's own composite modules (``nn.MultiheadAttention``,
    ``nn.TransformerEncoderLayer``, ...) is left out: those modules run fused functions on their
    children's weights instead of calling them, so the layer stays float. A module reachable
    under several attribute paths (an alias) is listed once, under its first path.

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
    modules = dict(model.named_modules())
    layers = {
        name: module
        for name, module in modules.items()
        if isinstance(module, QUANTIZABLE_TYPES)
        and name
        and not _inside_torch_composite(name, modules)
    }
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no quantizable layer: optuna-kmtpe quantizes "
            "nn.Conv1d, nn.Conv2d and nn.Linear layers; build the model from those."
        )
    return layers


# Layers with parameters that run in float by design and cost little: normalization folds into
# the neighbouring layer on the FPGA, or is a per-channel scale and shift.
_FLOAT_BY_DESIGN = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.PReLU,
)


def unquantized_parameters(model: nn.Module) -> list[tuple[str, str, int]]:
    """Modules holding parameters that the search neither quantizes nor costs.

    They run in float in every trial, and the FPGA model leaves them out of latency and energy
    (an ``nn.LSTM``, an ``nn.Bilinear``, a bare ``nn.Parameter`` multiplied in ``forward``).
    Normalization layers and PReLU are not listed (see ``_FLOAT_BY_DESIGN``).

    Returns:
        ``(module path, type name, parameter count)``, largest first (``""`` is the model
        itself, for parameters it holds directly).

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.GRU(8, 8), nn.BatchNorm1d(8))
        >>> unquantized_parameters(model)
        [('1', 'GRU', 432)]
    """
    layers = quantizable_layers(model)
    inside = tuple(f"{name}." for name in layers)
    found = []
    for name, module in model.named_modules():
        if name in layers or name.startswith(inside) or isinstance(module, _FLOAT_BY_DESIGN):
            continue
        count = sum(p.numel() for p in module.parameters(recurse=False))
        if count:
            found.append((name, type(module).__name__, count))
    return sorted(found, key=lambda row: -row[2])


def layer_channels(layer: nn.Module) -> tuple[int, int, int, int]:
    """``(out_channels, in_channels, groups, kernel taps)`` of a quantizable layer (a Linear's
    features are its channels): the one reading of a layer's channels for every package.

    Example:
        >>> layer_channels(nn.Conv2d(4, 8, 3, groups=2)), layer_channels(nn.Linear(3, 5))
        ((8, 4, 2, 9), (5, 3, 1, 1))
    """
    if isinstance(layer, nn.Linear):
        return int(layer.out_features), int(layer.in_features), 1, 1
    groups = int(layer.groups)
    return int(layer.out_channels), int(layer.in_channels), groups, math.prod(layer.kernel_size)


def _refuse_layer_subclasses(layers: dict[str, nn.Module]) -> None:
    """Refuse a user subclass of a quantizable torch layer before any trial runs.

    Its forward may differ from the torch class's, and the quantized twin that replaces it runs
    the torch forward: every trial would either fail or silently train another model.
    The package's own quantized twins (``optuna_kmtpe.quant``) are the torch forward plus
    fake quantization, and pass.
    """
    for name, layer in layers.items():
        kind = type(layer)
        if kind in QUANTIZABLE_TYPES or kind.__module__.startswith("optuna_kmtpe."):
            continue
        base = next(t for t in QUANTIZABLE_TYPES if isinstance(layer, t))
        raise UnsupportedModelError(
            name,
            f"it is a {kind.__name__}, a subclass of nn.{base.__name__} whose forward may differ",
            f"Only exact nn.Conv1d/nn.Conv2d/nn.Linear layers can be quantized: build {name!r} "
            f"as nn.{base.__name__} (move extra computation into a separate module).",
        )


def _inside_torch_composite(name: str, modules: dict[str, nn.Module]) -> bool:
    parts = name.split(".")
    for depth in range(len(parts)):
        parent = modules.get(".".join(parts[:depth]))
        if (
            parent is not None
            and type(parent).__module__.startswith("torch.")
            and not isinstance(parent, _CONTAINER_TYPES)
        ):
            return True
    return False


def module_paths(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Every attribute path of each module, keyed by its first path (aliases included).

    Example:
        >>> shared = nn.Linear(2, 2)
        >>> module_paths(nn.Sequential(shared, nn.ReLU(), shared))["0"]
        ('0', '2')
    """
    first: dict[int, str] = {}
    paths: dict[str, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        key = first.setdefault(id(module), name)
        paths.setdefault(key, []).append(name)
    return {name: tuple(names) for name, names in paths.items()}


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
            produce the model output, tied layers, layers called more than once and the layers
            feeding them, layers feeding grouped convolutions (a depthwise convolution is
            followed through instead: its producer stays prunable and it shrinks along), and
            layers feeding any op the analysis cannot follow (normalizations over channels,
            attention, matmul, ...).
        reasons: For each non-prunable layer, why (for error messages).
        followers: For each prunable layer, the modules with one parameter or statistic per
            channel (BatchNorm, PReLU, a depthwise convolution) that read its output channels
            and shrink with it.
    """

    layers: tuple[str, ...]
    producers: dict[str, str | None]
    input_multiplier: dict[str, int]
    tied_groups: tuple[tuple[str, ...], ...]
    prunable: dict[str, bool]
    reasons: dict[str, str]
    followers: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

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

    Raises:
        UnsupportedModelError: A construct quantization would silently get wrong (a layer's
            weight read directly instead of calling the layer).

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import ResNet20
        >>> g = channel_graph(ResNet20(), torch.zeros(1, 3, 32, 32))
        >>> g.prunable["layer1.0.conv1"], g.prunable["layer1.0.conv2"]
        (True, False)
    """
    layers = quantizable_layers(model)
    _refuse_layer_subclasses(layers)
    was_training = model.training
    try:
        model.eval()
        try:
            traced = _trace(model, layers)
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


def _trace(model: nn.Module, layers: dict[str, nn.Module]) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` with every quantizable layer as one call: the package's own
    quantized twins hold activation quantizers whose range logic fx cannot trace."""
    leaves = {id(layer) for layer in layers.values()}

    class LayerTracer(torch.fx.Tracer):
        def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
            return id(module) in leaves or super().is_leaf_module(module, qualified_name)

    return torch.fx.GraphModule(model, LayerTracer().trace(model), type(model).__name__)


@dataclasses.dataclass(frozen=True)
class _Flow:
    """The channel sources of one fx node's output, and which axis holds those channels."""

    sources: frozenset[str]
    axis: int | None


def _analyse(traced: torch.fx.GraphModule, layers: dict[str, nn.Module]) -> ChannelGraph:
    modules = dict(traced.named_modules())
    calls = collections.Counter(str(n.target) for n in traced.graph.nodes if n.op == "call_module")
    flows: dict[torch.fx.Node, _Flow] = {}
    producers: dict[str, str | None] = {}
    multiplier: dict[str, int] = {}
    reasons: dict[str, str] = {}
    followers: dict[str, list[str]] = {}
    tie_sets: list[set[str]] = []

    def block(sources: Iterable[str], why: str) -> None:
        for source in sources:
            if source != _INPUT:
                reasons.setdefault(source, why)

    for node in traced.graph.nodes:
        inputs = [arg for arg in node.all_input_nodes if arg in flows]
        in_sources = frozenset().union(*(flows[arg].sources for arg in inputs))
        axis = flows[inputs[0]].axis if len(inputs) == 1 else None
        if node.op == "placeholder":
            flows[node] = _Flow(frozenset({_INPUT}), 1)
        elif node.op == "output":
            block(in_sources, "it produces the model output")
        elif node.op == "get_attr":
            _refuse_direct_weight_use(node, layers)
        elif node.op == "call_module" and node.target in layers:
            name = str(node.target)
            layer = layers[name]
            out_axis = 1 if not isinstance(layer, nn.Linear) else _last_axis(node)
            flows[node] = _Flow(frozenset({name}), out_axis)
            if calls[name] > 1:
                reasons.setdefault(name, "the module is called more than once (shared weights)")
                block(in_sources, f"it feeds {name!r}, a module called more than once")
                continue
            producer, mult = _producer_of(node, in_sources, axis, layer, layers)
            producers[name] = producer
            multiplier[name] = mult
            if producer is None:
                block(in_sources - {_INPUT}, f"its channels feed {name!r} in a way not followed")
            if getattr(layer, "groups", 1) != 1:
                if producer is not None and mult == 1 and _is_depthwise(layer):
                    # One filter per channel: narrowing the producer narrows it too, and its
                    # output channels are the producer's (what follows constrains the producer).
                    flows[node] = _Flow(in_sources, axis)
                    followers.setdefault(producer, []).append(name)
                    reasons.setdefault(name, f"depthwise: its channels are {producer!r}'s")
                else:
                    block(in_sources, f"it feeds the grouped convolution {name!r}")
                    reasons.setdefault(name, "grouped convolutions keep their width")
        elif not in_sources or _calls(node, _METADATA_OPS):
            continue
        elif _calls(node, _ELEMENTWISE_OPS):
            flows[node] = _Flow(in_sources, axis)
            if any(_is_constant_tensor(arg, flows) for arg in node.all_input_nodes):
                block(in_sources, f"its channels meet a fixed-size tensor in {node.name!r}")
            elif len(inputs) >= 2:
                tie_sets.append(set(in_sources))
                block(in_sources, "its output is tied to other layers by a residual connection")
        else:
            new_axis = _follow(node, axis, modules)
            flows[node] = _Flow(in_sources, new_axis)
            if new_axis is None:
                if node.target in (torch.cat, torch.concat, torch.stack):
                    tie_sets.append(set(in_sources))
                block(in_sources, f"its channels pass through {_describe(node, modules)}")
            elif node.op == "call_module" and isinstance(
                modules[str(node.target)], _PER_CHANNEL_TYPES
            ):
                if calls[str(node.target)] > 1:
                    block(in_sources, f"it feeds {node.target!r}, a module called more than once")
                else:
                    for source in in_sources - {_INPUT}:
                        followers.setdefault(source, []).append(str(node.target))

    names = tuple(layers)
    for name in names:
        producers.setdefault(name, None)
        multiplier.setdefault(name, 1)
        if not calls[name]:
            reasons.setdefault(name, "the forward pass never calls it")
    prunable = {name: name not in reasons for name in names}
    return ChannelGraph(
        layers=names,
        producers=producers,
        input_multiplier=multiplier,
        tied_groups=_merge_tie_sets(tie_sets, names),
        prunable=prunable,
        reasons=reasons,
        followers={name: tuple(followers.get(name, ())) for name in names if prunable[name]},
    )


def _is_depthwise(layer: nn.Module) -> bool:
    return layer.groups == layer.in_channels == layer.out_channels


def _describe(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"the {type(modules[str(node.target)]).__name__} module {node.target!r}"
    if node.op == "call_method":
        return f"the tensor method .{node.target}() ({node.name!r})"
    return f"the function {getattr(node.target, '__name__', node.target)}() ({node.name!r})"


def _refuse_direct_weight_use(node: torch.fx.Node, layers: dict[str, nn.Module]) -> None:
    owner, _, attr = str(node.target).rpartition(".")
    if owner in layers and attr in ("weight", "bias"):
        raise UnsupportedModelError(
            owner,
            f"its {attr} is read directly by the forward pass ({node.name!r}) instead of calling "
            "the module, so a quantized copy of the layer would not be used there",
            "Call the layer as a module, or compute with a parameter that is not a layer's.",
        )


def _producer_of(
    node: torch.fx.Node,
    sources: frozenset[str],
    axis: int | None,
    layer: nn.Module,
    layers: dict[str, nn.Module],
) -> tuple[str | None, int]:
    if len(sources) != 1 or axis is None or _INPUT in sources:
        return None, 1
    (source,) = sources
    in_shape = _shape(node.all_input_nodes[0])
    channel_axis = 1 if not isinstance(layer, nn.Linear) else _last_axis(node.all_input_nodes[0])
    if in_shape is None or axis != channel_axis:
        return None, 1  # e.g. a Linear applied along a conv's length axis
    out_channels = layer_channels(layers[source])[0]
    in_channels = layer_channels(layer)[1]
    mult, rest = divmod(in_channels, out_channels)
    if rest or (mult != 1 and not isinstance(layer, nn.Linear)):
        return None, 1
    return source, mult


def _follow(node: torch.fx.Node, axis: int | None, modules: dict[str, nn.Module]) -> int | None:
    """The channel axis of ``node``'s output if every channel passes through apart, else None.

    A flatten merging C x H x W channel-major keeps axis 1 (a following Linear then reads
    ``H * W`` features per channel); any op that mixes, cuts or re-sizes channels gives None.
    """
    in_shape = _shape(node.all_input_nodes[0]) if node.all_input_nodes else None
    out_shape = _shape(node)
    if axis is None or in_shape is None or out_shape is None or axis >= len(in_shape):
        return None
    channels = in_shape[axis]
    new_axis: int | None = None
    if _calls(node, _PASS_THROUGH_OPS, modules, _PASS_THROUGH_MODULES):
        new_axis = axis
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        if isinstance(module, _PER_CHANNEL_TYPES) and axis != 1:
            return None  # BatchNorm normalizes axis 1, not these channels
    elif _calls(node, _RESHAPE_OPS, modules, (nn.Flatten,)):
        if out_shape == in_shape:
            new_axis = axis
        elif axis == 1 and _is_flatten_like(in_shape, out_shape) and not _fixed_size(node):
            return 1
    elif node.op == "call_function" and node.target is operator.getitem:
        new_axis = _axis_after_index(node.args[1], axis)
    elif _calls(node, _REDUCTION_OPS):
        new_axis = _axis_after_reduction(node, axis, len(in_shape))
    elif _calls(node, _TRANSPOSE_OPS):
        new_axis = _axis_after_transpose(node, axis, len(in_shape))
    if new_axis is None or new_axis >= len(out_shape) or out_shape[new_axis] != channels:
        return None
    return new_axis


def _calls(
    node: torch.fx.Node,
    ops: frozenset[Any],
    modules: dict[str, nn.Module] | None = None,
    module_types: tuple[type[nn.Module], ...] = (),
) -> bool:
    """Whether ``node`` calls one of ``ops`` (functions, and tensor methods by name) or, given
    ``modules``, a module of one of ``module_types``."""
    if node.op == "call_module":
        return modules is not None and isinstance(modules.get(str(node.target)), module_types)
    return node.op in ("call_function", "call_method") and node.target in ops


def _is_constant_tensor(node: torch.fx.Node, flows: dict[torch.fx.Node, _Flow]) -> bool:
    """A tensor operand that does not carry the layers' channels (a parameter, a buffer, ...)."""
    shape = _shape(node)
    return node not in flows and shape is not None and math.prod(shape) > 1


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(shape) if shape is not None else None


def _last_axis(node: torch.fx.Node) -> int | None:
    shape = _shape(node)
    return len(shape) - 1 if shape else None


def _is_flatten_like(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """A reshape that only merges the axes from the channel axis (1) on, channel-major."""
    return (
        len(out_shape) == 2
        and len(in_shape) >= 2
        and out_shape[0] == in_shape[0]
        and out_shape[1] == math.prod(in_shape[1:])
    )


def _fixed_size(node: torch.fx.Node) -> bool:
    """``x.view(-1, 64)``: a hard-coded feature count breaks once channels are removed."""
    if node.op == "call_module" or node.target is torch.flatten or node.target == "flatten":
        return False
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    return len(sizes) >= 2 and isinstance(sizes[1], int) and sizes[1] != -1


def _axis_after_index(index: Any, axis: int) -> int | None:
    """Where the channel axis lands after ``x[index]``; None if the index cuts channels."""
    whole = slice(None, None, None)
    dim = out_dim = 0
    for item in index if isinstance(index, tuple) else (index,):
        if item is None:
            out_dim += 1
        elif isinstance(item, slice):
            if dim == axis:
                return out_dim if item == whole else None
            dim, out_dim = dim + 1, out_dim + 1
        elif isinstance(item, int) and not isinstance(item, bool) and dim != axis:
            dim += 1
        else:
            return None  # Ellipsis, tensors, or an integer on the channel axis
    return out_dim + axis - dim


def _axis_after_reduction(node: torch.fx.Node, axis: int, ndim: int) -> int | None:
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    if not all(isinstance(d, int) for d in dims):
        return None  # a full reduction (dim=None) or sizes computed at run time
    reduced = {d % ndim for d in dims}
    if axis in reduced:
        return None
    return axis if keepdim else axis - sum(d < axis for d in reduced)


def _axis_after_transpose(node: torch.fx.Node, axis: int, ndim: int) -> int | None:
    dims = list(node.args[1:])
    if node.target in ("transpose", torch.transpose):
        if len(dims) != 2 or not all(isinstance(d, int) for d in dims):
            return None
        first, second = (d % ndim for d in dims)
        return second if axis == first else first if axis == second else axis
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = list(dims[0])
    if len(dims) != ndim or not all(isinstance(d, int) for d in dims):
        return None
    return [d % ndim for d in dims].index(axis)


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
