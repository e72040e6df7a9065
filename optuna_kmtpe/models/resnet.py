"""ResNet-20 for 32x32 inputs (He et al. 2016, CIFAR-10 variant, option-A shortcuts).

The standard model of mixed-precision papers on CIFAR-10 (HAWQ, HAQ): 19 conv layers in three
stages of 3 basic blocks (16, 32, 64 channels) plus a linear classifier, about 0.27M parameters.
Shortcuts that change shape subsample and zero-pad (option A), so they carry no parameters; the
second conv of every block is therefore tied to its stage's residual stream. The same layout
with 1-D convolutions is :class:`~optuna_kmtpe.models.resnet1d.ResNet20_1D`.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}
_NORM: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_GLOBAL_POOL: dict[int, type[nn.Module]] = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


class _PadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling of every spatial axis and zero channels appended."""

    def __init__(self, extra_channels: int, spatial_dims: int = 2) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        # Built once as plain Python values so that torch.fx sees constant indices and pads.
        self._subsample = (slice(None), slice(None)) + (slice(None, None, 2),) * spatial_dims
        self._padding = (0, 0) * spatial_dims + (0, extra_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[self._subsample], self._padding)


class BasicBlock(nn.Module):
    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, spatial_dims: int = 2
    ) -> None:
        super().__init__()
        conv, norm = _CONV[spatial_dims], _NORM[spatial_dims]
        self.conv1 = conv(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = conv(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _PadShortcut(planes - in_planes, spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _CifarResNet(nn.Module):
    """The CIFAR ResNet layout over 1 or 2 spatial axes: a 16-channel stem, three stages of
    basic blocks (16, 32, 64 channels; stages 2 and 3 halve every spatial axis), global average
    pooling and a linear classifier."""

    def __init__(
        self, *, num_classes: int, in_channels: int, depth_per_stage: int, spatial_dims: int
    ) -> None:
        super().__init__()
        if depth_per_stage < 1:
            raise ValueError(f"depth_per_stage must be >= 1, got {depth_per_stage}.")
        conv, norm = _CONV[spatial_dims], _NORM[spatial_dims]
        self.conv1 = conv(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = norm(16)
        stages = []
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(depth_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, spatial_dims))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = _GLOBAL_POOL[spatial_dims](1)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(self.pool(out).flatten(1))


class ResNet20(_CifarResNet):
    """ResNet-20 for 32x32 images.

    Args:
        num_classes: Number of output classes.
        in_channels: Input image channels (3 for CIFAR-10).
        depth_per_stage: Basic blocks per stage (3 gives ResNet-20).

    Example:
        >>> import torch
        >>> ResNet20()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 3, depth_per_stage: int = 3
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            depth_per_stage=depth_per_stage,
            spatial_dims=2,
        )
