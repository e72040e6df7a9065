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
import json
import os
from typing import Any

import torch
from torch import nn

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.quant._apply import applied_config
from optuna_kmtpe.quant._apply import as_quant_config
from optuna_kmtpe.quant._modules import ActivationQuantizer
from optuna_kmtpe.quant._quantizers import is_float_bits
from optuna_kmtpe.quant._quantizers import quantize_weight_to_int


EXPORT_FORMAT = "optuna-kmtpe-quantized/1"


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
    own = applied_config(qmodel)
    if config is None and own is None:
        raise ValueError(
            "export_quantized needs a model returned by apply_config (or pass its config=)."
        )
    cfg = as_quant_config(config) if config is not None else own
    assert cfg is not None
    layers: dict[str, Any] = {}
    for name, layer in quantizable_layers(qmodel).items():
        layers[name] = _export_layer(layer)
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
    weight = layer.weight.detach().cpu()
    if is_float_bits(weight_bits):
        entry["weight"] = weight.tolist()
    else:
        per_channel = bool(getattr(layer, "per_channel", True))
        symmetric = bool(getattr(layer, "symmetric_weights", True))
        q, scale, zero_point = quantize_weight_to_int(
            weight,
            weight_bits,
            per_channel=per_channel,
            symmetric=symmetric,
            range_method=getattr(layer, "range_method", "mse"),
            clip_ratio=_clip_ratio(layer, per_channel),
            power_of_two=bool(getattr(layer, "power_of_two_scales", False)),
        )
        entry.update(
            {
                "weight_int": q.tolist(),
                "weight_scale": _as_list(scale),
                "weight_zero_point": [int(v) for v in _as_list(zero_point)],
                "weight_per_channel": per_channel and weight.dim() > 1,
                "weight_symmetric": symmetric,
            }
        )
    bias = getattr(layer, "bias", None)
    entry["bias"] = bias.detach().cpu().tolist() if bias is not None else None
    quantizer = getattr(layer, "input_quantizer", None)
    if isinstance(quantizer, ActivationQuantizer) and quantizer.enabled:
        scale, zero_point = quantizer.qparams()
        entry.update(
            {
                "input_scale": float(scale),
                "input_zero_point": int(zero_point),
                "input_signed": quantizer.symmetric,
                "input_calibrated": bool(quantizer.initialized),
            }
        )
    return entry


def _clip_ratio(layer: nn.Module, per_channel: bool) -> torch.Tensor | None:
    ratio = getattr(layer, "weight_clip_ratio", None)
    if ratio is None:
        return None
    ratio = ratio.detach().cpu()
    return ratio if per_channel else ratio[:1]


def _as_list(tensor: torch.Tensor) -> list[float]:
    return [float(v) for v in tensor.reshape(-1).tolist()]
