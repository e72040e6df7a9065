"""Datasets: scikit-learn's digits embedded by default, MNIST-1D generated procedurally (the
harder offline task); CIFAR-10 and MNIST via torchvision.

Nothing here downloads anything unless the user asks for a torchvision dataset with
``download=True``. Register your own loader with :func:`register_dataset` (then
``--data NAME``), or give an import path (``--data MODULE:CALLABLE``).
"""

from __future__ import annotations

from optuna_kmtpe._registry import dataset_names
from optuna_kmtpe._registry import register_dataset
from optuna_kmtpe._registry import unregister_dataset
from optuna_kmtpe.data._digits import DatasetSplits
from optuna_kmtpe.data._digits import load_digits
from optuna_kmtpe.data._digits import make_loader
from optuna_kmtpe.data._mnist1d import load_mnist1d
from optuna_kmtpe.data._vision import load_cifar10
from optuna_kmtpe.data._vision import load_mnist


__all__ = [
    "DatasetSplits",
    "dataset_names",
    "load_cifar10",
    "load_digits",
    "load_mnist",
    "load_mnist1d",
    "make_loader",
    "register_dataset",
    "unregister_dataset",
]
