"""Quantization engine: fake quantizers with a straight-through estimator, per-layer configs
applied to any model (bits and width), calibration, QAT/PTQ loops, accounting and export.

Pure PyTorch (no torch.ao.quantization, no Brevitas): see ``docs/quantization.md``.
"""

from __future__ import annotations

from optuna_kmtpe.quant._quantizers import activation_qparams
from optuna_kmtpe.quant._quantizers import fake_quantize_activation
from optuna_kmtpe.quant._quantizers import fake_quantize_weight
from optuna_kmtpe.quant._quantizers import integer_range
from optuna_kmtpe.quant._quantizers import quantize_weight_to_int
from optuna_kmtpe.quant._quantizers import stochastic_round
from optuna_kmtpe.quant._quantizers import straight_through
from optuna_kmtpe.quant._quantizers import weight_qparams


__all__ = [
    "activation_qparams",
    "fake_quantize_activation",
    "fake_quantize_weight",
    "integer_range",
    "quantize_weight_to_int",
    "stochastic_round",
    "straight_through",
    "weight_qparams",
]
