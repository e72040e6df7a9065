"""Build QONNX and ONNX QDQ graphs of a quantized model.

One path for both formats: the quantized model's *float twin* (every quantized layer replaced by
the plain torch layer holding its fake-quantized weights, pruned channels already gone) is
exported by ``torch.onnx`` and constant-folded without fusions (a fused BatchNorm would change
the quantized weights), then each quantized layer gets its quantizers back as graph nodes, from
:func:`optuna_kmtpe.quant.layer_quantization`:

* QONNX: a ``Quant`` node (``BipolarQuant`` for binary weights) on the weight initializer and
  one on the layer's data input, carrying scale, zero point and bit-width;
* QDQ: integer weights (int8/uint8 initializers) into ``DequantizeLinear``, and
  ``QuantizeLinear -> Clip -> DequantizeLinear`` on the input; the ``Clip`` narrows the 8-bit
  integer type to the layer's range (below 8 bits, and the narrow signed range at 8).

The graph's compute node of each layer is named by the layer's module path, so the exported
file, the hls4ml config and the search's config speak of the same layers.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
import warnings

import numpy as np
import torch
from torch import nn

from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.quant import LayerQuantization
from optuna_kmtpe.quant import QuantizerParams
from optuna_kmtpe.quant import applied_config
from optuna_kmtpe.quant import layer_quantization


if TYPE_CHECKING:
    import onnx


GraphStyle = Literal["qonnx", "qdq"]

QONNX_DOMAIN = "qonnx.custom_op.general"
OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")
"""The ONNX ops of a quantizable layer's computation (named after the layer in the export)."""
_PASS_THROUGH_OPS = ("Transpose", "Reshape", "Identity")


class ExportError(ValueError):
    """A model or config the requested format cannot express (the message names the layer)."""


def quantized_layers(qmodel: nn.Module) -> dict[str, LayerQuantization]:
    """Each quantizable layer's quantizers (float layers included, with ``None`` quantizers)."""
    if applied_config(qmodel) is None:
        raise ExportError(
            "Export needs a model returned by optuna_kmtpe.quant.apply_config (then calibrated "
            "or fine-tuned); got a plain model."
        )
    return {name: layer_quantization(layer) for name, layer in quantizable_layers(qmodel).items()}


def check_qdq(layers: dict[str, LayerQuantization]) -> None:
    """Raise :class:`ExportError` naming the first layer QuantizeLinear cannot express."""
    for name, params in layers.items():
        if params.input is not None and params.input.binary:
            raise ExportError(
                f"Layer {name!r} has 1-bit signed (binary) input activations, which "
                "QuantizeLinear cannot express (it always has a zero level); export it as "
                "--format qonnx (BipolarQuant) or give the layer 2+ activation bits."
            )


def build_graph(
    qmodel: nn.Module, example_input: torch.Tensor, *, style: GraphStyle
) -> onnx.ModelProto:
    """The QONNX or QDQ graph of ``qmodel`` for inputs shaped like one sample of
    ``example_input`` (batch size 1, the form FINN and hls4ml read).

    Raises:
        ExportError: The model is not a quantized model, ``torch.onnx`` cannot export it, a
            layer cannot be found in the exported graph, or (QDQ) a layer's quantizers are not
            expressible.
    """
    import onnx

    layers = quantized_layers(qmodel)
    if style == "qdq":
        check_qdq(layers)
    model = _export_float_twin(qmodel, example_input[:1])
    graph = model.graph
    _use_global_pooling(graph, rank=example_input.dim())
    initializers = {init.name: init for init in graph.initializer}
    twin_weights = {name: onnx.numpy_helper.to_array(initializers[f"{name}.weight"]) for name
                    in layers if f"{name}.weight" in initializers}  # fmt: skip
    new_nodes: dict[int, list[onnx.NodeProto]] = {}  # compute-node index -> nodes before it
    for name, params in layers.items():
        weight_name = f"{name}.weight"
        if weight_name not in initializers:
            raise ExportError(
                f"Layer {name!r}: its weight {weight_name!r} is not an initializer of the "
                "exported graph (torch.onnx folded or renamed it); this model cannot be exported "
                "layer by layer."
            )
        index = _compute_node(graph, weight_name, name)
        node = graph.node[index]
        node.name = name
        before = new_nodes.setdefault(index, [])
        if params.weight is not None:
            assert params.weight_int is not None
            _check_twin_weight(name, twin_weights[name], params)
            before += _quantize_weight(graph, node, weight_name, params, style=style)
        if params.input is not None:
            before += _quantize_input(graph, node, name, params.input, style=style)
    nodes = list(graph.node)
    del graph.node[:]
    for index, node in enumerate(nodes):
        graph.node.extend(new_nodes.get(index, []))
        graph.node.append(node)
    if style == "qonnx":
        model.opset_import.append(onnx.helper.make_opsetid(QONNX_DOMAIN, 1))
    model.producer_name = "optuna-kmtpe"
    return _infer_shapes(model)


def _export_float_twin(qmodel: nn.Module, example_input: torch.Tensor) -> onnx.ModelProto:
    import onnx_ir
    import onnxscript.optimizer

    twin = _float_twin(qmodel).eval().cpu()
    # torch.onnx logs a warning per missing torchvision op and prints its progress: noise here.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                twin,
                (example_input.detach().cpu(),),
                dynamo=True,
                optimize=False,  # the default optimizer fuses BatchNorm into the weights
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                verbose=False,
            )
    except Exception as exc:  # torch.onnx raises many types; one clear line for the user
        raise ExportError(f"torch.onnx could not export the model: {exc}".splitlines()[0]) from exc
    finally:
        logger.setLevel(level)
    assert program is not None
    onnxscript.optimizer.fold_constants(program.model)
    onnxscript.optimizer.remove_unused_nodes(program.model)
    return onnx_ir.serde.serialize_model(program.model)


def _use_global_pooling(graph: onnx.GraphProto, *, rank: int) -> None:
    """``ReduceMean`` over every spatial axis, dims kept (what adaptive average pooling to 1
    exports to) becomes the equivalent ``GlobalAveragePool``, which hls4ml and FINN read."""
    from onnx import numpy_helper

    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    spatial = set(range(2, rank))
    for node in graph.node:
        if node.op_type != "ReduceMean" or len(node.input) < 2 or not spatial:
            continue
        axes = constants.get(node.input[1])
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        if axes is None or keepdims != 1:
            continue
        if {int(a) % rank for a in axes.reshape(-1)} != spatial:
            continue
        del node.input[1:]
        del node.attribute[:]
        node.op_type = "GlobalAveragePool"


def _float_twin(qmodel: nn.Module) -> nn.Module:
    """A copy of ``qmodel`` whose quantized layers are plain torch layers holding the
    fake-quantized weights (what the forward pass computes with in eval mode)."""
    twin = copy.deepcopy(qmodel)
    for name, layer in quantizable_layers(twin).items():
        if not hasattr(layer, "quantized_weight"):
            continue
        was_training = layer.training
        layer.eval()
        with torch.no_grad():
            weight = layer.quantized_weight().detach().clone()
        layer.train(was_training)
        plain = _plain_layer(layer)
        plain.weight = nn.Parameter(weight, requires_grad=False)
        if layer.bias is not None:
            plain.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        parent_path, _, child = name.rpartition(".")
        parent = twin.get_submodule(parent_path) if parent_path else twin
        setattr(parent, child, plain)
    return twin


def _plain_layer(layer: nn.Module) -> nn.Module:
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, layer.out_features, bias=bias)
    cls = nn.Conv1d if isinstance(layer, nn.Conv1d) else nn.Conv2d
    return cls(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=bias,
        padding_mode=layer.padding_mode,
    )


def _compute_node(graph: onnx.GraphProto, weight_name: str, layer: str) -> int:
    """Index of the Conv/Gemm/MatMul node that reads ``weight_name`` (maybe via a Transpose)."""
    wanted = {weight_name}
    for _ in range(4):
        readers = [(i, n) for i, n in enumerate(graph.node) if wanted & set(n.input)]
        for index, node in readers:
            if node.op_type in COMPUTE_OPS:
                return index
        wanted = {out for _, n in readers if n.op_type in _PASS_THROUGH_OPS for out in n.output}
        if not wanted:
            break
    raise ExportError(
        f"Layer {layer!r}: no Conv/Gemm/MatMul node reads its weight in the exported graph."
    )


def _check_twin_weight(name: str, twin: np.ndarray, params: LayerQuantization) -> None:
    """The exported weight must be the integer weights times their scale (catches any change
    between the forward pass and the integer description)."""
    weight, q = params.weight, params.weight_int
    assert weight is not None and q is not None
    shape = (-1,) + (1,) * (q.dim() - 1) if weight.scale.dim() else ()
    dequantized = (q.float() - weight.zero_point.reshape(shape)) * weight.scale.reshape(shape)
    if not np.array_equal(twin, dequantized.numpy()):  # binary too: q = +-1, zero point 0
        raise ExportError(
            f"Layer {name!r}: the forward pass's weights differ from scale * (q - zero_point); "
            "the quantizer state is inconsistent (was the model changed after calibration?)."
        )


def _quantize_weight(
    graph: onnx.GraphProto,
    node: onnx.NodeProto,
    weight_name: str,
    params: LayerQuantization,
    *,
    style: GraphStyle,
) -> list[onnx.NodeProto]:
    from onnx import helper

    weight, q = params.weight, params.weight_int
    assert weight is not None and q is not None
    layer = node.name
    per_channel = weight.scale.dim() > 0
    broadcast = (-1,) + (1,) * (q.dim() - 1) if per_channel else ()
    output = f"{layer}.weight_quant"
    if style == "qonnx":
        nodes = _qonnx_quant(graph, weight_name, output, weight, layer, "weight", broadcast)
    else:
        dtype = np.int8 if weight.signed else np.uint8
        _replace_initializer(graph, weight_name, q.numpy().astype(dtype), f"{layer}.weight_int")
        scale = _add_initializer(graph, f"{layer}.weight_scale", weight.scale)
        zero_point = _add_initializer(
            graph, f"{layer}.weight_zero_point", weight.zero_point.numpy().astype(dtype)
        )
        attrs = {"axis": 0} if per_channel else {}
        nodes = [
            helper.make_node(
                "DequantizeLinear",
                [f"{layer}.weight_int", scale, zero_point],
                [output],
                name=f"{layer}.weight_dequant",
                **attrs,
            )
        ]
    _rewire(graph, weight_name, output, skip=nodes)
    return nodes


def _quantize_input(
    graph: onnx.GraphProto,
    node: onnx.NodeProto,
    layer: str,
    params: QuantizerParams,
    *,
    style: GraphStyle,
) -> list[onnx.NodeProto]:
    from onnx import helper

    data = node.input[0]  # Conv, Gemm and MatMul read their data first
    output = f"{layer}.input_quant"
    if style == "qonnx":
        nodes = _qonnx_quant(graph, data, output, params, layer, "input")
    else:
        dtype = np.int8 if params.signed else np.uint8
        scale = _add_initializer(graph, f"{layer}.input_scale", params.scale)
        zero_point = _add_initializer(
            graph, f"{layer}.input_zero_point", params.zero_point.numpy().astype(dtype)
        )
        quantized = f"{layer}.input_int"
        nodes = [
            helper.make_node(
                "QuantizeLinear",
                [data, scale, zero_point],
                [quantized],
                name=f"{layer}.input_quantize",
            )
        ]
        q_min, q_max = params.integer_range
        info = np.iinfo(dtype)
        if (q_min, q_max) != (info.min, info.max):
            low = _add_initializer(graph, f"{layer}.input_min", np.array(q_min, dtype=dtype))
            high = _add_initializer(graph, f"{layer}.input_max", np.array(q_max, dtype=dtype))
            nodes.append(
                helper.make_node(
                    "Clip",
                    [quantized, low, high],
                    [f"{layer}.input_clipped"],
                    name=f"{layer}.input_clip",
                )
            )
            quantized = f"{layer}.input_clipped"
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [quantized, scale, zero_point],
                [output],
                name=f"{layer}.input_dequantize",
            )
        )
    node.input[0] = output
    return nodes


def _qonnx_quant(
    graph: onnx.GraphProto,
    source: str,
    output: str,
    params: QuantizerParams,
    layer: str,
    what: str,
    shape: tuple[int, ...] | None = None,
) -> list[onnx.NodeProto]:
    """QONNX's ``Quant`` (or ``BipolarQuant`` for binary) node of one weight or input tensor.

    ``shape`` reshapes per-channel scales and zero points to broadcast against the tensor.
    """
    from onnx import helper

    def shaped(value: torch.Tensor) -> torch.Tensor:
        return value.reshape(shape) if shape is not None else value

    scale = _add_initializer(graph, f"{layer}.{what}_scale", shaped(params.scale))
    name = f"{layer}.{what}_quant"
    if params.binary:
        return [
            helper.make_node(
                "BipolarQuant", [source, scale], [output], name=name, domain=QONNX_DOMAIN
            )
        ]
    zero_point = _add_initializer(graph, f"{layer}.{what}_zero_point", shaped(params.zero_point))
    bits = _add_initializer(graph, f"{layer}.{what}_bits", torch.tensor(params.bits))
    return [
        helper.make_node(
            "Quant",
            [source, scale, zero_point, bits],
            [output],
            name=name,
            domain=QONNX_DOMAIN,
            signed=int(params.signed),
            narrow=int(params.signed),  # signed ranges are narrow, unsigned ones full
            rounding_mode="ROUND",  # half to even, as torch.round
        )
    ]


def _add_initializer(graph: onnx.GraphProto, name: str, value: Any) -> str:
    from onnx import numpy_helper

    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    graph.initializer.append(numpy_helper.from_array(np.asarray(array), name=name))
    return name


def _replace_initializer(graph: onnx.GraphProto, old: str, value: np.ndarray, new: str) -> None:
    for index, init in enumerate(graph.initializer):
        if init.name == old:
            del graph.initializer[index]
            break
    _add_initializer(graph, new, value)


def _rewire(graph: onnx.GraphProto, old: str, new: str, *, skip: list[onnx.NodeProto]) -> None:
    skipped = {id(n) for n in skip}
    for node in graph.node:
        if id(node) in skipped:
            continue
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shapes of every tensor (hls4ml and qonnx's executor read them from value_info)."""
    import onnx

    # Quant/BipolarQuant keep their input's shape: infer on a copy where they are Identity.
    probe = copy.deepcopy(model)
    for node in probe.graph.node:
        if node.domain == QONNX_DOMAIN:
            del node.input[1:]
            node.op_type, node.domain = "Identity", ""
            del node.attribute[:]
    inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    return model
