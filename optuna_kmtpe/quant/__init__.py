"""Quantization engine: fake quantizers with a straight-through estimator, per-layer configs
applied to any model (bits and width), calibration, QAT/PTQ loops, the recipe runner a search
trial uses (:func:`run_recipe`), accounting and export.

Pure PyTorch (no torch.ao.quantization, no Brevitas): see ``docs/quantization.md``.

Example:
    >>> import torch
    >>> from optuna_kmtpe.config import QuantConfig
    >>> from optuna_kmtpe.models import DigitsCNN
    >>> from optuna_kmtpe.quant import apply_config, quantizable_layers, bops
    >>> model = DigitsCNN()
    >>> config = QuantConfig.uniform(quantizable_layers(model), weight_bits=4, act_bits=8)
    >>> qmodel = apply_config(model, config)
    >>> qmodel(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from optuna_kmtpe._registry import quantizer_names
from optuna_kmtpe._registry import register_quantizer
from optuna_kmtpe._registry import unregister_quantizer
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.quant._accounting import bops
from optuna_kmtpe.quant._accounting import count_parameters
from optuna_kmtpe.quant._accounting import layer_macs
from optuna_kmtpe.quant._accounting import layer_report
from optuna_kmtpe.quant._accounting import model_size_bits
from optuna_kmtpe.quant._apply import activation_quantizers
from optuna_kmtpe.quant._apply import applied_config
from optuna_kmtpe.quant._apply import apply_config
from optuna_kmtpe.quant._calibration import calibrate
from optuna_kmtpe.quant._calibration import recalibrate_batchnorm
from optuna_kmtpe.quant._export import LayerQuantization
from optuna_kmtpe.quant._export import QuantizerParams
from optuna_kmtpe.quant._export import export_quantized
from optuna_kmtpe.quant._export import layer_quantization
from optuna_kmtpe.quant._export import save_quantized
from optuna_kmtpe.quant._loss import LOSSES
from optuna_kmtpe.quant._loss import make_criterion
from optuna_kmtpe.quant._modules import ActivationQuantizer
from optuna_kmtpe.quant._modules import QuantConv1d
from optuna_kmtpe.quant._modules import QuantConv2d
from optuna_kmtpe.quant._modules import QuantLinear
from optuna_kmtpe.quant._quantizers import BinaryQuantizer
from optuna_kmtpe.quant._quantizers import PowerOfTwoQuantizer
from optuna_kmtpe.quant._quantizers import QuantizerSpec
from optuna_kmtpe.quant._quantizers import UniformQuantizer
from optuna_kmtpe.quant._quantizers import integer_range
from optuna_kmtpe.quant._quantizers import power_of_two_scale
from optuna_kmtpe.quant._quantizers import quantizer_spec
from optuna_kmtpe.quant._quantizers import stochastic_round
from optuna_kmtpe.quant._quantizers import straight_through
from optuna_kmtpe.quant._train import MEASURES
from optuna_kmtpe.quant._train import RecipeResult
from optuna_kmtpe.quant._train import TrainingRecipe
from optuna_kmtpe.quant._train import evaluate
from optuna_kmtpe.quant._train import measure
from optuna_kmtpe.quant._train import ptq
from optuna_kmtpe.quant._train import qat_finetune
from optuna_kmtpe.quant._train import run_recipe
from optuna_kmtpe.quant._train import train_float


__all__ = [
    "ActivationQuantizer",
    "BinaryQuantizer",
    "LOSSES",
    "LayerQuantization",
    "MEASURES",
    "PowerOfTwoQuantizer",
    "QuantConv1d",
    "QuantConv2d",
    "QuantLinear",
    "QuantizerParams",
    "QuantizerSpec",
    "RecipeResult",
    "TrainingRecipe",
    "UniformQuantizer",
    "activation_quantizers",
    "applied_config",
    "apply_config",
    "bops",
    "calibrate",
    "count_parameters",
    "evaluate",
    "export_quantized",
    "integer_range",
    "layer_macs",
    "layer_quantization",
    "layer_report",
    "make_criterion",
    "measure",
    "model_size_bits",
    "power_of_two_scale",
    "ptq",
    "qat_finetune",
    "quantizable_layers",
    "quantizer_names",
    "quantizer_spec",
    "recalibrate_batchnorm",
    "register_quantizer",
    "run_recipe",
    "save_quantized",
    "stochastic_round",
    "straight_through",
    "train_float",
    "unregister_quantizer",
]
