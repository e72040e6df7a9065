from __future__ import annotations

from collections.abc import Callable

from torch import nn


def _digits_cnn(num_classes: int, in_channels: int) -> nn.Module:
    from optuna_kmtpe.models._small import DigitsCNN

    return DigitsCNN(num_classes=num_classes, in_channels=in_channels)


def _mlp(num_classes: int, in_channels: int) -> nn.Module:
    from optuna_kmtpe.models._small import MLP

    return MLP(in_features=64 * in_channels, num_classes=num_classes)


def _resnet20(num_classes: int, in_channels: int) -> nn.Module:
    from optuna_kmtpe.models.resnet import ResNet20

    return ResNet20(num_classes=num_classes, in_channels=in_channels)


def _resnet20_1d(num_classes: int, in_channels: int) -> nn.Module:
    from optuna_kmtpe.models.resnet1d import ResNet20_1D

    return ResNet20_1D(num_classes=num_classes, in_channels=in_channels)


_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "digits_cnn": _digits_cnn,
    "mlp": _mlp,
    "resnet20": _resnet20,
    "resnet20_1d": _resnet20_1d,
}
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, *, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """Build a built-in model by name ("digits_cnn", "mlp", "resnet20", "resnet20_1d").

    Example:
        >>> build_model("mlp").__class__.__name__
        'MLP'
    """
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"Unknown model {name!r}; choose one of {list(MODEL_NAMES)}, or pass your own "
            f"nn.Module through the Python API."
        ) from None
    return builder(num_classes, in_channels)
