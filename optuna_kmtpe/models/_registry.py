"""The built-in model builders and :func:`build_model`, on the public registry
(:mod:`optuna_kmtpe._registry`). Each builder receives what it needs from the data."""

from __future__ import annotations

import math

from torch import nn

from optuna_kmtpe._registry import call_with_accepted
from optuna_kmtpe._registry import model_entry
from optuna_kmtpe._registry import model_names
from optuna_kmtpe.models._small import MLP
from optuna_kmtpe.models._small import DigitsCNN
from optuna_kmtpe.models.resnet import ResNet20
from optuna_kmtpe.models.resnet1d import ResNet20_1D


def digits_cnn(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The small CNN for 8x8 digits (:class:`~optuna_kmtpe.models.DigitsCNN`)."""
    return DigitsCNN(num_classes=num_classes, in_channels=input_shape[0])


def mlp(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """An MLP on flattened inputs of any shape (:class:`~optuna_kmtpe.models.MLP`)."""
    return MLP(in_features=math.prod(input_shape), num_classes=num_classes)


def resnet20(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-20 for images (:class:`~optuna_kmtpe.models.ResNet20`)."""
    return ResNet20(num_classes=num_classes, in_channels=input_shape[0])


def resnet20_1d(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """ResNet-20 for 1-D signals (:class:`~optuna_kmtpe.models.ResNet20_1D`)."""
    return ResNet20_1D(num_classes=num_classes, in_channels=input_shape[0])


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
