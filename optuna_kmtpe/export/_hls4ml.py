"""hls4ml: the per-layer precision config, and a bit-accurate C simulation of the QONNX export.

hls4ml represents numbers as ``ap_fixed<W, I>`` (``W`` bits, ``I`` of them integer bits,
sign included), i.e. integers times ``2^-(W - I)``. A quantizer with a power-of-two scale
``2^k`` and no zero point is exactly ``ap_fixed<b, b + k>`` (``ap_ufixed`` when unsigned); any
other scale needs a separate rescaling layer in hls4ml, so the config then gives the integer
type ``ap_fixed<b, b>`` and the scale next to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from optuna_kmtpe.export._graph import COMPUTE_OPS
from optuna_kmtpe.export._graph import quantized_layers
from optuna_kmtpe.quant import QuantizerParams


DEFAULT_PRECISION = "fixed<32,16>"
"""Precision of everything the config does not set (BatchNorm, accumulators, biases)."""


def hls4ml_layer_name(path: str) -> str:
    """hls4ml's name of a layer (C++ identifiers: dots become underscores)."""
    return path.replace(".", "_")


def fixed_point_type(params: QuantizerParams) -> str | None:
    """The ``ap_fixed`` type that holds a quantizer's values exactly, or ``None`` when its scale
    is not one power of two (per-channel scales must all be equal) or its zero point is not 0.

    Example:
        >>> import torch
        >>> fixed_point_type(QuantizerParams(4, torch.tensor(0.125), torch.tensor(0.0), True))
        'fixed<4,1>'
        >>> fixed_point_type(QuantizerParams(6, torch.tensor(0.25), torch.tensor(0.0), False))
        'ufixed<6,4>'
    """
    scale = params.scale.reshape(-1)
    if not bool((scale == scale[0]).all()) or bool(params.zero_point.ne(0).any()):
        return None
    exponent = math.log2(float(scale[0]))
    if exponent != round(exponent):
        return None
    if params.binary:
        return f"fixed<2,{2 + int(exponent)}>"  # {-1, +1} * 2^k needs a sign and one bit
    integer_bits = params.bits + int(exponent)
    return f"{'fixed' if params.signed else 'ufixed'}<{params.bits},{integer_bits}>"


def hls4ml_config(
    qmodel: nn.Module, *, default_precision: str = DEFAULT_PRECISION, reuse_factor: int = 1
) -> dict[str, Any]:
    """The per-layer precision config of a quantized model, in hls4ml's ``hls_config`` format
    (``{"Model": {...}, "LayerName": {name: {"Precision": {...}}}}``).

    Each quantized layer gets ``Precision.weight`` (weights) and, under the name of its input
    quantizer node (``<layer>_input_quant``), ``Precision.result`` (its input activations), as
    exact ``ap_fixed`` types when the scales are powers of two; otherwise integer types with
    the scale in ``"Scale"`` (hls4ml then inserts a rescaling layer). ``"kmtpe"`` records the
    bit-widths, scales and zero points for reference.

    Example:
        >>> from optuna_kmtpe.config import QuantConfig
        >>> from optuna_kmtpe.models import MLP
        >>> from optuna_kmtpe.quant import apply_config
        >>> config = QuantConfig.uniform(["net.1"], weight_bits=4, act_bits=8)
        >>> qmodel = apply_config(MLP(), config, quantizer="power_of_two")
        >>> hls4ml_config(qmodel)["LayerName"]["net_1"]["Precision"]["weight"][:6]
        'fixed<'
    """
    layers: dict[str, Any] = {}
    for path, params in quantized_layers(qmodel).items():
        name = hls4ml_layer_name(path)
        summary: dict[str, Any] = {"path": path}
        if params.weight is not None:
            exact = fixed_point_type(params.weight)
            precision = exact or f"fixed<{params.weight.bits},{params.weight.bits}>"
            layers[name] = {"Precision": {"weight": precision}, "ReuseFactor": reuse_factor}
            summary["weight"] = _describe(params.weight, exact is not None)
            if exact is None:
                layers[name]["Scale"] = params.weight.scale.reshape(-1).tolist()
        if params.input is not None:
            exact = fixed_point_type(params.input)
            bits = params.input.bits + (0 if params.input.zero_point.eq(0).all() else 1)
            integer = f"{'fixed' if params.input.signed or bits > params.input.bits else 'ufixed'}"
            precision = exact or f"{integer}<{bits},{bits}>"
            layers[f"{name}_input_quant"] = {"Precision": {"result": precision}}
            summary["input"] = _describe(params.input, exact is not None)
        layers.setdefault(name, {})["kmtpe"] = summary
    return {
        "Model": {
            "Precision": {"default": default_precision},
            "ReuseFactor": reuse_factor,
            "Strategy": "Latency",
        },
        "LayerName": layers,
    }


def _describe(params: QuantizerParams, exact: bool) -> dict[str, Any]:
    return {
        "bits": params.bits,
        "signed": params.signed,
        "scale": params.scale.reshape(-1).tolist(),
        "zero_point": params.zero_point.reshape(-1).tolist(),
        "exact_fixed_point": exact,
    }


@dataclasses.dataclass(frozen=True)
class HLSModel:
    """A compiled hls4ml model (C simulation) and how its inputs are laid out."""

    model: Any
    channels_last: bool

    def predict(self, inputs: torch.Tensor | np.ndarray) -> np.ndarray:
        """Bit-accurate C simulation of the inputs (NCHW/NCL in, as for the torch model)."""
        array = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else inputs
        array = np.asarray(array, dtype=np.float32)
        if self.channels_last and array.ndim > 2:
            array = np.moveaxis(array, 1, -1)
        outputs = self.model.predict(np.ascontiguousarray(array.reshape(len(array), -1)))
        return np.asarray(outputs).reshape(len(array), -1)


def compile_hls4ml(
    qonnx_model: Any,
    output_dir: str | os.PathLike[str],
    *,
    precision: str = DEFAULT_PRECISION,
    backend: str = "Vitis",
) -> HLSModel:
    """Convert a QONNX export with hls4ml and compile its C simulation (needs ``g++``).

    The model goes through qonnx's preprocessing that hls4ml documents (constant folding,
    channels-last, Gemm to MatMul), keeping our layer names. hls4ml reads the bit-widths from
    the ``Quant`` nodes itself; ``precision`` applies to what they do not fix (accumulators,
    BatchNorm, biases).

    Raises:
        ImportError: hls4ml is not installed.
        RuntimeError: hls4ml cannot convert or compile the model (its message, one line).
    """
    try:
        import hls4ml
    except ImportError as exc:
        raise ImportError(f"hls4ml is not installed: pip install hls4ml ({exc}).") from None
    wrapper = _preprocess(qonnx_model)
    channels_last = any(n.op_type == "Transpose" for n in wrapper.graph.node) or any(
        len(t.type.tensor_type.shape.dim) > 2 for t in wrapper.graph.input
    )
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            config = hls4ml.utils.config.config_from_onnx_model(
                wrapper, granularity="name", backend=backend, default_precision=precision
            )
            model = hls4ml.converters.convert_from_onnx_model(
                wrapper,
                output_dir=os.fspath(output_dir),
                io_type="io_parallel",
                backend=backend,
                hls_config=config,
            )
            model.compile()
    except Exception as exc:  # hls4ml raises bare Exceptions for unsupported graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"hls4ml could not convert or compile the model: {first}") from exc
    return HLSModel(model=model, channels_last=channels_last)


def _preprocess(qonnx_model: Any) -> Any:
    """qonnx's cleanup, channels-last and Gemm-to-MatMul passes (the preprocessing hls4ml
    documents for QONNX). The cleanup renames every node; the compute nodes keep their order,
    so they get their layer names back (hls4ml names its layers after the nodes)."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    proto = qonnx_model if isinstance(qonnx_model, onnx.ModelProto) else onnx.load(qonnx_model)
    names = [n.name for n in proto.graph.node if n.op_type in COMPUTE_OPS]
    wrapper = cleanup_model(ModelWrapper(proto.SerializeToString()))
    wrapper = wrapper.transform(ConvertToChannelsLastAndClean())
    wrapper = wrapper.transform(GemmToMatMul())
    wrapper = cleanup_model(wrapper)
    nodes = [n for n in wrapper.graph.node if n.op_type in COMPUTE_OPS]
    if len(nodes) == len(names):
        for node, name in zip(nodes, names):
            node.name = hls4ml_layer_name(name)
    return wrapper
