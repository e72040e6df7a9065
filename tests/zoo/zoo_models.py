"""A zoo of tiny architectures of common kinds, each with one example input.

Each model is a few hundred weights, so that every check of ``test_zoo.py`` (every width applied,
every call quantized, MACs, Hessians, a QAT step and a short study) runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
import math

import torch
from torch import nn
import torch.nn.functional as F


class InvertedResidual(nn.Module):
    """MobileNetV2: expand 1x1, depthwise 3x3, project 1x1, residual add, mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(4)
        self.expand = nn.Conv2d(4, 8, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(8)
        self.project = nn.Conv2d(8, 4, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem_bn(self.stem(x)))
        h = F.relu6(self.expand_bn(self.expand(x)))
        h = F.relu6(self.depthwise_bn(self.depthwise(h)))
        x = x + self.project_bn(self.project(h))
        return self.head(x.mean((2, 3)))


class GroupedConv(nn.Module):
    """A grouped convolution between two plain ones, flattened into a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.conv2 = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.grouped(torch.relu(self.conv1(x))))
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class Branches(nn.Module):
    """Two branches concatenated, two added, then pooled into a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 3, 1)
        self.right = nn.Conv2d(4, 3, 3, padding=1)
        self.merge = nn.Conv2d(6, 4, 1)
        self.skip = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        cat = torch.cat([F.relu(self.left(x)), F.relu(self.right(x))], dim=1)
        x = F.relu(self.merge(cat)) + self.skip(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Conv1dNet(nn.Module):
    """Conv1d, BatchNorm1d, pooling, a flatten and a linear head (signals of length 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1),
            nn.BatchNorm1d(4),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(4, 6, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SharedLayer(nn.Module):
    """One Linear applied twice (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 5)
        self.shared = nn.Linear(5, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        h = torch.relu(self.shared(torch.tanh(self.shared(h))))
        return self.out(h)


class AliasedLayer(nn.Module):
    """One Conv2d reachable under two attribute names, called once under each."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.body = nn.Conv2d(4, 4, 3, padding=1)
        self.alias = self.body
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.alias(F.relu(self.body(x))))
        return self.head(x.amax((2, 3)))


class TokenMLP(nn.Module):
    """Tokens (batch, 5, 6): LayerNorm, a GELU MLP along the features, a token mean, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 12)
        self.fc2 = nn.Linear(12, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x))
        x = x + self.fc2(F.gelu(self.fc1(x)))
        return self.head(x.mean(1))


class HandAttention(nn.Module):
    """Single-head self-attention written out (matmul, softmax), then a GELU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(4, 6)
        self.k = nn.Linear(4, 6)
        self.v = nn.Linear(4, 6)
        self.proj = nn.Linear(6, 4)
        self.mlp_in = nn.Linear(4, 8)
        self.mlp_out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        scores = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(6), dim=-1)
        x = x + self.proj(scores @ v)
        return self.mlp_out(F.gelu(self.mlp_in(x))).mean(1)


class FusedAttention(nn.Module):
    """Two-head attention through ``F.scaled_dot_product_attention``, a conv1d over tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(4, 12)
        self.proj = nn.Linear(4, 4)
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, 2, 2).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, 4)
        x = x + self.proj(a)
        x = F.relu(self.conv(x.transpose(1, 2)))
        return self.head(x.mean(2))


class TorchMHA(nn.Module):
    """``nn.MultiheadAttention`` between two quantizable linears (its out_proj stays float)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head((h + a)[:, 0])


class Nested(nn.Module):
    """Layers in a ModuleDict of Sequentials and a ModuleList, a PReLU per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleDict(
            {
                "a": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.PReLU(4)),
                "b": nn.Sequential(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())),
            }
        )
        self.heads = nn.ModuleList([nn.Linear(6, 5), nn.Linear(5, 2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages["b"](self.stages["a"](x))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.heads[1](F.silu(self.heads[0](x)))


class BiasFree(nn.Module):
    """Bias-free layers, a conv flattened channel-major into a linear layer (view with -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False)
        self.fc = nn.Linear(4 * 3 * 3, 5, bias=False)
        self.out = nn.Linear(5, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.bn(self.conv1(x)))))
        return self.out(F.relu(self.fc(x.view(x.size(0), -1))))


class NormsAndSoftmax(nn.Module):
    """GroupNorm, a channel softmax and LayerNorm after convolutions: none may be narrowed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.conv3 = nn.Conv2d(4, 4, 1)
        self.ln = nn.LayerNorm([4, 5, 5])
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.conv1(x))
        x = torch.softmax(self.conv2(x), dim=1)
        x = self.ln(self.conv3(x))
        return self.head(x.mean((2, 3)))


ZOO: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "inverted_residual": (InvertedResidual, (3, 6, 6), 3),
    "grouped_conv": (GroupedConv, (2, 8, 8), 3),
    "branches_add_concat": (Branches, (1, 6, 6), 2),
    "conv1d": (Conv1dNet, (2, 16), 3),
    "shared_layer": (SharedLayer, (6,), 3),
    "aliased_layer": (AliasedLayer, (1, 5, 5), 2),
    "token_mlp_layernorm_gelu": (TokenMLP, (5, 6), 3),
    "hand_written_attention": (HandAttention, (5, 4), 3),
    "fused_attention_sdpa": (FusedAttention, (5, 4), 3),
    "multihead_attention": (TorchMHA, (4, 5), 3),
    "nested_containers": (Nested, (1, 5, 5), 2),
    "bias_free": (BiasFree, (1, 6, 6), 2),
    "norms_and_softmax": (NormsAndSoftmax, (1, 5, 5), 2),
}
"""Name -> (model factory, input shape without the batch axis, number of classes)."""


def zoo_model(name: str, *, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A zoo model with random weights (in eval mode), 16 random inputs and class targets."""
    factory, shape, classes = ZOO[name]
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = factory().eval()
    x = torch.randn(16, *shape, generator=generator)
    y = torch.randint(0, classes, (16,), generator=generator)
    return model, x, y
