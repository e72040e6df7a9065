from __future__ import annotations

from torch import nn

from optuna_kmtpe.graph import quantizable_layers


def find_quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Module path -> layer for every quantizable layer, in module order (the graph's rule)."""
    return quantizable_layers(model)


def channel_counts(layer: nn.Module) -> tuple[int, int]:
    """(out_channels, in_channels) of a Conv or Linear layer, from its weight's shape."""
    weight = layer.weight
    return int(weight.shape[0]), int(weight.shape[1] * getattr(layer, "groups", 1))
