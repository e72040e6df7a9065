"""optuna-kmtpe: hardware-aware mixed-precision quantization search for Optuna.

``from optuna_kmtpe import KMeansTPESampler`` imports only optuna and numpy: the sampler works in
any Optuna study. The quantization, sensitivity, hardware and CLI parts live in subpackages and
import torch only when used. ``optuna_kmtpe.search(model, train_data, val_data, ...)`` runs the
whole ``kmtpe search`` job on an in-memory model and data.
"""

from __future__ import annotations

from typing import Any

from optuna_kmtpe.sampler import KMeansTPESampler


__version__ = "0.1.0"

__all__ = ["KMeansTPESampler", "__version__", "search"]


def __getattr__(name: str) -> Any:
    # ``optuna_kmtpe.search`` imports the workflow (and torch, when called) only when used.
    if name == "search":
        from optuna_kmtpe.workflow._api import search

        return search
    raise AttributeError(f"module 'optuna_kmtpe' has no attribute {name!r}")
