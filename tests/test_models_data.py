from __future__ import annotations

import pytest
import torch

from optuna_kmtpe.data import load_digits
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.models import MODEL_NAMES
from optuna_kmtpe.models import build_model


def test_digits_split_is_fixed_and_disjoint() -> None:
    a, b = load_digits(seed=0), load_digits(seed=0)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    sizes = [len(a.train), len(a.val), len(a.test)]
    assert sum(sizes) == 1797 and min(sizes) > 200
    assert float(a.train.tensors[0].max()) <= 1.0
    c = load_digits(seed=1)
    assert not torch.equal(a.test.tensors[1], c.test.tensors[1])


def test_bad_split_fractions() -> None:
    with pytest.raises(ValueError, match="at least 10%"):
        load_digits(val_fraction=0.5, test_fraction=0.45)


_EXAMPLE_INPUTS = {"resnet20": (3, 32, 32), "resnet20_1d": (1, 40)}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_builtin_models_forward(name: str) -> None:
    shape = _EXAMPLE_INPUTS.get(name, (1, 8, 8))
    model = build_model(name, in_channels=shape[0])
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        build_model("vgg")


def test_loader_seeded_shuffle() -> None:
    ds = load_digits().train
    first = [next(iter(make_loader(ds, batch_size=8, shuffle=True, seed=3)))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])
