"""Built-in models: an MLP, a small CNN for 8x8 digits, ResNet-20 for 32x32 inputs and its 1-D
sibling for MNIST-1D signals.

Any user ``nn.Module`` built from Conv1d/Conv2d/Linear layers works with the rest of the
package too; these exist so that the CLI, tests and benchmarks have known targets. Register
your own builder with :func:`register_model` (then ``--model NAME``), or give an import path
(``--model MODULE:CALLABLE``).
"""

from __future__ import annotations

from optuna_kmtpe._registry import model_names
from optuna_kmtpe._registry import register_model
from optuna_kmtpe._registry import unregister_model
from optuna_kmtpe.models._registry import MODEL_NAMES
from optuna_kmtpe.models._registry import build_model
from optuna_kmtpe.models._small import MLP
from optuna_kmtpe.models._small import DigitsCNN
from optuna_kmtpe.models.resnet import ResNet20
from optuna_kmtpe.models.resnet1d import ResNet20_1D


__all__ = [
    "DigitsCNN",
    "MLP",
    "MODEL_NAMES",
    "ResNet20",
    "ResNet20_1D",
    "build_model",
    "model_names",
    "register_model",
    "unregister_model",
]
