"""Export a quantized model: integer weights, scales and zero points per layer, plus the config.

The export is plain JSON (lists of ints and floats), meant as the hand-off to an accelerator
flow or a later converter (e.g. to QONNX). For each quantizable layer:

* ``weight_int`` (nested lists shaped like the weight) with ``weight_scale`` and
  ``weight_zero_point`` (one per output channel, or one per tensor), so that
  ``weight = scale * (weight_int - zero_point)`` reproduces the fake-quantized weight exactly;
  float layers carry ``weight`` as floats instead;
* ``bias`` as floats (accumulators are wide; the bias folds into the requantization);
* ``input_scale`` / ``input_zero_point`` / ``input_signed`` of the input activation quantizer;
* ``kept_out_channels``: which original output channels remain after width pruning.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import json
import os
from typing import Any

import torch
from torch import nn

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.config import is_float_bits
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.quant._apply import applied_config
from optuna_kmtpe.quant._apply import as_quant_config
from optuna_kmtpe.quant._modules import ActivationQuantizer
from optuna_kmtpe.quant._modules import QuantizedLayerMixin
from optuna_kmtpe.quant._quantizers import integer_range


EXPORT_FORMAT = "optuna-kmtpe-quantized/1"


@dataclasses.dataclass(frozen=True)
class QuantizerParams:
    """One quantizer of a layer: ``value = scale * (q - zero_point)`` with integer ``q``.

    Attributes:
        bits: Bit-width (1..8).
        scale: Shape ``()`` (per tensor) or ``(out_channels,)`` (per channel).
        zero_point: Same shape as ``scale``, integer-valued floats.
        signed: ``q`` in the narrow signed range (1 bit: ``{-1, +1}``, i.e. binary); else
            ``q`` in ``[0, 2^bits - 1]``.
    """

    bits: int
    scale: torch.Tensor
    zero_point: torch.Tensor
    signed: bool

    @property
    def binary(self) -> bool:
        """Two levels ``{-scale, +scale}`` and no zero: 1-bit signed (BinaryConnect)."""
        return self.bits == 1 and self.signed

    @property
    def integer_range(self) -> tuple[int, int]:
        return integer_range(self.bits, signed=self.signed)


@dataclasses.dataclass(frozen=True)
class LayerQuantization:
    """What a quantized layer computes, in integers: its weight and input quantizers.

    Attributes:
        weight: The weight quantizer (``None``: float weights).
        weight_int: Integer weights ``q`` shaped like the weight (``None`` for float weights).
        input: The input activation quantizer (``None``: float inputs).
    """

    weight: QuantizerParams | None
    weight_int: torch.Tensor | None
    input: QuantizerParams | None


def layer_quantization(layer: nn.Module) -> LayerQuantization:
    """The quantizers of one layer of a model returned by :func:`apply_config`, as integers.

    The layer's spec says it (:meth:`QuantizedLayerMixin.integer_weight`), so that
    ``weight.scale * (weight_int - weight.zero_point)`` equals the fake-quantized weight of the
    layer's forward pass in eval mode, bit for bit, whatever the quantizer.

    Example:
        >>> from optuna_kmtpe.config import QuantConfig
        >>> from optuna_kmtpe.models import MLP
        >>> from optuna_kmtpe.quant import apply_config
        >>> qmodel = apply_config(MLP(), QuantConfig.uniform(["net.1"], weight_bits=3))
        >>> params = layer_quantization(qmodel.net[1])
        >>> params.weight.bits, params.weight.integer_range, params.input.signed
        (3, (-3, 3), False)
    """
    weight = weight_int = None
    if isinstance(layer, QuantizedLayerMixin) and not is_float_bits(layer.weight_bits):
        weight_int, scale, zero_point = (t.cpu() for t in layer.integer_weight())
        weight = QuantizerParams(
            bits=layer.weight_bits,
            scale=scale,
            zero_point=zero_point,
            signed=layer.quant_spec.weight_signed(layer.weight_bits),
        )
    quantizer = getattr(layer, "input_quantizer", None)
    inputs = None
    if isinstance(quantizer, ActivationQuantizer) and quantizer.enabled:
        scale, zero_point = quantizer.qparams()
        inputs = QuantizerParams(
            bits=quantizer.bits,
            scale=scale.detach().cpu(),
            zero_point=zero_point.detach().cpu(),
            signed=quantizer.quant_spec.symmetric_acts,
        )
    return LayerQuantization(weight=weight, weight_int=weight_int, input=inputs)


def export_quantized(
    qmodel: nn.Module, config: QuantConfig | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-able description of a quantized model's integer weights and quantizer parameters.

    Args:
        qmodel: A model returned by :func:`~optuna_kmtpe.quant.apply_config` (then fine-tuned
            or calibrated).
        config: The config to record; defaults to the one ``apply_config`` stored on the model.

    Returns:
        ``{"format", "config", "layers": {path: {...}}}``; see the module docstring.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.config import QuantConfig
        >>> from optuna_kmtpe.models import MLP
        >>> from optuna_kmtpe.quant import apply_config
        >>> config = QuantConfig.uniform(["net.1", "net.3", "net.5"], weight_bits=3)
        >>> qmodel = apply_config(MLP(), config)
        >>> layer = export_quantized(qmodel)["layers"]["net.1"]
        >>> layer["weight_bits"], max(max(abs(v) for v in row) for row in layer["weight_int"])
        (3, 3)
    """
    cfg = as_quant_config(config) if config is not None else applied_config(qmodel)
    if cfg is None:
        raise ValueError(
            "export_quantized needs a model returned by apply_config (or pass its config=)."
        )
    layers = {name: _export_layer(layer) for name, layer in quantizable_layers(qmodel).items()}
    return {"format": EXPORT_FORMAT, "config": cfg.to_dict(), "layers": layers}


def save_quantized(
    qmodel: nn.Module,
    path: str | os.PathLike[str],
    config: QuantConfig | Mapping[str, Any] | None = None,
) -> None:
    """Write :func:`export_quantized` to ``path`` as JSON.

    Example:
        >>> import tempfile, os
        >>> from optuna_kmtpe.config import QuantConfig
        >>> from optuna_kmtpe.models import MLP
        >>> from optuna_kmtpe.quant import apply_config
        >>> qmodel = apply_config(MLP(), QuantConfig.uniform(["net.1"], weight_bits=4))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_quantized(qmodel, os.path.join(d, "model.json"))
        ...     os.path.getsize(os.path.join(d, "model.json")) > 0
        True
    """
    data = export_quantized(qmodel, config)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def _export_layer(layer: nn.Module) -> dict[str, Any]:
    weight_bits = int(getattr(layer, "weight_bits", 32))
    entry: dict[str, Any] = {
        "type": type(layer).__name__,
        "weight_bits": weight_bits,
        "act_bits": int(getattr(layer, "act_bits", 32)),
        "weight_shape": list(layer.weight.shape),
        "kept_out_channels": getattr(layer, "kept_out_channels", None),
    }
    for attr in ("stride", "padding", "dilation", "groups"):
        if hasattr(layer, attr):
            value = getattr(layer, attr)
            entry[attr] = list(value) if isinstance(value, tuple) else value
    params = layer_quantization(layer)
    if params.weight is None or params.weight_int is None:
        entry["weight"] = layer.weight.detach().cpu().tolist()
    else:
        entry.update(
            {
                "weight_int": params.weight_int.tolist(),
                "weight_scale": _as_list(params.weight.scale),
                "weight_zero_point": [int(v) for v in _as_list(params.weight.zero_point)],
                "weight_per_channel": params.weight.scale.dim() > 0,
                "weight_symmetric": layer.quant_spec.symmetric_weights,
                "weight_power_of_two": layer.quant_spec.power_of_two,
                "weight_quantizer": layer.quant_spec.name,
            }
        )
    bias = getattr(layer, "bias", None)
    entry["bias"] = bias.detach().cpu().tolist() if bias is not None else None
    if params.input is not None:
        entry.update(
            {
                "input_scale": float(params.input.scale),
                "input_zero_point": int(params.input.zero_point),
                "input_signed": params.input.signed,
                "input_calibrated": bool(layer.input_quantizer.initialized),
            }
        )
    return entry


def _as_list(tensor: torch.Tensor) -> list[float]:
    return [float(v) for v in tensor.reshape(-1).tolist()]
