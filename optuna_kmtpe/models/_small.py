from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """A multi-layer perceptron on flattened inputs.

    Args:
        in_features: Number of input features (64 for 8x8 digits).
        hidden: Sizes of the hidden layers.
        num_classes: Number of output classes.

    Example:
        >>> import torch
        >>> MLP()(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, *, in_features: int = 64, hidden: tuple[int, ...] = (64, 32), num_classes: int = 10
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 2 or any(h < 1 for h in hidden):
            raise ValueError(
                "MLP needs in_features >= 1, num_classes >= 2 and positive hidden sizes, got "
                f"in_features={in_features}, hidden={hidden}, num_classes={num_classes}."
            )
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DigitsCNN(nn.Module):
    """A small CNN for 1x8x8 images (scikit-learn's digits): three conv-BN-ReLU blocks and a
    linear classifier. About 15k parameters; trains to ~98% in a few seconds on a CPU.

    Args:
        channels: Output channels of the three conv layers.
        num_classes: Number of output classes.
        in_channels: Input image channels.

    Example:
        >>> import torch
        >>> DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        channels: tuple[int, int, int] = (16, 32, 32),
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if len(channels) != 3 or any(c < 1 for c in channels):
            raise ValueError(f"DigitsCNN needs three positive channel counts, got {channels}.")
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1, bias=False),
            nn.BatchNorm2d(c3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
