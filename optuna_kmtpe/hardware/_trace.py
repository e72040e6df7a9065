"""Layer shapes of a real PyTorch model from one forward pass (torch imported lazily)."""

from __future__ import annotations

from typing import Any
import warnings

from optuna_kmtpe.hardware._shapes import LayerShape
from optuna_kmtpe.hardware._shapes import NetworkShape


def trace_layer_shapes(model: Any, example_input: Any) -> NetworkShape:
    """Record the shapes of every quantizable layer in one forward pass.

    Forward hooks read each Conv1d/Conv2d/Linear layer's input and output shapes; the channel
    relations (which layer produces a layer's input channels, and the multiplier of a Linear
    after a flatten) come from :func:`optuna_kmtpe.graph.channel_graph`, the same analysis the
    quantization engine prunes with. The model is not mutated: the pass runs in eval mode
    without gradients, hooks are removed and the train/eval mode is restored.

    Args:
        model: A ``torch.nn.Module``.
        example_input: One input batch (any batch size; shapes are recorded per sample).

    Returns:
        A :class:`NetworkShape` with one :class:`LayerShape` per quantizable layer, in module
        order. Layers the forward pass never calls are left out, with a warning.

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
    graph = channel_graph(model, example_input)
    batch = int(example_input.shape[0])
    # The first call counts: a module called twice is costed once, as the channel graph also
    # refuses to prune it.
    calls = record_layer_calls(model, example_input, layers)
    seen = {name: layer_calls[0] for name, layer_calls in calls.items() if layer_calls}

    missing = [name for name in layers if name not in seen]
    if missing:
        warnings.warn(
            f"Layers {missing} were not called in the forward pass; the hardware model leaves "
            "them out.",
            stacklevel=2,
        )
    records = []
    for name, layer in layers.items():
        if name not in seen:
            continue
        in_shape, out_shape = seen[name]
        if in_shape[0] != batch or out_shape[0] != batch:
            raise ValueError(
                f"Layer {name!r} saw a batch axis of {in_shape[0]} for an input batch of "
                f"{batch}; trace_layer_shapes needs models that keep the batch axis first."
            )
        producer = graph.producers.get(name)
        if producer is not None and producer not in seen:
            producer = None
        records.append(_layer_shape(name, layer, in_shape[1:], out_shape[1:], producer, graph))
    return NetworkShape(records)


def _layer_shape(
    name: str,
    layer: Any,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    producer: str | None,
    graph: Any,
) -> LayerShape:
    from torch import nn

    multiplier = graph.input_multiplier.get(name, 1) if producer is not None else 1
    if isinstance(layer, nn.Linear):
        # A Linear applies to the last axis; leading axes (sequence positions) are positions.
        return LayerShape(
            name=name,
            kind="linear",
            in_channels=layer.in_features,
            out_channels=layer.out_features,
            input_shape=_channels_first(in_shape),
            output_shape=_channels_first(out_shape),
            producer=producer,
            input_multiplier=multiplier,
        )
    groups = int(layer.groups)
    if groups == 1:
        kind = "conv1d" if isinstance(layer, nn.Conv1d) else "conv2d"
    elif groups == layer.in_channels:
        kind = "depthwise"
    else:
        kind = "grouped"
    return LayerShape(
        name=name,
        kind=kind,
        in_channels=layer.in_channels,
        out_channels=layer.out_channels,
        input_shape=tuple(int(v) for v in in_shape),
        output_shape=tuple(int(v) for v in out_shape),
        kernel=tuple(int(k) for k in layer.kernel_size),
        stride=tuple(int(s) for s in layer.stride),
        groups=groups,
        producer=producer,
        input_multiplier=multiplier,
    )


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    # (..., features) -> (features, ...): only the product of the other axes matters.
    shape = tuple(int(v) for v in shape)
    return (shape[-1], *shape[:-1])
