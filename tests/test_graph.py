from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.graph import channel_graph
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.models import MLP
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.models import ResNet20
from optuna_kmtpe.quant import apply_config


def test_digits_cnn_chain() -> None:
    g = channel_graph(DigitsCNN(), torch.zeros(2, 1, 8, 8))
    assert g.producers == {
        "features.0": None,
        "features.3": "features.0",
        "features.7": "features.3",
        "classifier": "features.7",
    }
    assert g.prunable_layers == ("features.0", "features.3", "features.7")
    assert "model output" in g.reasons["classifier"]
    assert g.consumers("features.3") == ("features.7",)


def test_mlp_output_layer_not_prunable() -> None:
    g = channel_graph(MLP(), torch.zeros(2, 1, 8, 8))
    assert g.prunable == {"net.1": True, "net.3": True, "net.5": False}


def test_resnet20_residual_ties_detected() -> None:
    g = channel_graph(ResNet20(), torch.zeros(1, 3, 32, 32))
    assert len(g.layers) == 20
    (stream,) = g.tied_groups
    assert "conv1" in stream and all(
        f"layer{s}.{b}.conv2" in stream for s in (1, 2, 3) for b in range(3)
    )
    assert g.prunable_layers == tuple(f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3))
    assert g.producers["layer2.1.conv2"] == "layer2.1.conv1"
    assert "residual" in g.reasons["layer2.0.conv2"]


class _FlattenConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


def test_flatten_gives_input_multiplier() -> None:
    g = channel_graph(_FlattenConvNet(), torch.zeros(2, 1, 8, 8))
    assert g.producers["fc"] == "conv" and g.input_multiplier["fc"] == 64
    assert g.prunable["conv"]


class _ConcatNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 1)
        self.b = nn.Conv2d(1, 4, 1)
        self.depthwise = nn.Conv2d(8, 8, 3, groups=8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.depthwise(torch.cat([self.a(x), self.b(x)], dim=1)))


def test_concat_and_grouped_conv_block_width() -> None:
    g = channel_graph(_ConcatNet(), torch.zeros(1, 1, 6, 6))
    assert g.tied_groups == (("a", "b"),)
    assert g.prunable == {"a": False, "b": False, "depthwise": False, "head": False}
    assert g.producers["depthwise"] is None
    assert g.producers["head"] == "depthwise"


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if h.sum() > 0:  # fx cannot trace this
            h = h * 2
        return self.fc2(h)


def test_untraceable_model_falls_back_without_width_search() -> None:
    with pytest.warns(UserWarning, match="could not trace"):
        g = channel_graph(_DataDependent(), torch.zeros(2, 4))
    assert g.prunable_layers == ()
    assert set(g.producers.values()) == {None}


def test_model_not_mutated() -> None:
    model = DigitsCNN().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    channel_graph(model, torch.randn(4, 1, 8, 8))
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_no_quantizable_layer() -> None:
    with pytest.raises(ValueError, match="no quantizable layer"):
        quantizable_layers(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="torch.nn.Module"):
        quantizable_layers("not a model")  # type: ignore[arg-type]


class _InvertedResidualHead(nn.Module):
    """Expand 1x1 -> BN -> depthwise 3x3 -> BN -> project 1x1 (MobileNetV2's block, no skip)."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(2, 8, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.depthwise_bn = nn.BatchNorm2d(8)
        self.project = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.expand_bn(self.expand(x)))
        h = torch.relu(self.depthwise_bn(self.depthwise(h)))
        return self.project(h).mean((2, 3))


def test_a_depthwise_convolution_is_followed_through() -> None:
    model = _InvertedResidualHead().eval()
    x = torch.randn(2, 2, 5, 5)
    g = channel_graph(model, x)
    assert g.prunable == {"expand": True, "depthwise": False, "project": False}
    assert "its channels are 'expand''s" in g.reasons["depthwise"]
    assert g.followers["expand"] == ("expand_bn", "depthwise", "depthwise_bn")
    assert g.producers["depthwise"] == g.producers["project"] == "expand"
    # Narrowing the expansion narrows the depthwise filters and the projection's inputs: the
    # pruned model computes exactly the full model with those channels' filters removed.
    pruned = apply_config(model, {"expand": LayerConfig(32, 32, 0.5)}, example_input=x)
    assert (pruned.depthwise.groups, pruned.depthwise.out_channels) == (4, 4)
    assert pruned.project.in_channels == 4
    kept = [int(i) for i in torch.linalg.vector_norm(model.expand.weight, 1, (1, 2, 3)).argsort()]
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference.expand.weight[kept[:4]] = 0.0  # the 4 smallest filters (L1) are removed
        reference.expand_bn.bias[kept[:4]] = 0.0
        reference.depthwise.bias[kept[:4]] = -1e9  # relu of the depthwise output gives 0
    torch.testing.assert_close(pruned(x), reference(x), rtol=1e-5, atol=1e-5)


def test_a_depthwise_convolution_whose_channels_meet_the_output_blocks_its_producer() -> None:
    class DepthwiseOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.expand = nn.Conv2d(2, 4, 1)
            self.depthwise = nn.Conv2d(4, 4, 3, groups=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.depthwise(self.expand(x))

    g = channel_graph(DepthwiseOut(), torch.zeros(1, 2, 5, 5))
    assert g.prunable == {"expand": False, "depthwise": False}
