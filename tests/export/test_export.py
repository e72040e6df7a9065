"""QONNX and ONNX QDQ export of a QAT-trained digits CNN, checked by running the files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.data import load_digits
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.quant import apply_config
from optuna_kmtpe.quant import calibrate
from optuna_kmtpe.quant import layer_quantization
from optuna_kmtpe.quant import qat_finetune
from optuna_kmtpe.quant import quantizable_layers
from optuna_kmtpe.quant import train_float


pytest.importorskip("onnxruntime")
pytest.importorskip("qonnx")
export = pytest.importorskip("optuna_kmtpe.export")
onnx = pytest.importorskip("onnx")

# features.0 keeps half its channels; mixed bits, binary weights on one layer.
CONFIG = QuantConfig(
    {
        "features.0": LayerConfig(weight_bits=4, act_bits=8, width=0.5),
        "features.3": LayerConfig(weight_bits=1, act_bits=4),
        "features.7": LayerConfig(weight_bits=3, act_bits=6),
        "classifier": LayerConfig(weight_bits=8, act_bits=5),
    }
)


@pytest.fixture(scope="module")
def digits() -> object:
    return load_digits(seed=0)


@pytest.fixture(scope="module")
def float_model(digits: object) -> torch.nn.Module:
    torch.manual_seed(0)
    loader = make_loader(digits.train, batch_size=64, shuffle=True, seed=0)
    return train_float(DigitsCNN(), loader, epochs=4, seed=0, progress=False)


def _qat(model: torch.nn.Module, digits: object, config: QuantConfig, **options: object):
    loader = make_loader(digits.train, batch_size=64, shuffle=True, seed=0)
    example = digits.val.tensors[0][:2]
    qmodel = apply_config(model, config, example_input=example, **options)
    calibrate(qmodel, loader, num_batches=4)
    return qat_finetune(qmodel, loader, epochs=1, seed=0, progress=False)


@pytest.fixture(scope="module")
def qmodel(float_model: torch.nn.Module, digits: object) -> torch.nn.Module:
    return _qat(float_model, digits, CONFIG)


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_qonnx_carries_each_layers_bits_scales_and_pruned_shapes(
    qmodel: torch.nn.Module, digits: object, tmp_path: Path
) -> None:
    path = tmp_path / "model.onnx"
    export.export_model(qmodel, path, format="qonnx", example_input=digits.val.tensors[0][:2])
    model = onnx.load(path)
    nodes = {n.name: n for n in model.graph.node}
    values = _initializers(model)
    for name, layer in quantizable_layers(qmodel).items():
        params = layer_quantization(layer)
        weight_node = nodes[f"{name}.weight_quant"]
        if params.weight.binary:
            assert weight_node.op_type == "BipolarQuant"
        else:
            assert weight_node.op_type == "Quant"
            assert int(values[weight_node.input[3]]) == CONFIG.layer(name).weight_bits
            np.testing.assert_array_equal(
                values[weight_node.input[1]].reshape(-1), params.weight.scale.reshape(-1)
            )
        input_node = nodes[f"{name}.input_quant"]
        assert int(values[input_node.input[3]]) == CONFIG.layer(name).act_bits
        assert float(values[input_node.input[2]]) == float(params.input.zero_point)
        assert nodes[name].op_type in ("Conv", "Gemm")
    # Pruned channels are physically absent: 8 of 16 filters, and the next conv reads 8.
    assert values["features.0.weight"].shape[0] == 8
    assert values["features.3.weight"].shape[1] == 8


def test_qonnx_passes_cleanup_and_its_executor_reproduces_the_model(
    qmodel: torch.nn.Module, digits: object, tmp_path: Path
) -> None:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    path = tmp_path / "model.onnx"
    export.export_model(qmodel, path, format="qonnx", example_input=digits.val.tensors[0][:2])
    cleaned = cleanup_model(ModelWrapper(str(path))).transform(InferShapes())
    assert cleaned.check_all_tensor_shapes_specified()
    assert {"Quant", "BipolarQuant"} <= {n.op_type for n in cleaned.graph.node}
    inputs, labels = digits.test.tensors[:2]
    check = export.check_export(qmodel, path, inputs, labels, format="qonnx")
    assert check.runtime == "qonnx" and check.samples == len(labels)
    assert check.agreement >= 0.995
    assert abs(check.accuracy - check.reference_accuracy) <= 0.005
    # A trained model, far above chance (0.1); binary weights and 1 QAT epoch cost some, and
    # the figure moves by a few points between CPUs (0.69 on one, 0.72 on another).
    assert check.reference_accuracy > 0.5


def test_qdq_runs_in_onnxruntime_with_narrow_range_clips(
    qmodel: torch.nn.Module, digits: object, tmp_path: Path
) -> None:
    path = tmp_path / "qdq.onnx"
    model = export.export_model(
        qmodel, path, format="onnx", example_input=digits.val.tensors[0][:2]
    )
    onnx.checker.check_model(model)
    assert {n.domain for n in model.graph.node} == {""}  # standard ops only
    values = _initializers(model)
    nodes = {n.name: n for n in model.graph.node}
    # 4-bit unsigned input: QuantizeLinear to uint8, Clip to [0, 15]; 8 bits needs no Clip.
    clip = nodes["features.3.input_clip"]
    assert (int(values[clip.input[1]]), int(values[clip.input[2]])) == (0, 15)
    assert "features.0.input_clip" not in nodes
    # Binary weights are int8 {-1, +1} into DequantizeLinear.
    assert set(np.unique(values["features.3.weight_int"])) == {-1, 1}
    inputs, labels = digits.test.tensors[:2]
    check = export.check_export(qmodel, path, inputs, labels, format="onnx")
    assert check.runtime == "onnxruntime"
    assert check.agreement >= 0.995
    assert abs(check.accuracy - check.reference_accuracy) <= 0.005
    # The graph as written (no fused integer kernels) is the torch model exactly.
    assert check.exact_agreement == 1.0 and check.exact_max_abs_diff < 1e-4


def test_the_summary_separates_the_export_from_the_runtimes_rounding() -> None:
    fused = export.ExportCheck(
        runtime="onnxruntime",
        samples=150,
        agreement=149 / 150,
        accuracy=0.8267,
        reference_accuracy=0.82,
        max_abs_diff=0.25,
        exact_agreement=1.0,
        exact_max_abs_diff=4.8e-7,
    )
    assert fused.summary().startswith("onnxruntime: 99.33% argmax agreement on 150 samples")
    assert "graph optimizations off): 100.00% agreement, max diff 4.8e-07" in fused.summary()
    same = dataclasses.replace(fused, agreement=1.0, max_abs_diff=4.8e-7)
    assert "optimizations" not in same.summary()


def test_qdq_names_the_layer_it_cannot_express(
    float_model: torch.nn.Module, digits: object
) -> None:
    config = QuantConfig({"features.7": LayerConfig(weight_bits=4, act_bits=1)})
    qmodel = apply_config(float_model, config, symmetric_acts=True)
    calibrate(qmodel, [digits.train.tensors[0][:64]], num_batches=1)
    with pytest.raises(export.ExportError, match="'features.7'.*binary"):
        export.to_onnx(qmodel, example_input=digits.val.tensors[0][:2], format="onnx")
    # QONNX expresses it (BipolarQuant) and its executor reproduces the model.
    model = export.to_onnx(qmodel, example_input=digits.val.tensors[0][:2], format="qonnx")
    inputs = digits.test.tensors[0][:64]
    assert export.check_export(qmodel, model, inputs, format="qonnx").agreement == 1.0


def test_float_layers_stay_float_in_qdq(float_model: torch.nn.Module, digits: object) -> None:
    config = QuantConfig({"features.0": LayerConfig(weight_bits=8, act_bits=8)})
    qmodel = apply_config(float_model, config)  # the other layers: float (32 bits)
    calibrate(qmodel, [digits.train.tensors[0][:64]], num_batches=1)
    model = export.to_onnx(qmodel, example_input=digits.val.tensors[0][:2], format="onnx")
    names = {n.name for n in model.graph.node}
    assert "features.0.input_quantize" in names and "classifier.input_quantize" not in names
    inputs = digits.test.tensors[0][:64]
    assert export.check_export(qmodel, model, inputs, format="onnx").agreement == 1.0


def test_power_of_two_export_has_fixed_point_types(
    float_model: torch.nn.Module, digits: object
) -> None:
    qmodel = _qat(float_model, digits, CONFIG, quantizer="power_of_two")
    model = export.to_onnx(qmodel, example_input=digits.val.tensors[0][:2], format="qonnx")
    for node in model.graph.node:
        if node.op_type in ("Quant", "BipolarQuant"):
            scale = _initializers(model)[node.input[1]]
            assert np.array_equal(np.log2(scale), np.round(np.log2(scale))), node.name
    layers = export.hls4ml_config(qmodel)["LayerName"]
    assert layers["features_7"]["Precision"]["weight"].startswith("fixed<3,")
    assert layers["features_7"]["kmtpe"]["weight"]["exact_fixed_point"]
    assert layers["features_7_input_quant"]["Precision"]["result"].startswith("ufixed<6,")


def test_export_errors_are_one_clear_line(float_model: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown export format 'tflite'"):
        export.export_model(float_model, tmp_path / "m", format="tflite")
    with pytest.raises(export.ExportError, match="apply_config"):
        export.to_onnx(float_model, example_input=torch.zeros(1, 1, 8, 8))
