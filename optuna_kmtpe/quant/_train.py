"""Training and evaluation loops: float pre-training, QAT fine-tuning, PTQ, accuracy, the
one recipe runner (:func:`run_recipe`) that turns a float model and a config into the
quantized model a search trial scores, and the training metrics measured on it
(:data:`MEASURES`).

Every loop works on a copy of the model it is given (the caller's model never changes), seeds
its own random state without touching the global generators, uses a cosine learning-rate
schedule per step, and shows a tqdm progress bar unless ``progress=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import copy
import dataclasses
import math
from typing import Any
from typing import Literal

import torch
from torch import nn

from optuna_kmtpe._progress import progress_bar
from optuna_kmtpe._registry import quantizer_entry
from optuna_kmtpe.config import DEFAULT_LOSS
from optuna_kmtpe.config import LOSS_NAMES
from optuna_kmtpe.config import RANGE_METHODS
from optuna_kmtpe.config import ROUNDING_MODES
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.graph import ChannelGraph
from optuna_kmtpe.quant._apply import activation_quantizers
from optuna_kmtpe.quant._apply import apply_config
from optuna_kmtpe.quant._calibration import CalibrationMethod
from optuna_kmtpe.quant._calibration import _eval_mode
from optuna_kmtpe.quant._calibration import calibrate
from optuna_kmtpe.quant._calibration import recalibrate_batchnorm
from optuna_kmtpe.quant._device import model_device
from optuna_kmtpe.quant._device import resolve_device
from optuna_kmtpe.quant._device import split_batch
from optuna_kmtpe.quant._loss import make_criterion
from optuna_kmtpe.quant._modules import QuantizedLayerMixin
from optuna_kmtpe.records import ACCURACY
from optuna_kmtpe.records import VAL_LOSS


OptimizerName = Literal["sgd", "adam"]
EpochCallback = Callable[[int, nn.Module], None]
Score = Callable[[nn.Module, Iterable[Any]], float]
"""``score(model, loader) -> float``: top-1 accuracy (:func:`evaluate`) or a user metric."""


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
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: str | torch.device | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], Any] | None = None,
) -> float:
    """Top-1 accuracy in ``[0, 1]`` over ``loader``, or ``metric(outputs, targets)``.

    The model runs in eval mode without gradients; its train/eval mode is restored.

    Args:
        model: A classifier returning logits (or any model, with ``metric``).
        loader: Batches ``(inputs, targets)``.
        device: Where to run; ``None`` keeps the model where it is.
        metric: ``metric(outputs, targets) -> float`` over the whole of ``loader`` (outputs
            and targets concatenated on the CPU, so metrics that do not average over batches,
            such as F1, are exact), in the place of top-1 accuracy.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> data = [(torch.rand(8, 4), torch.zeros(8, dtype=torch.long))]
        >>> 0.0 <= evaluate(model, data) <= 1
        True
        >>> evaluate(model, data, metric=lambda outputs, targets: float(len(targets)))
        8.0
    """
    target_device = model_device(model) if device is None else torch.device(device)
    if target_device != model_device(model):
        model = copy.deepcopy(model).to(target_device)
    outputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    correct = total = 0
    with _eval_mode(model), torch.no_grad():
        for batch in loader:
            inputs, labels = split_batch(batch)
            if labels is None:
                raise ValueError("evaluate needs (inputs, targets) batches.")
            logits = model(inputs.to(target_device))
            total += int(labels.numel())
            if metric is None:
                correct += int((logits.argmax(dim=1) == labels.to(target_device)).sum())
            else:
                outputs.append(logits.cpu())
                targets.append(labels.cpu())
    if total == 0:
        raise ValueError("evaluate got an empty loader.")
    if metric is None:
        return correct / total
    value = metric(torch.cat(outputs), torch.cat(targets))
    return float(value.item() if hasattr(value, "item") else value)


Measure = Callable[[nn.Module, Iterable[Any], str], float]
"""``measure(model, loader, loss) -> float``: one training metric of a trained model, measured
on ``loader``; ``loss`` is the recipe's loss name."""

MEASURES: dict[str, Measure] = {
    ACCURACY: lambda model, loader, loss: evaluate(model, loader),
    VAL_LOSS: lambda model, loader, loss: evaluate(model, loader, metric=make_criterion(loss)),
}
"""How each :data:`~optuna_kmtpe.records.TRAINING` metric of
:data:`optuna_kmtpe.records.METRICS` is measured, by its name: a new training metric is its
schema entry plus its entry here (the search then records it and can optimize it)."""


def measure(
    model: nn.Module, loader: Iterable[Any], names: Sequence[str], *, loss: str = DEFAULT_LOSS
) -> dict[str, float]:
    """The training metrics ``names`` of ``model`` on ``loader``, by name (:data:`MEASURES`).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> data = [(torch.rand(8, 4), torch.zeros(8, dtype=torch.long))]
        >>> sorted(measure(model, data, ["accuracy", "val_loss"]))
        ['accuracy', 'val_loss']
    """
    _check_measurable(names)
    return {name: float(MEASURES[name](model, loader, loss)) for name in names}


def _check_measurable(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in MEASURES]
    if unknown:
        raise ValueError(
            f"No measurement for the training metric(s) {unknown}; measurable: "
            f"{sorted(MEASURES)} (optuna_kmtpe.quant.MEASURES)."
        )


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
    if activation_quantizers(qmodel):  # calibrate skips float ones, refuses a float model
        calibrate(qmodel, calib_loader, method=method, num_batches=num_batches)
    return qmodel.eval()


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """How a search trial turns the shared float checkpoint into its quantized model.

    Attributes:
        mode: ``"qat"`` (calibrate, then quantization-aware fine-tuning) or ``"ptq"``
            (:func:`ptq`: BatchNorm re-estimation and calibration, no gradient step).
        epochs: QAT epochs per trial.
        lr: Peak learning rate (cosine schedule).
        optimizer: ``"sgd"`` or ``"adam"``.
        calibration_batches: Batches used to calibrate activation ranges (and, with PTQ, to
            re-estimate BatchNorm statistics).
        seed: Seed of the data order and stochastic parts, the same for every trial so that
            accuracy depends on the config only.
        loss: QAT loss, ``"cross_entropy"`` (class indices) or ``"mse"`` (regression
            targets); see :data:`optuna_kmtpe.quant.LOSSES`.
        quantizer: The registered quantizer every quantized layer holds
            (:func:`~optuna_kmtpe.quant.quantizer_names`); ``"power_of_two"`` scales are the
            form fixed-point FPGA flows (hls4ml, FINN) map exactly.
        rounding: Weight rounding during QAT, ``"nearest"`` or ``"stochastic"``.
        range_method: Weight clipping range, ``"mse"`` (searched per channel) or ``"max"``.
        symmetric_weights: Symmetric narrow-range weights (else asymmetric, with a zero point).
        symmetric_acts: Symmetric activations (else unsigned with a zero point, the default).
    """

    mode: str = "qat"
    epochs: int = 2
    lr: float = 0.01
    optimizer: str = "sgd"
    calibration_batches: int = 4
    seed: int = 0
    loss: str = DEFAULT_LOSS
    quantizer: str = "uniform"
    rounding: str = "nearest"
    range_method: str = "mse"
    symmetric_weights: bool = True
    symmetric_acts: bool = False

    def __post_init__(self) -> None:
        choices = {
            "mode": ("qat", "ptq"),
            "optimizer": ("sgd", "adam"),
            "loss": LOSS_NAMES,
            "rounding": ROUNDING_MODES,
            "range_method": RANGE_METHODS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TrainingRecipe.{name} must be one of {list(allowed)}, "
                    f"got {getattr(self, name)!r}."
                )
        quantizer_entry(self.quantizer)  # an unknown name fails here, not in the first trial
        if self.mode == "qat" and self.epochs < 1:
            raise ValueError(f"TrainingRecipe.epochs must be >= 1 for QAT, got {self.epochs}.")
        if not self.lr > 0:
            raise ValueError(f"TrainingRecipe.lr must be positive, got {self.lr}.")
        if self.calibration_batches < 1:
            raise ValueError(
                f"TrainingRecipe.calibration_batches must be >= 1, got {self.calibration_batches}."
            )

    def quantizer_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~optuna_kmtpe.quant.apply_config` this recipe sets."""
        return {
            "quantizer": self.quantizer,
            "rounding": self.rounding,
            "range_method": self.range_method,
            "symmetric_weights": self.symmetric_weights,
            "symmetric_acts": self.symmetric_acts,
            "seed": self.seed,
        }


@dataclasses.dataclass(frozen=True)
class RecipeResult:
    """What :func:`run_recipe` produced and measured.

    Attributes:
        model: The quantized model, in eval mode, exactly as it was when ``score`` was measured
            (with QAT: after the last epoch run, before any later change).
        score: Its score on the validation loader (the value a search trial records).
        epoch_scores: The score after each QAT epoch run (empty for PTQ).
        stopped_early: Whether QAT ended before ``recipe.epochs`` (the ``on_epoch`` callback
            asked to stop, or ``stop_after_epoch`` replayed such a decision).
        measured: The ``extra_metrics`` of :func:`run_recipe`, measured on ``model``.
    """

    model: nn.Module
    score: float
    epoch_scores: tuple[float, ...] = ()
    stopped_early: bool = False
    measured: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """Every training metric measured, by schema name: the score (under ``accuracy``, the
        quality slot, also when a user metric scored it) and the ``measured`` ones."""
        return {ACCURACY: self.score, **self.measured}


class _StopQAT(Exception):
    """Ends :func:`qat_finetune` from inside its epoch callback (private to the runner)."""


def run_recipe(
    model: nn.Module,
    config: QuantConfig | Mapping[str, Any],
    recipe: TrainingRecipe,
    *,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any],
    score: Score | None = None,
    example_input: torch.Tensor | None = None,
    graph: ChannelGraph | None = None,
    on_epoch: Callable[[int, float], bool | None] | None = None,
    stop_after_epoch: int | None = None,
    extra_metrics: Sequence[str] = (),
    progress: bool = False,
) -> RecipeResult:
    """The quantized model a search trial scores, and its score: the one definition of a trial.

    Seeded loaders are rewound to ``recipe.seed`` first, so the model depends on the config
    alone. PTQ is :func:`ptq` (BatchNorm re-estimation, then calibration). QAT applies the
    config, calibrates, then fine-tunes; after each epoch the model is scored on ``val_loader``
    and ``on_epoch(epoch, score)`` may ask to stop (return True) or raise (a pruned Optuna
    trial). The search's objective, :func:`optuna_kmtpe.workflow.export_trial_model` and the
    benchmarks all call this, so an exported model is the trial's model.

    Args:
        model: Trained float model (never changed).
        config: Per-layer bits and widths.
        recipe: Mode, training and quantizer settings.
        train_loader: Data for BN re-estimation, calibration and QAT.
        val_loader: Data that scores the model.
        score: ``score(model, loader) -> float``; :func:`evaluate` (top-1 accuracy) if None.
        example_input: One input batch (needed when some width is below 1).
        graph: The model's channel graph, traced once by the caller (None: traced per call
            when some width is below 1); see :func:`apply_config`.
        on_epoch: ``on_epoch(epoch, score) -> stop?`` after each QAT epoch.
        stop_after_epoch: Stop QAT after this epoch (0-based): replays an early-stop decision
            that ``on_epoch`` took in an earlier run.
        extra_metrics: Training metrics (names of :data:`MEASURES`) measured on ``val_loader``
            with the final model, besides the score (``RecipeResult.metrics``).
        progress: Show a progress bar for QAT.

    Returns:
        A :class:`RecipeResult`.

    Example:
        >>> from optuna_kmtpe.data import load_digits, make_loader
        >>> from optuna_kmtpe.models import MLP
        >>> splits = load_digits()
        >>> train, val = make_loader(splits.train, batch_size=64), make_loader(splits.val)
        >>> config = QuantConfig.uniform(["net.1", "net.3", "net.5"], weight_bits=4)
        >>> result = run_recipe(MLP(), config, TrainingRecipe(epochs=2), train_loader=train,
        ...                     val_loader=val, on_epoch=lambda epoch, value: epoch == 0)
        >>> result.stopped_early, len(result.epoch_scores), result.score == result.epoch_scores[-1]
        (True, 1, True)
    """
    _check_measurable(extra_metrics)  # before minutes of training
    score_fn: Score = evaluate if score is None else score
    for loader in (train_loader, val_loader):  # a seeded loader advances on every pass
        generator = getattr(loader, "generator", None)
        if generator is not None:
            generator.manual_seed(recipe.seed)
    options = recipe.quantizer_options()
    if recipe.mode == "ptq":
        qmodel = ptq(
            model,
            config,
            train_loader,
            example_input=example_input,
            num_batches=recipe.calibration_batches,
            graph=graph,
            **options,
        )
        return RecipeResult(
            model=qmodel,
            score=score_fn(qmodel, val_loader),
            measured=measure(qmodel, val_loader, extra_metrics, loss=recipe.loss),
        )
    qmodel = apply_config(model, config, example_input=example_input, graph=graph, **options)
    if activation_quantizers(qmodel):
        calibrate(qmodel, train_loader, num_batches=recipe.calibration_batches)
    scores: list[float] = []
    scored: list[nn.Module] = []

    def after_epoch(epoch: int, trained: nn.Module) -> None:
        scores.append(score_fn(trained, val_loader))
        stop = bool(on_epoch(epoch, scores[-1])) if on_epoch is not None else False
        stop = stop or (stop_after_epoch is not None and epoch >= stop_after_epoch)
        if stop or epoch == recipe.epochs - 1:
            scored[:] = [copy.deepcopy(trained).eval()]  # the model this score measured
        if stop and epoch < recipe.epochs - 1:
            raise _StopQAT

    try:
        qat_finetune(
            qmodel,
            train_loader,
            epochs=recipe.epochs,
            lr=recipe.lr,
            optimizer=recipe.optimizer,  # type: ignore[arg-type]
            loss=recipe.loss,
            seed=recipe.seed,
            callback=after_epoch,
            progress=progress,
        )
    except _StopQAT:
        pass
    return RecipeResult(
        model=scored[0],
        score=scores[-1],
        epoch_scores=tuple(scores),
        stopped_early=len(scores) < recipe.epochs,
        measured=measure(scored[0], val_loader, extra_metrics, loss=recipe.loss),
    )


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
