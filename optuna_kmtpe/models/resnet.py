"""ResNet-20 for 32x32 inputs (He et al. 2016, CIFAR-10 variant, option-A shortcuts).

The standard model of mixed-precision papers on CIFAR-10 (HAWQ, HAQ): 19 conv layers in three
stages of 3 basic blocks (16, 32, 64 channels) plus a linear classifier, about 0.27M parameters.
Shortcuts that change shape subsample and zero-pad (option A), so they carry no parameters; the
second conv of every block is therefore tied to its stage's residual stream.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class _PadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero channels appended."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _PadShortcut(planes - in_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
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
        super().__init__()
        if depth_per_stage < 1:
            raise ValueError(f"depth_per_stage must be >= 1, got {depth_per_stage}.")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(depth_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
