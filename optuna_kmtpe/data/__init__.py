"""Datasets: scikit-learn's digits embedded by default; CIFAR-10 and MNIST via torchvision.

Nothing here downloads anything unless the user asks for a torchvision dataset with
``download=True``.
"""

from __future__ import annotations

from optuna_kmtpe.data._digits import DatasetSplits
from optuna_kmtpe.data._digits import load_digits
from optuna_kmtpe.data._digits import make_loader


__all__ = ["DatasetSplits", "load_digits", "make_loader"]
