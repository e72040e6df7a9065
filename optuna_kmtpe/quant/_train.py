"""Training and evaluation loops: float pre-training, QAT fine-tuning, PTQ, accuracy.

Every loop works on a copy of the model it is given (the caller's model never changes), seeds
its own random state without touching the global generators, uses a cosine learning-rate
schedule per step, and shows a tqdm progress bar unless ``progress=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
import copy
import math
from typing import Any
from typing import Literal

import torch
from torch import nn

from optuna_kmtpe._progress import progress_bar
from optuna_kmtpe.config import DEFAULT_LOSS
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.quant._apply import apply_config
from optuna_kmtpe.quant._calibration import CalibrationMethod
from optuna_kmtpe.quant._calibration import calibrate
from optuna_kmtpe.quant._calibration import recalibrate_batchnorm
from optuna_kmtpe.quant._device import model_device
from optuna_kmtpe.quant._device import resolve_device
from optuna_kmtpe.quant._device import split_batch
from optuna_kmtpe.quant._loss import make_criterion
from optuna_kmtpe.quant._modules import QuantizedLayerMixin


OptimizerName = Literal["sgd", "adam"]
EpochCallback = Callable[[int, nn.Module], None]


def train_float(
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    epochs: int = 30,
    lr: float = 0.1,
    optimizer: OptimizerName = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    loss: str = DEFAULT_LOSS,
    seed: int = 0,
    callback: EpochCallback | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> nn.Module:
    """Train a float copy of ``model`` (the checkpoint QAT starts from).

    Args:
        model: The model; it is copied, never changed.
        train_loader: Batches ``(inputs, targets)``.
        epochs: Passes over ``train_loader``.
        lr: Peak learning rate (cosine decay to 0 over all steps).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        loss: ``"cross_entropy"`` (class-index targets, the default) or ``"mse"`` (float
            targets; see :data:`~optuna_kmtpe.quant.LOSSES`).
        seed: Seeds dropout and any other randomness inside the loop.
        callback: Called as ``callback(epoch, model)`` after each epoch (0-based).
        device: ``None`` picks CUDA when available, else CPU.
        progress: Show a progress bar.

    Returns:
        The trained copy, in eval mode, on ``device``.

    Example:
        >>> from optuna_kmtpe.data import load_digits, make_loader
        >>> from optuna_kmtpe.models import DigitsCNN
        >>> splits = load_digits()
        >>> loader = make_loader(splits.train, batch_size=64, shuffle=True)
        >>> trained = train_float(DigitsCNN(), loader, epochs=2, progress=False)
        >>> evaluate(trained, make_loader(splits.test)) > 0.5
        True
    """
    trained = copy.deepcopy(model).to(resolve_device(device))
    _fit(
        trained,
        train_loader,
        epochs=epochs,
        steps=None,
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=weight_decay,
        loss=loss,
        seed=seed,
        callback=callback,
        progress=progress,
        description="float training",
    )
    return trained.eval()


def qat_finetune(
    qmodel: nn.Module,
    train_loader: Iterable[Any],
    *,
    epochs: int | None = None,
    steps: int | None = None,
    lr: float = 0.01,
    optimizer: OptimizerName = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    loss: str = DEFAULT_LOSS,
    seed: int = 0,
    callback: EpochCallback | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> nn.Module:
    """Quantization-aware fine-tuning of a copy of a quantized model.

    Weights are fake-quantized in every forward pass with the straight-through estimator, and
    activation ranges follow exponential moving averages (calibrate first for a better start;
    an uncalibrated quantizer takes its first batch's range).

    Args:
        qmodel: A model returned by :func:`~optuna_kmtpe.quant.apply_config`, normally from a
            trained float model. It is copied, never changed.
        train_loader: Batches ``(inputs, targets)``.
        epochs: Passes over ``train_loader``; give exactly one of ``epochs`` and ``steps``.
        steps: Optimizer steps (the loader is cycled); an "epoch" for the callback is one pass.
        lr: Peak learning rate (cosine decay to 0).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: L2 penalty (0 by default: fine-tuning a trained model).
        loss: ``"cross_entropy"`` (class-index targets, the default) or ``"mse"`` (float
            targets; see :data:`~optuna_kmtpe.quant.LOSSES`).
        seed: Seeds the randomness inside the loop.
        callback: ``callback(epoch, model)`` after each epoch, e.g. to report a validation
            accuracy to an Optuna trial; exceptions (``optuna.TrialPruned``) propagate.
        device: ``None`` picks CUDA when available, else CPU.
        progress: Show a progress bar.

    Returns:
        The fine-tuned copy, in eval mode.

    Example:
        >>> from optuna_kmtpe.config import QuantConfig
        >>> from optuna_kmtpe.data import load_digits, make_loader
        >>> from optuna_kmtpe.models import MLP
        >>> from optuna_kmtpe.quant import apply_config
        >>> splits = load_digits()
        >>> qmodel = apply_config(MLP(), QuantConfig.uniform(["net.1", "net.3", "net.5"]))
        >>> tuned = qat_finetune(qmodel, make_loader(splits.train), steps=5, progress=False)
        >>> 0.0 <= evaluate(tuned, make_loader(splits.test)) <= 1.0
        True
    """
    if (epochs is None) == (steps is None):
        raise ValueError("Give exactly one of epochs= or steps= to qat_finetune.")
    tuned = copy.deepcopy(qmodel).to(resolve_device(device))
    _fit(
        tuned,
        train_loader,
        epochs=epochs,
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=weight_decay,
        loss=loss,
        seed=seed,
        callback=callback,
        progress=progress,
        description="QAT",
    )
    for module in tuned.modules():
        if isinstance(module, QuantizedLayerMixin):
            module.refresh_weight_range()  # final weights get their own clipping range
    return tuned.eval()


def evaluate(
    model: nn.Module, loader: Iterable[Any], *, device: str | torch.device | None = None
) -> float:
    """Top-1 accuracy in ``[0, 1]`` over ``loader``; the model's train/eval mode is restored.

    Args:
        model: A classifier returning logits.
        loader: Batches ``(inputs, targets)``.
        device: Where to run; ``None`` keeps the model where it is.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> 0.0 <= evaluate(model, [(torch.rand(8, 4), torch.zeros(8, dtype=torch.long))]) <= 1
        True
    """
    target_device = model_device(model) if device is None else torch.device(device)
    if target_device != model_device(model):
        model = copy.deepcopy(model).to(target_device)
    saved = {module: module.training for module in model.modules()}
    correct = 0
    total = 0
    try:
        model.eval()
        with torch.no_grad():
            for batch in loader:
                inputs, targets = split_batch(batch)
                if targets is None:
                    raise ValueError("evaluate needs (inputs, targets) batches.")
                logits = model(inputs.to(target_device))
                correct += int((logits.argmax(dim=1) == targets.to(target_device)).sum())
                total += int(targets.numel())
    finally:
        for module, training in saved.items():
            module.training = training
    if total == 0:
        raise ValueError("evaluate got an empty loader.")
    return correct / total


def ptq(
    model: nn.Module,
    config: QuantConfig | Mapping[str, Any],
    calib_loader: Iterable[Any],
    *,
    example_input: torch.Tensor | None = None,
    method: CalibrationMethod = "minmax",
    num_batches: int | None = 8,
    recalibrate_bn: bool = True,
    **apply_options: Any,
) -> nn.Module:
    """Post-training quantization: apply ``config`` to a copy, re-estimate BN, calibrate.

    No gradient step is taken. BatchNorm statistics are re-estimated on the calibration data
    (quantized weights and removed channels shift them; this is what makes narrowed layers
    usable without fine-tuning), then activation ranges are calibrated.

    Args:
        model: A trained float model (never changed).
        config: Per-layer bits and widths.
        calib_loader: Calibration batches (training data; labels are ignored).
        example_input: One input batch; needed when a width is below 1.
        method: Activation calibration, ``"minmax"`` or ``"percentile"``.
        num_batches: Batches used for BN re-estimation and for calibration.
        recalibrate_bn: Re-estimate BatchNorm statistics first.
        **apply_options: Passed to :func:`~optuna_kmtpe.quant.apply_config`.

    Returns:
        The quantized model, in eval mode.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.config import QuantConfig
        >>> from optuna_kmtpe.models import DigitsCNN
        >>> model = DigitsCNN()
        >>> config = QuantConfig.uniform(["features.0", "features.3", "features.7", "classifier"])
        >>> qmodel = ptq(model, config, [torch.rand(32, 1, 8, 8)])
        >>> qmodel(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    qmodel = apply_config(model, config, example_input=example_input, **apply_options)
    if recalibrate_bn:
        recalibrate_batchnorm(qmodel, calib_loader, num_batches=num_batches)
    if any(True for _ in _enabled_quantizers(qmodel)):
        calibrate(qmodel, calib_loader, method=method, num_batches=num_batches)
    return qmodel.eval()


def _enabled_quantizers(model: nn.Module) -> Iterable[nn.Module]:
    from optuna_kmtpe.quant._apply import activation_quantizers

    return (q for q in activation_quantizers(model).values() if q.enabled)


def _fit(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    epochs: int | None,
    steps: int | None,
    lr: float,
    optimizer: OptimizerName,
    momentum: float,
    weight_decay: float,
    loss: str,
    seed: int,
    callback: EpochCallback | None,
    progress: bool,
    description: str,
) -> None:
    if epochs is not None and (isinstance(epochs, bool) or epochs < 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    if steps is not None and (isinstance(steps, bool) or steps < 1):
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    criterion = make_criterion(loss)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameter.")
    steps_per_epoch = _length(loader)
    total_steps = steps if steps is not None else int(epochs or 0) * steps_per_epoch
    opt = _make_optimizer(optimizer, params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    device = model_device(model)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.train()
        bar = progress_bar(total=total_steps, desc=description, disable=not progress, leave=False)
        step = 0
        epoch = 0
        try:
            while step < total_steps:
                for batch in loader:
                    inputs, targets = split_batch(batch)
                    if targets is None:
                        raise ValueError("Training needs (inputs, targets) batches.")
                    for group in opt.param_groups:
                        group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / total_steps))
                    value = criterion(model(inputs.to(device)), targets.to(device))
                    opt.zero_grad(set_to_none=True)
                    value.backward()
                    opt.step()
                    step += 1
                    bar.update(1)
                    if step % 10 == 0 or step == total_steps:
                        bar.set_postfix(loss=f"{value.item():.3f}", epoch=epoch)
                    if step >= total_steps:
                        break
                if callback is not None:
                    callback(epoch, model)
                    model.train()
                epoch += 1
        finally:
            bar.close()


def _length(loader: Iterable[Any]) -> int:
    try:
        length = len(loader)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(
            "The training loader needs a length (a DataLoader or a list of batches)."
        ) from None
    if length < 1:
        raise ValueError("The training loader is empty.")
    return length


def _make_optimizer(
    name: str, params: list[nn.Parameter], *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}.")
