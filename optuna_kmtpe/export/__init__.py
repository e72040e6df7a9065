"""Deployment formats of a quantized model, verified by running them.

* ``"qonnx"``: ONNX with QONNX ``Quant`` nodes (``BipolarQuant`` for binary weights) carrying
  each layer's weight and input bit-widths, scales and zero points; pruned channels are absent.
  FINN and hls4ml read it; qonnx's executor runs it.
* ``"onnx"``: standard ONNX QDQ (int8/uint8 weights into ``DequantizeLinear``;
  ``QuantizeLinear -> Clip -> DequantizeLinear`` on inputs, the ``Clip`` narrowing to the
  layer's bit-width), which onnxruntime and most toolchains run. Layers left in float stay float
  (no Q/DQ around them); binary input activations cannot be expressed and raise
  :class:`ExportError`.
* ``"json"``: integer weights, scales and zero points as plain JSON
  (:func:`optuna_kmtpe.quant.export_quantized`).

The ONNX formats need the ``export`` extra (``pip install "optuna-kmtpe[export]"``). See
``docs/export.md``.

Example:
    >>> import os, tempfile
    >>> import torch
    >>> from optuna_kmtpe.config import QuantConfig
    >>> from optuna_kmtpe.models import MLP
    >>> from optuna_kmtpe.quant import apply_config, calibrate
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = torch.rand(64, 1, 8, 8)
    >>> config = QuantConfig.uniform(["net.1", "net.3", "net.5"], weight_bits=4, act_bits=4)
    >>> qmodel = apply_config(MLP(), config)
    >>> calibrate(qmodel, [x])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "model.onnx")
    ...     _ = export_model(qmodel, path, format="qonnx", example_input=x[:1])
    ...     check = check_export(qmodel, path, x, format="qonnx")
    >>> check.runtime, check.agreement
    ('qonnx', 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import json
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from optuna_kmtpe.export._graph import ExportError
from optuna_kmtpe.export._graph import build_graph
from optuna_kmtpe.export._hls4ml import HLSModel
from optuna_kmtpe.export._hls4ml import compile_hls4ml
from optuna_kmtpe.export._hls4ml import fixed_point_type
from optuna_kmtpe.export._hls4ml import hls4ml_config
from optuna_kmtpe.export._hls4ml import hls4ml_layer_name
from optuna_kmtpe.export._verify import ExportCheck
from optuna_kmtpe.export._verify import compare_outputs
from optuna_kmtpe.export._verify import reference_outputs
from optuna_kmtpe.export._verify import run_onnxruntime
from optuna_kmtpe.export._verify import run_qonnx
from optuna_kmtpe.quant import applied_config
from optuna_kmtpe.quant import export_quantized


FORMATS: tuple[str, ...] = ("qonnx", "onnx", "json")
"""Export formats, as ``kmtpe report --format`` names them."""

_RUNTIMES = {"qonnx": "qonnx", "onnx": "onnxruntime"}
_EXTRA_HINT = 'pip install "optuna-kmtpe[export]" (onnx, onnxruntime, qonnx)'


def check_format(format: str) -> str:
    """Validate a format name (one clear error listing the choices)."""
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {list(FORMATS)}.")
    return format


def to_onnx(qmodel: nn.Module, *, example_input: torch.Tensor, format: str = "qonnx") -> Any:
    """The ``onnx.ModelProto`` of a quantized model in the QONNX (``"qonnx"``) or QDQ
    (``"onnx"``) form; inputs are shaped like one sample of ``example_input`` (batch size 1).

    Raises:
        ExportError: The model or a layer cannot be expressed in the format (named).
        ImportError: The ``export`` extra is missing.
    """
    check_format(format)
    if format == "json":
        raise ValueError("to_onnx builds ONNX formats; use quant.export_quantized for json.")
    _require_onnx()
    return build_graph(qmodel, example_input, style="qonnx" if format == "qonnx" else "qdq")


def export_model(
    qmodel: nn.Module,
    path: str | os.PathLike[str],
    *,
    format: str = "qonnx",
    example_input: torch.Tensor | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """Write a quantized model (from :func:`optuna_kmtpe.quant.apply_config`) to ``path``.

    Args:
        qmodel: The quantized (calibrated or fine-tuned) model.
        path: Output file.
        format: ``"qonnx"``, ``"onnx"`` (QDQ) or ``"json"``.
        example_input: One input batch (ONNX formats: the input shape).
        metadata: Extra JSON-able entries (trial number, accuracies, ...): ONNX metadata
            properties, or top-level keys of the JSON file.

    Returns:
        The written ``onnx.ModelProto`` (ONNX formats) or dict (json).
    """
    check_format(format)
    metadata = dict(metadata or {})
    if format == "json":
        data = {**export_quantized(qmodel), **metadata}
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        return data
    if example_input is None:
        raise ValueError(f"Exporting to {format} needs example_input (one input batch).")
    model = to_onnx(qmodel, example_input=example_input, format=format)
    config = applied_config(qmodel)
    entries = {"kmtpe:config": config.to_dict() if config else None, **metadata}
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)
    import onnx

    onnx.save(model, os.fspath(path))
    return model


def run_exported(model: Any, inputs: torch.Tensor | np.ndarray, *, format: str) -> np.ndarray:
    """Outputs of an exported model (path or ``ModelProto``): QONNX by qonnx's executor, QDQ by
    onnxruntime."""
    _require_onnx()  # before importing onnx: a missing extra gets the install hint
    import onnx

    if format not in _RUNTIMES:
        raise ValueError(f"run_exported runs {sorted(_RUNTIMES)} models, not {format!r}.")
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(os.fspath(model))
    array = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else inputs
    run = run_qonnx if format == "qonnx" else run_onnxruntime
    return run(proto, array)


def check_export(
    qmodel: nn.Module,
    exported: Any,
    inputs: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    format: str,
    regression: bool = False,
) -> ExportCheck:
    """Run the exported model and the quantized torch model on ``inputs`` and compare them.

    Args:
        qmodel: The quantized torch model.
        exported: The exported model or its path.
        inputs: Inputs to run both on.
        labels: Class labels, for both accuracies.
        format: ``"qonnx"`` or ``"onnx"``.
        regression: The outputs are values (``loss="mse"``), not logits: compare them
            numerically instead of by argmax agreement.

    Returns:
        Argmax agreement, both accuracies (with ``labels``) and the largest output difference
        (for a regression, the largest difference, absolute and relative, only). For QDQ
        (``"onnx"``) also the same with onnxruntime's graph optimizations off
        (``exact_agreement``, ``exact_max_abs_diff``): the exported graph's exact meaning,
        which tells an export error from the optimized kernels' rounding.
    """
    outputs = run_exported(exported, inputs, format=format)
    reference = reference_outputs(qmodel, inputs)
    label_array = labels.detach().cpu().numpy() if labels is not None else None
    check = compare_outputs(
        _RUNTIMES[format], outputs, reference, label_array, regression=regression
    )
    if format != "onnx":
        return check
    import onnx

    proto = exported if isinstance(exported, onnx.ModelProto) else onnx.load(os.fspath(exported))
    array = inputs.detach().cpu().numpy()
    exact = compare_outputs(
        _RUNTIMES[format],
        run_onnxruntime(proto, array, optimized=False),
        reference,
        regression=regression,
    )
    return dataclasses.replace(
        check, exact_agreement=exact.agreement, exact_max_abs_diff=exact.max_abs_diff
    )


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
        import qonnx  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the export extra: {_EXTRA_HINT} ({exc}).") from None


__all__ = [
    "FORMATS",
    "ExportCheck",
    "ExportError",
    "HLSModel",
    "check_export",
    "check_format",
    "compare_outputs",
    "compile_hls4ml",
    "export_model",
    "fixed_point_type",
    "hls4ml_config",
    "hls4ml_layer_name",
    "reference_outputs",
    "run_exported",
    "to_onnx",
]
