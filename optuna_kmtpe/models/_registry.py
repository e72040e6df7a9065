"""The MLP's builder and :func:`build_model`, on the registry (:mod:`optuna_kmtpe._registry`).

The other built-in models are registered as their classes, whose keywords (``num_classes``,
``in_channels``) are what the registry passes; the MLP needs its input size from the shape."""

from __future__ import annotations

import math

from torch import nn

from optuna_kmtpe._registry import call_with_accepted
from optuna_kmtpe._registry import model_entry
from optuna_kmtpe._registry import model_names
from optuna_kmtpe.models._small import MLP


def mlp(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """An MLP on flattened inputs of any shape (:class:`~optuna_kmtpe.models.MLP`)."""
    return MLP(in_features=math.prod(input_shape), num_classes=num_classes)


MODEL_NAMES: tuple[str, ...] = ("digits_cnn", "mlp", "resnet20", "resnet20_1d")
"""The built-in models (:func:`~optuna_kmtpe.models.model_names` lists registered ones too)."""


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    input_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """Build a registered model by name (built-ins: ``digits_cnn``, ``mlp``, ``resnet20``,
    ``resnet20_1d``; see :func:`~optuna_kmtpe.models.register_model` for your own).

    Args:
        name: The registered name.
        num_classes: Number of output classes.
        in_channels: Input channels, when ``input_shape`` is not given (then the shape is
            ``(in_channels, 8, 8)``, the digits images).
        input_shape: Shape of one input sample, without the batch axis.

    Example:
        >>> build_model("mlp").__class__.__name__
        'MLP'
        >>> import torch
        >>> build_model("mlp", input_shape=(3, 32, 32))(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    builder = model_entry(name).resolve()
    shape = tuple(input_shape) if input_shape is not None else (in_channels, 8, 8)
    return call_with_accepted(
        builder, input_shape=shape, num_classes=num_classes, in_channels=shape[0]
    )


__all__ = ["MODEL_NAMES", "build_model", "model_names"]
