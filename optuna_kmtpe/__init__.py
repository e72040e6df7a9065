"""optuna-kmtpe: hardware-aware mixed-precision quantization search for Optuna.

``from optuna_kmtpe import KMeansTPESampler`` imports only optuna and numpy: the sampler works in
any Optuna study. The quantization, sensitivity, hardware and CLI parts live in subpackages and
import torch only when used.
"""

from __future__ import annotations

from optuna_kmtpe.sampler import KMeansTPESampler


__version__ = "0.1.0"

__all__ = ["KMeansTPESampler", "__version__"]
