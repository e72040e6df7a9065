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
        agreement: Fraction of inputs whose predicted class is the same in both (``None`` for
            a regression, whose outputs have no class to agree on).
        accuracy: Accuracy of the exported model (``None`` without labels or for a regression).
        reference_accuracy: Accuracy of the quantized torch model on the same inputs.
        max_abs_diff: Largest absolute difference between the two models' outputs.
        max_rel_diff: For a regression, ``max_abs_diff`` relative to the largest absolute
            output of the torch model (``None`` for a classifier).
        exact_agreement: onnxruntime only: the agreement with graph optimizations off, where
            each QuantizeLinear/DequantizeLinear runs as written (the graph's exact meaning).
            With them on, onnxruntime fuses Q/DQ pairs into integer kernels whose fixed-point
            requantization can round an activation to the next level (a user's CNN: 1 of 150
            digits samples).
        exact_max_abs_diff: The largest output difference with graph optimizations off.
    """

    runtime: str
    samples: int
    agreement: float | None
    accuracy: float | None
    reference_accuracy: float | None
    max_abs_diff: float
    max_rel_diff: float | None = None
    exact_agreement: float | None = None
    exact_max_abs_diff: float | None = None

    def summary(self) -> str:
        """One line, e.g. ``onnxruntime: 100.00% argmax agreement on 360 samples, ...``; when
        onnxruntime's optimized kernels differ from the graph run as written, both."""
        line = self._summary()
        if self.exact_max_abs_diff is not None and self.exact_max_abs_diff < self.max_abs_diff:
            exact = (
                f"{100 * self.exact_agreement:.2f}% agreement, "
                if self.exact_agreement is not None
                else ""
            )
            line += (
                f"; the graph as written (graph optimizations off): {exact}max diff "
                f"{self.exact_max_abs_diff:.2g} (the rest is onnxruntime's fused integer "
                "kernels rounding an activation to the next level)"
            )
        return line

    def _summary(self) -> str:
        """One line, e.g. ``onnxruntime: 100.00% argmax agreement on 360 samples, ...``."""
        if self.agreement is None:
            relative = f" ({100 * self.max_rel_diff:.2g}% of the largest output)"
            return (
                f"{self.runtime}: outputs compared numerically on {self.samples} samples (a "
                f"regression: no argmax agreement), max |output diff| {self.max_abs_diff:.2g}"
                + (relative if self.max_rel_diff is not None else "")
            )
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


def run_onnxruntime(
    model: onnx.ModelProto, inputs: np.ndarray, *, optimized: bool = True
) -> np.ndarray:
    """Run a (QDQ or float) ONNX model with onnxruntime on the CPU, one sample at a time (the
    exported graph has batch size 1). ``optimized=False`` turns graph optimizations off: each
    QuantizeLinear/DequantizeLinear then runs as written instead of fused integer kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
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
    *,
    regression: bool = False,
) -> ExportCheck:
    """Agreement, accuracies and the largest output difference of two models' outputs.

    With ``regression=True`` the outputs are values, not logits: no argmax agreement or
    accuracy (``labels`` are ignored), the largest difference absolute and relative instead.

    Example:
        >>> import numpy as np
        >>> reference = np.array([[2.0], [-4.0]])
        >>> check = compare_outputs("onnxruntime", reference + 0.04, reference, regression=True)
        >>> check.agreement, round(check.max_rel_diff, 6)
        (None, 0.01)
    """
    outputs = outputs.reshape(reference.shape)
    max_abs_diff = float(np.abs(outputs - reference).max())
    agreement = accuracy = reference_accuracy = max_rel_diff = None
    if regression:
        scale = float(np.abs(reference).max())
        max_rel_diff = max_abs_diff / scale if scale > 0 else max_abs_diff
    else:
        predicted, expected = outputs.argmax(axis=1), reference.argmax(axis=1)
        agreement = float((predicted == expected).mean())
        if labels is not None:
            accuracy = float((predicted == labels).mean())
            reference_accuracy = float((expected == labels).mean())
    return ExportCheck(
        runtime=runtime,
        samples=len(reference),
        agreement=agreement,
        accuracy=accuracy,
        reference_accuracy=reference_accuracy,
        max_abs_diff=max_abs_diff,
        max_rel_diff=max_rel_diff,
    )
