"""Activation-range calibration and BatchNorm re-estimation for quantized models."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
import contextlib
import itertools
from typing import Any
from typing import Literal

import torch
from torch import nn

from optuna_kmtpe.quant._apply import activation_quantizers
from optuna_kmtpe.quant._device import batches_on
from optuna_kmtpe.quant._device import model_device


CalibrationMethod = Literal["minmax", "percentile"]


def calibrate(
    qmodel: nn.Module,
    loader: Iterable[Any],
    *,
    method: CalibrationMethod = "minmax",
    num_batches: int | None = 8,
    percentile: float | None = None,
) -> None:
    """Set every activation quantizer's range from a few batches of data (in place).

    The model runs in eval mode without gradients; while a quantizer observes, its input passes
    through unquantized, so each range is measured on the activations the layer would see in
    float (with quantized weights upstream). The train/eval mode is restored afterwards, and
    during QAT the ranges keep moving as exponential moving averages.

    Args:
        qmodel: A model returned by :func:`~optuna_kmtpe.quant.apply_config`.
        loader: Batches ``(inputs, targets)`` or inputs.
        method: ``"minmax"`` (the extreme values seen) or ``"percentile"`` (per batch, the
            ``percentile``-th and ``(100 - percentile)``-th values, averaged over batches;
            robust to outliers).
        num_batches: How many batches to use (``None``: the whole loader).
        percentile: Overrides each quantizer's percentile (default 99.99).

    Raises:
        ValueError: Unknown method, ``num_batches < 1``, an empty loader, or a model without
            activation quantizers.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.config import QuantConfig
        >>> from optuna_kmtpe.models import MLP
        >>> from optuna_kmtpe.quant import apply_config
        >>> qmodel = apply_config(MLP(), QuantConfig.uniform(["net.1", "net.3", "net.5"]))
        >>> calibrate(qmodel, [torch.rand(16, 1, 8, 8)], num_batches=1)
        >>> float(qmodel.net[1].input_quantizer.max_val) <= 1.0
        True
    """
    if method not in ("minmax", "percentile"):
        raise ValueError(f"method must be 'minmax' or 'percentile', got {method!r}.")
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be >= 1 or None, got {num_batches}.")
    quantizers = [q for q in activation_quantizers(qmodel).values() if q.enabled]
    if not quantizers:
        if not activation_quantizers(qmodel):
            raise ValueError(
                "The model has no activation quantizer: pass a model returned by apply_config "
                "with act_bits below 16 for some layer."
            )
        return
    if percentile is not None:
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}.")
        for quantizer in quantizers:
            quantizer.percentile = percentile
    seen = 0
    with _eval_mode(qmodel), torch.no_grad():
        for quantizer in quantizers:
            quantizer.start_observing(method)
        try:
            for inputs in _limited(batches_on(loader, model_device(qmodel)), num_batches):
                qmodel(inputs)
                seen += 1
        finally:
            for quantizer in quantizers:
                quantizer.stop_observing()
    if seen == 0:
        raise ValueError("calibrate got an empty loader; pass at least one batch.")


def recalibrate_batchnorm(
    model: nn.Module, loader: Iterable[Any], *, num_batches: int | None = 8
) -> None:
    """Re-estimate BatchNorm running statistics on data (in place), without training.

    Quantizing weights or removing channels shifts the statistics each BatchNorm sees; this
    resets them and averages the batch statistics over ``num_batches`` batches (activation
    quantizers pass data through unquantized meanwhile; call :func:`calibrate` afterwards).
    Nothing else changes: no gradient step is taken.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import DigitsCNN
        >>> model = DigitsCNN()
        >>> recalibrate_batchnorm(model, [torch.rand(16, 1, 8, 8)])
        >>> bool(model.features[1].running_mean.abs().sum() > 0), model.training
        (True, True)
    """
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be >= 1 or None, got {num_batches}.")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    quantizers = [q for q in activation_quantizers(model).values() if q.enabled]
    momenta = [bn.momentum for bn in norms]
    saved_ranges = [
        (q.min_val.clone(), q.max_val.clone(), q.initialized.clone()) for q in quantizers
    ]
    with _eval_mode(model):
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches
            bn.train()
        for quantizer in quantizers:
            quantizer.start_observing("minmax")  # pass-through while BN statistics settle
        try:
            with torch.no_grad():
                for inputs in _limited(batches_on(loader, model_device(model)), num_batches):
                    model(inputs)
        finally:
            for bn, momentum in zip(norms, momenta):
                bn.momentum = momentum
            for quantizer, (low, high, initialized) in zip(quantizers, saved_ranges):
                quantizer.stop_observing()
                quantizer.min_val.copy_(low)
                quantizer.max_val.copy_(high)
                quantizer.initialized.copy_(initialized)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    saved = {module: module.training for module in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for module, training in saved.items():
            module.training = training


def _limited(batches: Iterable[torch.Tensor], num_batches: int | None) -> Iterable[torch.Tensor]:
    return batches if num_batches is None else itertools.islice(batches, num_batches)
