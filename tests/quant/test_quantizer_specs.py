"""Quantizer specs: the built-ins are registered, and a new quantizer is one small class.

``FixedStepQuantizer`` below is the whole of a new quantizer: it is registered here, selected
by name in ``apply_config``, trained with QAT, evaluated and exported (JSON integers and QONNX)
through the same code as the built-ins, none of which knows about it.
"""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
from typing import ClassVar

import pytest
import torch

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.data import load_digits
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.quant import BinaryQuantizer
from optuna_kmtpe.quant import PowerOfTwoQuantizer
from optuna_kmtpe.quant import QuantizerSpec
from optuna_kmtpe.quant import UniformQuantizer
from optuna_kmtpe.quant import apply_config
from optuna_kmtpe.quant import calibrate
from optuna_kmtpe.quant import evaluate
from optuna_kmtpe.quant import export_quantized
from optuna_kmtpe.quant import layer_quantization
from optuna_kmtpe.quant import qat_finetune
from optuna_kmtpe.quant import quantizable_layers
from optuna_kmtpe.quant import quantizer_names
from optuna_kmtpe.quant import quantizer_spec
from optuna_kmtpe.quant import register_quantizer
from optuna_kmtpe.quant import unregister_quantizer


@dataclasses.dataclass(frozen=True, kw_only=True)
class FixedStepQuantizer(QuantizerSpec):
    """Weights on one fixed grid, ``step * q``, whatever their range (activations: uniform)."""

    name: ClassVar[str] = "fixed-step"
    step: float = 0.0625

    def weight_qparams(
        self, weight: torch.Tensor, bits: int, *, clip_ratio: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = weight.shape[:1] if self.per_channel and weight.dim() > 1 else ()
        scale = torch.full(shape, self.step, dtype=weight.dtype, device=weight.device)
        return scale, torch.zeros_like(scale)


@pytest.fixture
def fixed_step() -> Iterator[str]:
    register_quantizer(FixedStepQuantizer.name, FixedStepQuantizer)
    yield FixedStepQuantizer.name
    unregister_quantizer(FixedStepQuantizer.name)


def test_builtins_are_registered_and_options_are_validated() -> None:
    assert quantizer_names()[:3] == ("uniform", "binary", "power_of_two")
    assert type(quantizer_spec()) is UniformQuantizer
    assert type(quantizer_spec("power_of_two")) is PowerOfTwoQuantizer
    with pytest.raises(ValueError, match="lsq"):
        quantizer_spec("lsq")
    with pytest.raises(ValueError, match="range_method"):
        quantizer_spec(range_method="p99")
    with pytest.raises(TypeError):
        quantizer_spec(clip=0.5)


def test_one_bit_weights_are_binary_and_the_binary_spec_only_takes_one_bit() -> None:
    model = DigitsCNN()
    config = QuantConfig.uniform(quantizable_layers(model), weight_bits=1, act_bits=4)
    for quantizer, power_of_two in (("uniform", False), ("power_of_two", True)):
        qmodel = apply_config(model, config, quantizer=quantizer).eval()
        layer = qmodel.features[0]
        assert isinstance(layer.quant_spec, BinaryQuantizer)
        assert layer.quant_spec.power_of_two is power_of_two
        q, scale, _ = layer.integer_weight()
        assert set(q.unique().tolist()) <= {-1, 1}
        assert torch.equal(scale[:, None, None, None] * q, layer.quantized_weight())
    config4 = QuantConfig.uniform(quantizable_layers(model), weight_bits=4, act_bits=4)
    with pytest.raises(ValueError, match="1-bit"):
        apply_config(model, config4, quantizer="binary")


def test_a_spec_without_a_one_bit_form_refuses_one_bit_weights(fixed_step: str) -> None:
    model = DigitsCNN()
    config = QuantConfig.uniform(quantizable_layers(model), weight_bits=1, act_bits=4)
    with pytest.raises(ValueError, match="1-bit"):
        apply_config(model, config, quantizer=fixed_step)


def test_a_new_spec_registered_here_trains_evaluates_and_exports(fixed_step: str) -> None:
    digits = load_digits(seed=0)
    loader = make_loader(digits.train, batch_size=64, shuffle=True, seed=0)
    val = make_loader(digits.val, batch_size=256)
    torch.manual_seed(0)
    model = DigitsCNN()
    config = QuantConfig.uniform(quantizable_layers(model), weight_bits=4, act_bits=8)
    qmodel = apply_config(model, config, quantizer=fixed_step)
    calibrate(qmodel, loader, num_batches=2)
    qmodel = qat_finetune(qmodel, loader, epochs=3, lr=0.05, seed=0, progress=False).eval()
    assert evaluate(qmodel, val) > 0.5  # it learns with its fixed grid

    step = FixedStepQuantizer.step
    exported = export_quantized(qmodel)
    for name, layer in quantizable_layers(qmodel).items():
        assert isinstance(layer.quant_spec, FixedStepQuantizer)
        entry = exported["layers"][name]
        assert entry["weight_quantizer"] == fixed_step
        assert set(entry["weight_scale"]) == {step}
        q = torch.tensor(entry["weight_int"])
        assert q.abs().max() <= 7  # 4-bit narrow signed range
        assert torch.equal(q * step, layer.quantized_weight())  # what the model computes
        assert layer_quantization(layer).weight.scale.eq(step).all()

    export = pytest.importorskip("optuna_kmtpe.export")
    pytest.importorskip("qonnx")
    inputs, labels = digits.test.tensors[:2]
    onnx_model = export.to_onnx(qmodel, example_input=inputs[:2], format="qonnx")
    check = export.check_export(qmodel, onnx_model, inputs, labels, format="qonnx")
    assert check.agreement >= 0.995
