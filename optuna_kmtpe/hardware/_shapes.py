"""Plain data types describing the quantizable layers of a network, independent of torch.

The cost model reads only these records, so it can be used (and tested) without a model: build
:class:`LayerShape` records by hand, or trace them from a PyTorch model with
:func:`~optuna_kmtpe.hardware.trace_layer_shapes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
import dataclasses
import functools
import math


LAYER_KINDS: tuple[str, ...] = ("conv1d", "conv2d", "grouped", "depthwise", "linear")
"""Kinds of quantizable layers the cost model knows.

``grouped`` is a convolution with ``1 < groups`` that is not depthwise; ``depthwise`` has
``groups == in_channels`` (each output channel reads one input channel).
"""


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
        if math.prod(self.output_shape) % self.out_channels:
            raise ValueError(
                f"{where}: output_shape {self.output_shape} does not hold out_channels="
                f"{self.out_channels} channels; give the shape without the batch axis."
            )
        if math.prod(self.input_shape) % self.in_channels:
            raise ValueError(
                f"{where}: input_shape {self.input_shape} does not hold in_channels="
                f"{self.in_channels} channels; give the shape without the batch axis."
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
        """Number of weights (biases excluded)."""
        return self.out_channels * (self.in_channels // self.groups) * self.kernel_size

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample at full width."""
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
        self._order = _topological_order(layers)

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

    def evaluation_order(self) -> tuple[int, ...]:
        """Layer indices ordered so that every producer comes before its consumers."""
        return self._order

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample at full width."""
        return sum(layer.macs for layer in self._layers)

    def pruned(self, widths: dict[str, float] | None = None) -> tuple[PrunedLayer, ...]:
        """Channel counts after applying per-layer widths (missing layers keep width 1.0).

        Output channels follow :func:`optuna_kmtpe.config.kept_channels`; input channels follow
        the producer's kept output channels times ``input_multiplier``; a depthwise layer keeps
        as many groups as it has input channels and ``depth_multiplier`` outputs per group.

        Example:
            >>> a = LayerShape(name="a", kind="linear", in_channels=4, out_channels=8,
            ...                input_shape=(4,), output_shape=(8,))
            >>> b = LayerShape(name="b", kind="linear", in_channels=8, out_channels=2,
            ...                input_shape=(8,), output_shape=(2,), producer="a")
            >>> NetworkShape([a, b]).pruned({"a": 0.5})[1].in_channels
            4
        """
        from optuna_kmtpe.config import kept_channels

        widths = widths or {}
        kept_out: dict[str, int] = {}
        result: dict[str, PrunedLayer] = {}
        for index in self._order:
            layer = self._layers[index]
            if layer.producer is None:
                cin = layer.in_channels
            else:
                cin = kept_out[layer.producer] * layer.input_multiplier
            if layer.kind == "depthwise":
                groups = cin
                cout = cin * layer.depth_multiplier
            else:
                groups = layer.groups
                cout = kept_channels(layer.out_channels, widths.get(layer.name, 1.0))
            kept_out[layer.name] = cout
            result[layer.name] = PrunedLayer(layer.name, cin, cout, groups)
        return tuple(result[name] for name in self.names)


def _topological_order(layers: tuple[LayerShape, ...]) -> tuple[int, ...]:
    # Each layer has at most one producer, so the relation is a forest: order by the length of
    # the producer chain, then by module order.
    producer_of = {layer.name: layer.producer for layer in layers}
    depth: list[int] = []
    for layer in layers:
        steps, current = 0, layer.producer
        while current is not None:
            steps += 1
            if steps > len(layers):
                raise ValueError(f"NetworkShape: the producer chain of {layer.name!r} loops.")
            current = producer_of[current]
        depth.append(steps)
    return tuple(sorted(range(len(layers)), key=lambda i: (depth[i], i)))
