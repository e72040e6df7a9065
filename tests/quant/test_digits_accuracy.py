"""Accuracy of the quantization engine on scikit-learn's digits (no download).

One float DigitsCNN is trained per module (about 3 s on 2 cores) and every quantized variant is
a short QAT fine-tune (3 epochs) or a PTQ calibration from it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.data import load_digits
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.quant import apply_config
from optuna_kmtpe.quant import calibrate
from optuna_kmtpe.quant import evaluate
from optuna_kmtpe.quant import ptq
from optuna_kmtpe.quant import qat_finetune
from optuna_kmtpe.quant import quantizable_layers
from optuna_kmtpe.quant import train_float


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits() -> dict[str, object]:
    splits = load_digits(seed=0)
    train = make_loader(splits.train, batch_size=64, shuffle=True, seed=0)
    test = make_loader(splits.test, batch_size=512)
    torch.manual_seed(0)
    model = DigitsCNN()
    trained = train_float(model, train, epochs=30, lr=0.1, seed=0, progress=False)
    return {"train": train, "test": test, "float": trained, "float_acc": evaluate(trained, test)}


def _qat_accuracy(digits: dict[str, object], bits: int) -> float:
    model: nn.Module = digits["float"]  # type: ignore[assignment]
    config = QuantConfig.uniform(quantizable_layers(model), weight_bits=bits, act_bits=bits)
    qmodel = apply_config(model, config)
    calibrate(qmodel, digits["train"])  # type: ignore[arg-type]
    train = digits["train"]
    tuned = qat_finetune(qmodel, train, epochs=3, lr=0.01, seed=0, progress=False)  # type: ignore
    return evaluate(tuned, digits["test"])  # type: ignore[arg-type]


def test_float_digits_cnn_reaches_97_percent(digits: dict[str, object]) -> None:
    assert digits["float_acc"] >= 0.97


def test_qat_accuracy_by_bit_width(digits: dict[str, object]) -> None:
    float_acc = float(digits["float_acc"])  # type: ignore[arg-type]
    acc8 = _qat_accuracy(digits, 8)
    acc4 = _qat_accuracy(digits, 4)
    acc2 = _qat_accuracy(digits, 2)
    assert acc8 >= float_acc - 0.005, (acc8, float_acc)
    assert acc4 >= float_acc - 0.015, (acc4, float_acc)
    # 2-bit weights and activations lose clearly more than 4-bit (about 10 points here).
    assert acc2 <= acc4 - 0.02, (acc2, acc4)


def test_ptq_8bit_within_one_point(digits: dict[str, object]) -> None:
    model: nn.Module = digits["float"]  # type: ignore[assignment]
    config = QuantConfig.uniform(quantizable_layers(model), weight_bits=8, act_bits=8)
    qmodel = ptq(model, config, digits["train"])  # type: ignore[arg-type]
    acc = evaluate(qmodel, digits["test"])  # type: ignore[arg-type]
    assert acc >= float(digits["float_acc"]) - 0.01  # type: ignore[arg-type]
