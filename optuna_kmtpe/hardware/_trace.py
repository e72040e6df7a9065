"""Layer shapes of a real PyTorch model from one forward pass (torch imported lazily)."""

from __future__ import annotations

import math
from typing import Any
import warnings

from optuna_kmtpe.geometry import LayerShape
from optuna_kmtpe.geometry import NetworkShape


def trace_layer_shapes(model: Any, example_input: Any, *, graph: Any = None) -> NetworkShape:
    """Record the shapes of every quantizable layer in one forward pass.

    Forward hooks read each Conv1d/Conv2d/Linear layer's input and output shapes; the channel
    relations (which layer produces a layer's input channels, and the multiplier of a Linear
    after a flatten) come from :func:`optuna_kmtpe.graph.channel_graph`, the same analysis the
    quantization engine prunes with. The model is not mutated: the pass runs in eval mode
    without gradients, hooks are removed and the train/eval mode is restored.

    Args:
        model: A ``torch.nn.Module``.
        example_input: One input batch (any batch size; shapes are recorded per sample).
        graph: The model's :class:`~optuna_kmtpe.graph.ChannelGraph`, when the caller has
            traced it already (``prepare_job`` does); traced here otherwise.

    Returns:
        A :class:`NetworkShape` with one :class:`LayerShape` per quantizable layer, in module
        order. A layer called several times (shared weights) gets the positions of all its
        calls, so that its MACs are counted as often as it runs, as in
        :func:`optuna_kmtpe.quant.layer_macs`. Layers the forward pass never calls are left
        out, with a warning.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import DigitsCNN
        >>> shapes = trace_layer_shapes(DigitsCNN(), torch.zeros(1, 1, 8, 8))
        >>> [(s.name, s.kind, s.output_shape) for s in shapes][:2]
        [('features.0', 'conv2d', (16, 8, 8)), ('features.3', 'conv2d', (32, 8, 8))]
    """
    import torch
    from torch import nn

    from optuna_kmtpe.graph import channel_graph
    from optuna_kmtpe.graph import layer_channels
    from optuna_kmtpe.graph import quantizable_layers
    from optuna_kmtpe.graph import record_layer_calls

    if not isinstance(model, nn.Module):
        raise ValueError(
            f"trace_layer_shapes expects a torch.nn.Module, got {type(model).__name__}."
        )
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
        raise ValueError(
            "example_input must be a tensor with a batch axis first, e.g. "
            "torch.zeros(1, 3, 32, 32)."
        )
    layers = quantizable_layers(model)
    graph = channel_graph(model, example_input) if graph is None else graph
    batch = int(example_input.shape[0])
    calls = record_layer_calls(model, example_input, layers)

    missing = [name for name in layers if not calls[name]]
    if missing:
        warnings.warn(
            f"Layers {missing} were not called in the forward pass; the hardware model leaves "
            "them out.",
            stacklevel=2,
        )
    records = []
    for name, layer in layers.items():
        if not calls[name]:
            continue
        for in_shape, out_shape in calls[name]:
            if in_shape[0] != batch or out_shape[0] != batch:
                raise ValueError(
                    f"Layer {name!r} saw a batch axis of {in_shape[0]} for an input batch of "
                    f"{batch}; trace_layer_shapes needs models that keep the batch axis first."
                )
        producer = graph.producers.get(name)
        if producer is not None and not calls[producer]:
            producer = None
        channels = layer_channels(layer)
        records.append(_layer_shape(name, layer, channels, calls[name], producer, graph))
    return NetworkShape(records)


def _layer_shape(
    name: str,
    layer: Any,
    channels: tuple[int, int, int, int],
    calls: list[tuple[tuple[int, ...], tuple[int, ...]]],
    producer: str | None,
    graph: Any,
) -> LayerShape:
    from torch import nn

    multiplier = graph.input_multiplier.get(name, 1) if producer is not None else 1
    linear = isinstance(layer, nn.Linear)
    # Per sample, channels first (a Linear applies to the last axis; the leading axes, such as
    # sequence positions, are positions).
    in_shape, out_shape = (
        _per_sample(shapes, channels_last=linear) for shapes in zip(*calls, strict=True)
    )
    out_channels, in_channels, groups, _ = channels
    if linear or groups > 1:
        kind = "linear" if linear else "depthwise" if groups == in_channels else "grouped"
    else:
        kind = "conv1d" if isinstance(layer, nn.Conv1d) else "conv2d"
    return LayerShape(
        name=name,
        kind=kind,
        in_channels=in_channels,
        out_channels=out_channels,
        input_shape=in_shape,
        output_shape=out_shape,
        kernel=() if linear else tuple(int(k) for k in layer.kernel_size),
        stride=() if linear else tuple(int(s) for s in layer.stride),
        groups=groups,
        producer=producer,
        input_multiplier=multiplier,
    )


def _per_sample(shapes: tuple[tuple[int, ...], ...], *, channels_last: bool) -> tuple[int, ...]:
    """One call's shape without the batch axis, channels first; several calls of one layer
    (shared weights) as ``(channels, total positions)``, so that every call is costed."""
    per_call = []
    for shape in shapes:
        shape = tuple(int(v) for v in shape[1:])
        per_call.append((shape[-1], *shape[:-1]) if channels_last else shape)
    if len(per_call) == 1:
        return per_call[0]
    channels = per_call[0][0]
    return (channels, sum(math.prod(shape) // channels for shape in per_call))
