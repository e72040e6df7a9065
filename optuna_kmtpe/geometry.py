"""Channel geometry of quantizable layers: kept channels, pruned shapes, MACs, sizes and BOPs.

The one definition of what a config's widths do to a network's shapes
(:meth:`ChannelLayout.pruned`) and of what the size and bit-operation metrics count, read by
the quantization engine, both paths of the FPGA cost model (one config, arrays of configs) and
the search space's budgets. Torch-free (numpy and the config); which producer feeds which layer
comes from :func:`optuna_kmtpe.graph.channel_graph`.

**Sizes and BOPs**, one name per meaning: :func:`weight_size_bits` and :func:`bops` (float
operands at their own width) are the ``size_bits`` and ``bops`` metrics recorded in studies (the
FPGA model's report); :func:`budget_size_bits` (float counted as 32 bits) is what the search
space's ``size_budget_bits`` limits; :func:`deployed_size_bits` and :func:`bops_float32` are
:mod:`optuna_kmtpe.quant`'s accounting of a deployed model (biases and scales included).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import functools
import math
from typing import Any
from typing import NamedTuple

import numpy as np

from optuna_kmtpe.config import FLOAT_BITS
from optuna_kmtpe.config import check_width
from optuna_kmtpe.config import is_float_bits


LAYER_KINDS: tuple[str, ...] = ("conv1d", "conv2d", "grouped", "depthwise", "linear")
"""Kinds of quantizable layers.

``grouped`` is a convolution with ``1 < groups`` that is not depthwise; ``depthwise`` has
``groups == in_channels`` (each output channel reads one input channel).
"""


# Kept channels ---------------------------------------------------------------------------------
def kept_channels_array(out_channels: Any, widths: Any) -> np.ndarray:
    """Output channels kept at the given widths, elementwise (the vectorized rule).

    ``round(width * out_channels)`` with halves rounded up, clipped to ``[1, out_channels]``.
    Widths are not validated here (see :func:`kept_channels`).

    Example:
        >>> kept_channels_array([16, 10, 7], [0.5, 0.25, 0.01]).tolist()
        [8, 3, 1]
    """
    out = np.asarray(out_channels, dtype=np.int64)
    kept = np.floor(np.asarray(widths, dtype=np.float64) * out + 0.5)
    return np.clip(kept, 1, out).astype(np.int64)


def kept_channels(out_channels: int, width: float) -> int:
    """Output channels (or features) a layer keeps at ``width`` in ``(0, 1]``: the rule of
    :func:`kept_channels_array` for one layer, with validated arguments.

    Example:
        >>> kept_channels(16, 0.5)
        8
        >>> kept_channels(10, 0.01)
        1
    """
    if out_channels < 1:
        raise ValueError(f"out_channels must be >= 1, got {out_channels}.")
    check_width(width, where="kept_channels")
    return int(kept_channels_array(out_channels, width))


# Propagation -----------------------------------------------------------------------------------
class PrunedChannels(NamedTuple):
    """Channel counts after widths, arrays of shape ``(n_configs, n_layers)`` (module order)."""

    in_channels: np.ndarray
    out_channels: np.ndarray
    groups: np.ndarray


class ChannelLayout:
    """What channel propagation needs to know of each layer (module order, full width).

    Args:
        out_channels, in_channels: Channels (features) of each layer.
        producers: Index of the layer whose output channels are each layer's input channels
            (``None``: they never change).
        groups: Convolution groups (default 1); ``1 < groups == in_channels`` is depthwise.
        input_multiplier: ``in_channels == input_multiplier * producer's out_channels``.

    Example:
        >>> layout = ChannelLayout(out_channels=[8, 4], in_channels=[3, 8], producers=[None, 0])
        >>> layout.pruned([0.5, 1.0]).in_channels.tolist()
        [[3, 4]]
    """

    def __init__(
        self,
        *,
        out_channels: Sequence[int],
        in_channels: Sequence[int],
        producers: Sequence[int | None],
        groups: Sequence[int] | None = None,
        input_multiplier: Sequence[int] | None = None,
    ) -> None:
        ones = [1] * len(out_channels)
        self.out_channels = np.asarray(out_channels, dtype=np.int64)
        self.in_channels = np.asarray(in_channels, dtype=np.int64)
        self.groups = np.asarray(ones if groups is None else groups, dtype=np.int64)
        self.input_multiplier = np.asarray(
            ones if input_multiplier is None else input_multiplier, dtype=np.int64
        )
        self.producer = [-1 if p is None else int(p) for p in producers]
        self.order = _evaluation_order(self.producer)

    def pruned(self, widths: Any) -> PrunedChannels:
        """Channels of every layer under each row of ``widths`` (``(n, L)`` or ``(L,)``).

        Output channels are :func:`kept_channels_array`; input channels follow the producer's
        kept output channels times ``input_multiplier``; a depthwise layer keeps one group per
        input channel and ``out_channels / groups`` outputs per group (its width is ignored).
        """
        widths = np.asarray(widths, dtype=np.float64)
        kept = kept_channels_array(self.out_channels, widths.reshape(-1, len(self.producer)))
        cin, cout, groups = np.empty_like(kept), np.empty_like(kept), np.empty_like(kept)
        depthwise = (self.groups > 1) & (self.groups == self.in_channels)
        for j in self.order:
            producer = self.producer[j]
            if producer < 0:
                cin[:, j] = self.in_channels[j]
            else:
                cin[:, j] = cout[:, producer] * self.input_multiplier[j]
            if depthwise[j]:
                groups[:, j] = cin[:, j]
                cout[:, j] = cin[:, j] * (self.out_channels[j] // self.groups[j])
            else:
                groups[:, j] = self.groups[j]
                cout[:, j] = kept[:, j]
        return PrunedChannels(cin, cout, groups)


def _evaluation_order(producer: Sequence[int]) -> tuple[int, ...]:
    # Each layer has at most one producer, so the relation is a forest: order by the length of
    # the producer chain, then by module order.
    depth: list[int] = []
    for index in range(len(producer)):
        steps, current = 0, producer[index]
        while current >= 0:
            steps += 1
            if steps > len(producer):
                raise ValueError(f"The producer chain of layer {index} loops.")
            current = producer[current]
        depth.append(steps)
    return tuple(sorted(range(len(producer)), key=lambda i: (depth[i], i)))


# Layer and network shapes ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerShape:
    """Shape facts of one quantizable layer at full width, as seen in one forward pass.

    Args:
        name: Module path of the layer (the key used in a
            :class:`~optuna_kmtpe.config.QuantConfig`).
        kind: One of :data:`LAYER_KINDS`.
        in_channels: Input channels (``in_features`` for a linear layer).
        out_channels: Output channels (``out_features`` for a linear layer).
        input_shape: Shape of the layer's input without the batch axis, e.g. ``(16, 32, 32)``.
        output_shape: Shape of the layer's output without the batch axis.
        kernel: Kernel size per spatial axis (``()`` for a linear layer).
        stride: Stride per spatial axis (``()`` for a linear layer).
        groups: Convolution groups (1 for a linear layer).
        producer: The quantizable layer whose output channels are this layer's input channels,
            or ``None`` when the input channels never change with widths (the model input, a
            residual sum, anything the channel graph could not follow).
        input_multiplier: ``in_channels == input_multiplier * producer.out_channels`` (a linear
            layer after flattening C x H x W has ``H*W``); 1 otherwise.

    Example:
        >>> conv = LayerShape(name="conv", kind="conv2d", in_channels=3, out_channels=8,
        ...                   input_shape=(3, 8, 8), output_shape=(8, 8, 8), kernel=(3, 3))
        >>> conv.macs, conv.weight_count
        (13824, 216)
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    groups: int = 1
    producer: str | None = None
    input_multiplier: int = 1

    def __post_init__(self) -> None:
        where = f"LayerShape {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"LayerShape needs a non-empty module path as name, got {self.name!r}."
            )
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"{where}: kind={self.kind!r} is unknown; use one of {LAYER_KINDS}.")
        for field in ("in_channels", "out_channels", "groups", "input_multiplier"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: {field} must be a positive int, got {value!r}.")
        for field in ("input_shape", "output_shape", "kernel", "stride"):
            value = tuple(getattr(self, field))
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
                raise ValueError(f"{where}: {field} must hold positive ints, got {value!r}.")
            object.__setattr__(self, field, value)
        if not self.input_shape or not self.output_shape:
            raise ValueError(f"{where}: input_shape and output_shape must not be empty.")
        for shape, channels in (("output_shape", "out_channels"), ("input_shape", "in_channels")):
            if math.prod(getattr(self, shape)) % getattr(self, channels):
                raise ValueError(
                    f"{where}: {shape} {getattr(self, shape)} does not hold {channels}="
                    f"{getattr(self, channels)} channels; give the shape without the batch axis."
                )
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{where}: groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}."
            )
        if self.kind == "depthwise" and self.groups != self.in_channels:
            raise ValueError(f"{where}: a depthwise layer needs groups == in_channels.")
        if self.kind == "linear" and (self.kernel or self.groups != 1):
            raise ValueError(f"{where}: a linear layer has kernel=() and groups=1.")
        if self.kind in ("conv1d", "conv2d") and self.groups != 1:
            raise ValueError(f"{where}: use kind='grouped' or 'depthwise' when groups > 1.")

    @property
    def kernel_size(self) -> int:
        """Number of kernel taps (product of the kernel sizes; 1 for a linear layer)."""
        return math.prod(self.kernel)

    @property
    def out_positions(self) -> int:
        """Output positions per sample (H_out * W_out for conv2d, 1 for a plain linear layer)."""
        return math.prod(self.output_shape) // self.out_channels

    @property
    def in_positions(self) -> int:
        """Input positions per sample (H_in * W_in for conv2d, 1 for a plain linear layer)."""
        return math.prod(self.input_shape) // self.in_channels

    @property
    def depth_multiplier(self) -> int:
        """Output channels per group (a depthwise layer's channel multiplier)."""
        return self.out_channels // self.groups

    @property
    def weight_count(self) -> int:
        """Number of weights (biases excluded), :func:`weight_count` at full width."""
        return int(
            weight_count(self.in_channels, self.out_channels, self.groups, self.kernel_size)
        )

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample at full width: output positions x weights."""
        return self.out_positions * self.weight_count


@dataclasses.dataclass(frozen=True)
class PrunedLayer:
    """A layer's channel counts after a config's widths are applied.

    Attributes:
        name: Module path.
        in_channels: Input channels kept (follow the producer's kept output channels).
        out_channels: Output channels kept (``kept_channels(out, width)``; a depthwise layer
            follows its input instead).
        groups: Groups after pruning (a depthwise layer has one group per kept channel).
    """

    name: str
    in_channels: int
    out_channels: int
    groups: int


class NetworkShape:
    """The quantizable layers of a network in module order, with their channel relations.

    Args:
        layers: :class:`LayerShape` records in module order. Names must be unique, producers
            must name other layers of the network, and a layer's ``in_channels`` must equal
            ``input_multiplier`` times its producer's ``out_channels``.

    Example:
        >>> a = LayerShape(name="a", kind="linear", in_channels=4, out_channels=8,
        ...                input_shape=(4,), output_shape=(8,))
        >>> b = LayerShape(name="b", kind="linear", in_channels=8, out_channels=2,
        ...                input_shape=(8,), output_shape=(2,), producer="a")
        >>> net = NetworkShape([a, b])
        >>> net.names, net.consumers("a")
        (('a', 'b'), ('b',))
    """

    def __init__(self, layers: Iterable[LayerShape]) -> None:
        layers = tuple(layers)
        if not layers:
            raise ValueError("NetworkShape needs at least one LayerShape.")
        for layer in layers:
            if not isinstance(layer, LayerShape):
                raise ValueError(
                    f"NetworkShape takes LayerShape records, got {type(layer).__name__}."
                )
        names = [layer.name for layer in layers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"NetworkShape: layer names must be unique; repeated: {duplicates}.")
        by_name = dict(zip(names, layers))
        for layer in layers:
            if layer.producer is None:
                continue
            producer = by_name.get(layer.producer)
            if producer is None or layer.producer == layer.name:
                raise ValueError(
                    f"NetworkShape: layer {layer.name!r} names producer {layer.producer!r}, "
                    f"which is not another layer of the network; use None for the model input."
                )
            if producer.out_channels * layer.input_multiplier != layer.in_channels:
                raise ValueError(
                    f"NetworkShape: layer {layer.name!r} has in_channels={layer.in_channels}, "
                    f"but its producer {producer.name!r} gives {producer.out_channels} channels "
                    f"x input_multiplier {layer.input_multiplier}."
                )
        self._layers = layers
        self._by_name = by_name
        self.layout  # noqa: B018 (validates that no producer chain loops)

    @property
    def layers(self) -> tuple[LayerShape, ...]:
        return self._layers

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self._layers)

    def __iter__(self) -> Iterator[LayerShape]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, key: int | str) -> LayerShape:
        if isinstance(key, str):
            return self._by_name[key]
        return self._layers[key]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkShape):
            return NotImplemented
        return self._layers == other._layers

    def __hash__(self) -> int:
        return hash(self._layers)

    def __repr__(self) -> str:
        return f"NetworkShape({len(self)} layers: {list(self.names)})"

    @functools.cached_property
    def _consumers(self) -> dict[str, tuple[str, ...]]:
        result: dict[str, list[str]] = {name: [] for name in self.names}
        for layer in self._layers:
            if layer.producer is not None:
                result[layer.producer].append(layer.name)
        return {name: tuple(consumers) for name, consumers in result.items()}

    def consumers(self, name: str) -> tuple[str, ...]:
        """Layers whose input channels are ``name``'s output channels."""
        return self._consumers[name]

    def output_readers(self, name: str) -> tuple[str, ...]:
        """Layers assumed to read ``name``'s output activations (to size its output traffic).

        The channel consumers when there are any; otherwise the next layer in module order
        (a residual block's last conv feeds the next block through an addition); the last
        layer has none.
        """
        consumers = self.consumers(name)
        if consumers:
            return consumers
        index = self.names.index(name)
        return (self.names[index + 1],) if index + 1 < len(self) else ()

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample at full width."""
        return sum(layer.macs for layer in self._layers)

    @functools.cached_property
    def layout(self) -> ChannelLayout:
        """The network's :class:`ChannelLayout` (for :meth:`ChannelLayout.pruned`)."""
        index = {name: i for i, name in enumerate(self.names)}
        return ChannelLayout(
            out_channels=[layer.out_channels for layer in self._layers],
            in_channels=[layer.in_channels for layer in self._layers],
            producers=[None if s.producer is None else index[s.producer] for s in self._layers],
            groups=[layer.groups for layer in self._layers],
            input_multiplier=[layer.input_multiplier for layer in self._layers],
        )

    def pruned(self, widths: Mapping[str, float] | None = None) -> tuple[PrunedLayer, ...]:
        """Channel counts after applying per-layer widths (missing layers keep width 1.0).

        The rule of :meth:`ChannelLayout.pruned` for one config.

        Example:
            >>> a = LayerShape(name="a", kind="linear", in_channels=4, out_channels=8,
            ...                input_shape=(4,), output_shape=(8,))
            >>> b = LayerShape(name="b", kind="linear", in_channels=8, out_channels=2,
            ...                input_shape=(8,), output_shape=(2,), producer="a")
            >>> NetworkShape([a, b]).pruned({"a": 0.5})[1].in_channels
            4
        """
        widths = widths or {}
        pruned = self.layout.pruned([widths.get(name, 1.0) for name in self.names])
        return tuple(
            PrunedLayer(name, int(cin), int(cout), int(groups))
            for name, cin, cout, groups in zip(
                self.names, pruned.in_channels[0], pruned.out_channels[0], pruned.groups[0]
            )
        )


# Weights, MACs, sizes, BOPs --------------------------------------------------------------------
def reduction_length(in_channels: Any, groups: Any, kernel_size: Any) -> Any:
    """Inputs each output reads: ``ceil(in_channels / groups) * kernel taps``."""
    return -(-in_channels // groups) * kernel_size


def outputs_per_group(out_channels: Any, groups: Any) -> Any:
    """Output channels per group, ``ceil(out_channels / groups)``."""
    return -(-out_channels // groups)


def weight_count(in_channels: Any, out_channels: Any, groups: Any, kernel_size: Any) -> Any:
    """Weights of a (pruned) layer, biases excluded: ``groups * reduction * outputs per group``.

    Exact when ``groups`` divides both channel counts (every layer a config can build); a
    partial group is padded, as the accelerator computes it.

    Example:
        >>> weight_count(16, 32, 1, 9), weight_count(16, 16, 16, 9)
        (4608, 144)
    """
    return (
        groups
        * reduction_length(in_channels, groups, kernel_size)
        * outputs_per_group(out_channels, groups)
    )


def float32_bits(bits: int) -> int:
    """``bits`` with every float width (16 or 32) counted as 32."""
    return FLOAT_BITS if is_float_bits(bits) else bits


def weight_size_bits(weights: Any, weight_bits: Any) -> Any:
    """Weight storage as the accelerator holds it: ``weights * weight_bits``, a float layer at
    its own width (16 or 32). The ``size_bits`` metric recorded in studies."""
    return weights * weight_bits


def budget_size_bits(weights: Any, weight_bits: Any) -> Any:
    """Weight storage with any float width counted as 32 bits: ``weights * bits``. What the
    search space's ``size_budget_bits`` limits and what its HAWQ-V2 frontiers report."""
    return float32_bits(weight_bits) * weights


def deployed_size_bits(weights: Any, biases: Any, out_channels: Any, weight_bits: Any) -> Any:
    """Storage of a deployed layer: :func:`budget_size_bits` plus biases at 32 bits and, when
    its weights are quantized, one 32-bit scale per output channel (symmetric weights need no
    zero point; BatchNorm folds into scale and bias). :func:`optuna_kmtpe.quant.model_size_bits`.
    """
    scales = 0 if is_float_bits(weight_bits) else out_channels
    return budget_size_bits(weights, weight_bits) + (biases + scales) * FLOAT_BITS


def bops(macs: Any, weight_bits: Any, act_bits: Any) -> Any:
    """Bit operations ``MACs * weight_bits * act_bits``, float operands at their own width. The
    ``bops`` metric recorded in studies."""
    return macs * weight_bits * act_bits


def bops_float32(macs: Any, weight_bits: Any, act_bits: Any) -> Any:
    """Bit operations ``MACs * weight_bits * act_bits`` with float operands counted as 32 bits
    (HAWQ-V3's and HAQ's convention). :func:`optuna_kmtpe.quant.bops`."""
    return macs * float32_bits(weight_bits) * float32_bits(act_bits)
