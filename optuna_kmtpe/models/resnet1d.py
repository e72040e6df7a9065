"""ResNet-20 over 1-D signals (MNIST-1D): the CIFAR ResNet-20 layout with Conv1d/BatchNorm1d.

19 conv layers (kernel 3) in three stages of 3 basic blocks (16, 32, 64 channels) plus a linear
classifier: 20 quantizable layers and about 91k parameters. On a length-40 signal the stages
run at lengths 40, 20 and 10. Option-A shortcuts carry no parameters, so, as in the 2-D model,
the stem and the second conv of every block are tied to their stage's residual stream and keep
their width; the first conv of every block is width-searchable.
"""

from __future__ import annotations

from optuna_kmtpe.models.resnet import _CifarResNet


class ResNet20_1D(_CifarResNet):  # noqa: N801 (the 1-D sibling of ResNet20)
    """ResNet-20 for 1-D signals of shape (channels, length).

    Args:
        num_classes: Number of output classes.
        in_channels: Input signal channels (1 for MNIST-1D).
        depth_per_stage: Basic blocks per stage (3 gives ResNet-20).

    Example:
        >>> import torch
        >>> model = ResNet20_1D()
        >>> model(torch.zeros(2, 1, 40)).shape, sum(p.numel() for p in model.parameters())
        (torch.Size([2, 10]), 91162)
    """

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 1, depth_per_stage: int = 3
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            depth_per_stage=depth_per_stage,
            spatial_dims=1,
        )
