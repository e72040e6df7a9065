"""The optional torchvision datasets, tested offline with a stand-in torchvision module."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from optuna_kmtpe.data import load_cifar10
from optuna_kmtpe.data import load_mnist


def _fake_torchvision(monkeypatch: pytest.MonkeyPatch, dataset_cls: type) -> list[dict]:
    calls: list[dict] = []

    class Recording(dataset_cls):  # type: ignore[misc, valid-type]
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append({"root": root, "train": train, "download": download})
            super().__init__(root, train, download)

    datasets = types.ModuleType("torchvision.datasets")
    datasets.CIFAR10 = Recording  # type: ignore[attr-defined]
    datasets.MNIST = Recording  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.datasets = datasets  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    return calls


class _FakeCifar:
    def __init__(self, root: str, train: bool, download: bool) -> None:
        n = 200 if train else 50
        rng = np.random.default_rng(0 if train else 1)
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]


class _FakeMnist:
    def __init__(self, root: str, train: bool, download: bool) -> None:
        n = 100 if train else 30
        self.data = torch.full((n, 28, 28), 255, dtype=torch.uint8)
        self.targets = torch.arange(n) % 10


class _Missing:
    def __init__(self, root: str, train: bool, download: bool) -> None:
        raise RuntimeError("Dataset not found or corrupted. You can use download=True")


def test_missing_torchvision_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(ImportError, match=r"optuna-kmtpe\[vision\]"):
        load_cifar10("/nonexistent")
    with pytest.raises(ImportError, match="load_digits"):
        load_mnist("/nonexistent")


def test_missing_files_never_download_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_torchvision(monkeypatch, _Missing)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10("/nonexistent/dir")
    assert calls and all(call["download"] is False for call in calls)
    assert calls[0]["root"] == "/nonexistent/dir"


def test_cifar10_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_torchvision(monkeypatch, _FakeCifar)
    splits = load_cifar10("/data", val_fraction=0.1, seed=0)
    assert [c["train"] for c in calls] == [True, False]
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (180, 20, 50)
    x, y = splits.train[0]
    assert x.shape == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.dtype == torch.int64
    # Stratified validation split: every class twice.
    assert torch.bincount(splits.val.tensors[1], minlength=10).tolist() == [2] * 10


def test_mnist_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_torchvision(monkeypatch, _FakeMnist)
    splits = load_mnist("/data", val_fraction=0.2)
    assert splits.input_shape == (1, 28, 28) and splits.name == "mnist"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 30)
    assert float(splits.test.tensors[0].max()) == 1.0
