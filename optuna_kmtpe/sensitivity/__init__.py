"""Hessian sensitivity of quantizable layers (HAWQ, HAWQ-V2).

:func:`compute_sensitivity` (needs torch) measures per-layer average Hessian traces and weight
perturbations; :class:`SensitivityReport` (plain data, importable without torch) carries them to
the search space, to JSON and into a study's user attributes.

Example:
    >>> from optuna_kmtpe.sensitivity import SensitivityReport
    >>> SensitivityReport(layers=()).names
    ()
"""

from __future__ import annotations

from typing import Any

from optuna_kmtpe.sensitivity._report import LayerSensitivity
from optuna_kmtpe.sensitivity._report import SensitivityReport


__all__ = [
    "LayerSensitivity",
    "SensitivityReport",
    "compute_sensitivity",
    "load_or_compute_sensitivity",
]


def __getattr__(name: str) -> Any:
    # The torch-dependent part loads on first use, so that `optuna_kmtpe.space` can read
    # reports without importing torch.
    if name in ("compute_sensitivity", "load_or_compute_sensitivity"):
        from optuna_kmtpe.sensitivity import _compute

        return getattr(_compute, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
