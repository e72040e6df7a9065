"""Run exported models (onnxruntime, qonnx's executor) and compare them with our forward pass."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from optuna_kmtpe.export._graph import INPUT_NAME


if TYPE_CHECKING:
    import onnx


@dataclasses.dataclass(frozen=True)
class ExportCheck:
    """How closely an exported model reproduces the quantized model it came from.

    Attributes:
        runtime: ``"onnxruntime"`` or ``"qonnx"`` (its Python executor).
        samples: Inputs compared.
        agreement: Fraction of inputs whose predicted class is the same in both.
        accuracy: Accuracy of the exported model (``None`` without labels).
        reference_accuracy: Accuracy of the quantized torch model on the same inputs.
        max_abs_diff: Largest absolute difference between the two models' outputs.
    """

    runtime: str
    samples: int
    agreement: float
    accuracy: float | None
    reference_accuracy: float | None
    max_abs_diff: float

    def summary(self) -> str:
        """One line, e.g. ``onnxruntime: 100.00% argmax agreement on 360 samples, ...``."""
        line = f"{self.runtime}: {100 * self.agreement:.2f}% argmax agreement on {self.samples}"
        line += f" samples, max |logit diff| {self.max_abs_diff:.2g}"
        if self.accuracy is not None and self.reference_accuracy is not None:
            line += (
                f", accuracy {100 * self.accuracy:.2f}% (torch "
                f"{100 * self.reference_accuracy:.2f}%)"
            )
        return line


def reference_outputs(qmodel: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """The quantized torch model's outputs (eval mode, CPU, batches of 512)."""
    was_training = qmodel.training
    qmodel.eval()
    device = next(qmodel.parameters()).device
    try:
        with torch.no_grad():
            chunks = [qmodel(x.to(device)).cpu() for x in inputs.split(512)]
    finally:
        qmodel.train(was_training)
    return torch.cat(chunks).numpy()


def run_onnxruntime(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    """Run a (QDQ or float) ONNX model with onnxruntime on the CPU, one sample at a time (the
    exported graph has batch size 1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    outputs = [session.run(None, {INPUT_NAME: x[None]})[0][0] for x in inputs]
    return np.stack(outputs)


def run_qonnx(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    """Run a QONNX model with qonnx's own executor (Quant nodes included), all inputs at once:
    qonnx's ``ChangeBatchSize`` sets the batch size of a copy to ``len(inputs)``."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    wrapper = ModelWrapper(model.SerializeToString())
    wrapper = wrapper.transform(ChangeBatchSize(len(inputs)))
    wrapper = wrapper.transform(InferShapes())
    feed = {wrapper.graph.input[0].name: np.ascontiguousarray(inputs, dtype=np.float32)}
    result = execute_onnx(wrapper, feed)
    return np.asarray(result[wrapper.graph.output[0].name])


def compare_outputs(
    runtime: str,
    outputs: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None = None,
) -> ExportCheck:
    """Agreement, accuracies and the largest output difference of two models' outputs."""
    outputs = outputs.reshape(reference.shape)
    predicted, expected = outputs.argmax(axis=1), reference.argmax(axis=1)
    accuracy = reference_accuracy = None
    if labels is not None:
        accuracy = float((predicted == labels).mean())
        reference_accuracy = float((expected == labels).mean())
    return ExportCheck(
        runtime=runtime,
        samples=len(reference),
        agreement=float((predicted == expected).mean()),
        accuracy=accuracy,
        reference_accuracy=reference_accuracy,
        max_abs_diff=float(np.abs(outputs - reference).max()),
    )
