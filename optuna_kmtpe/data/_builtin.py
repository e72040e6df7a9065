"""The built-in datasets as registry loaders (``seed``, ``data_dir``, ``n_samples`` keywords)."""

from __future__ import annotations

from optuna_kmtpe.data._digits import DatasetSplits
from optuna_kmtpe.data._mnist1d import load_mnist1d
from optuna_kmtpe.data._vision import load_cifar10
from optuna_kmtpe.data._vision import load_mnist


def mnist1d(*, seed: int, n_samples: int | None = None) -> DatasetSplits:
    """MNIST-1D generated offline (:func:`~optuna_kmtpe.data.load_mnist1d`)."""
    if n_samples is None:
        return load_mnist1d(seed=seed)
    return load_mnist1d(seed=seed, n_samples=n_samples)


def mnist(*, seed: int, data_dir: str | None) -> DatasetSplits:
    """MNIST from a local torchvision copy (:func:`~optuna_kmtpe.data.load_mnist`)."""
    if data_dir is None:
        raise ValueError("--data-dir is required for mnist (nothing is downloaded implicitly).")
    return load_mnist(data_dir, seed=seed)


def cifar10(*, seed: int, data_dir: str | None) -> DatasetSplits:
    """CIFAR-10 from a local torchvision copy (:func:`~optuna_kmtpe.data.load_cifar10`)."""
    if data_dir is None:
        raise ValueError("--data-dir is required for cifar10 (nothing is downloaded implicitly).")
    return load_cifar10(data_dir, seed=seed)
