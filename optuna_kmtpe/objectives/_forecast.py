"""What the sampler can know before a trial trains: exact costs and a Hessian accuracy prior.

``known_costs`` turns a trial's parameters into the objective values that are exact functions of
the config (every cost metric of the FPGA model) and ``None`` for the training metrics
(accuracy, ``val_loss``), which the sampler forecasts. The Hessian prior predicts the accuracy
of any config before training from the per-layer second-order terms stored in the sensitivity
report: ``0.5 dW^T H dW`` for each layer's actual weight perturbation at each weight bit-width,
``0.5 da^T H_a da`` for its input activation at each activation bit-width and ``0.5 dW^T H dW``
for the output channels each width prunes. The predicted loss increase is their sum over layers,
and the accuracy forecast is ``base_accuracy - loss_to_accuracy * increase`` (the validation
loss: ``base + increase``; :data:`LOSS_TO_METRIC`). Pruning is better measured than expanded:
``measured_pruning_changes`` runs post-training quantization of the float model with each
prunable layer alone at each width (BatchNorm re-estimated, no gradient step) and the prior adds
that measured change of the metric, summed over the pruned layers. The sampler's additive
Bayesian model (``optuna_kmtpe.sampler.AdditiveBayesianRegression``) starts from this prior and
lets trained trials correct its offset, its scale and each layer's levels (QAT recovers part of
what PTQ loses, so the pruning term's scale is the least certain).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import itertools
import math
from typing import TYPE_CHECKING
from typing import Any

from optuna_kmtpe.config import DEFAULT_LOSS
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives._warmstart import costliest_config
from optuna_kmtpe.objectives._warmstart import width_layers
from optuna_kmtpe.records import ACCURACY
from optuna_kmtpe.records import COST
from optuna_kmtpe.records import METRICS
from optuna_kmtpe.records import VAL_LOSS
from optuna_kmtpe.sampler import AdditiveBayesianRegression
from optuna_kmtpe.sensitivity import SensitivityReport


if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from optuna_kmtpe.graph import ChannelGraph
    from optuna_kmtpe.objectives._objective import MPQObjective


LOSS_TO_METRIC: dict[str, float] = {ACCURACY: 1.0, VAL_LOSS: -1.0}
"""The ``loss_to_accuracy`` of each training metric the Hessian prior forecasts: how much it
loses per unit of the loss increase the report predicts. Accuracy loses about one unit (the
sampler's model corrects the scale); the validation loss rises by the increase itself. A
training objective missing here is forecast by the sampler's model alone."""


def _known(name: str) -> bool:
    """Whether the metric ``name`` is known before training (a cost of the hardware model)."""
    return METRICS[name].source == COST


@dataclasses.dataclass(frozen=True)
class KnownCosts:
    """``params -> [value or None per metric]``: the metrics known before training.

    Args:
        space: Turns parameters into a config (``config_from_params``).
        cost_fn: Config -> :class:`~optuna_kmtpe.objectives.CostRecord`.
        metrics: The objective's metrics, in order; the training metrics are the unknown ones.
    """

    space: Any
    cost_fn: Any
    metrics: tuple[str, ...]

    def __call__(self, params: Mapping[str, Any]) -> list[float | None]:
        costs = self.cost_fn(self.space.config_from_params(params)).metrics
        return [float(costs[n]) if _known(n) else None for n in self.metrics]

    def reference_point(
        self,
        worst: QuantConfig,
        limits: Mapping[str, float],
        fewest_bits: QuantConfig | None = None,
    ) -> list[float]:
        """The region of interest: the costs of the ``worst`` config and each training
        metric's limit (``{name: value}``, e.g. an accuracy floor).

        A cost that the bit-widths do not move (the same for ``fewest_bits``, the space's
        fewest bits at the same widths, as for ``worst``) is moved out by
        :data:`REFERENCE_COST_MARGIN`: every config that keeps the full width would otherwise
        lie on the reference and count for nothing however cheap its other costs.
        """
        costs = self.cost_fn(worst).metrics
        flat = self.cost_fn(fewest_bits).metrics if fewest_bits is not None else {}
        reference = []
        for name in self.metrics:
            if not _known(name):
                reference.append(limits[name])
                continue
            value = float(costs[name])
            if name in flat and math.isclose(float(flat[name]), value, rel_tol=1e-9):
                step = REFERENCE_COST_MARGIN * abs(value) or REFERENCE_COST_MARGIN
                value = value - step if METRICS[name].direction == "maximize" else value + step
            reference.append(value)
        return reference


# How far past the costliest config a cost that the bits do not move is counted. On a small
# model the FPGA latency often does not depend on the bits (it did not at full width for a
# user's 1-D conv net on the PYNQ-Z2): with the reference exactly there, no full-width config
# had any volume, the sampler never chose one and every warm start was dropped. Moving every
# cost out by 1% fixed that but cost the digits search a little (80 paired seeds: higher at 30
# trials on 13, lower on 26; there every cost depends on the bits), so only such costs move.
REFERENCE_COST_MARGIN = 0.01


@dataclasses.dataclass(frozen=True)
class HessianAccuracyPrior:
    """``params -> [accuracy forecast]`` from the report's second-order terms (see module).

    Any training metric affine in the loss is forecast the same way, with its own base value
    and :data:`LOSS_TO_METRIC` (the validation loss: the float model's loss and ``-1``).

    Args:
        space: Turns parameters into a config.
        quadratic: ``{layer: {weight_bits: 0.5 dW^T H dW}}`` (``SensitivityReport`` layers).
        act_quadratic: ``{layer: {act_bits: 0.5 da^T H_a da}}`` (may be empty).
        width_quadratic: ``{layer: {width: 0.5 dW^T H dW}}`` of pruning (may be empty).
        width_change: ``{layer: {width: measured change of the metric}}`` when that layer alone
            is pruned (:func:`measured_pruning_changes`; may be empty), added to the forecast
            in the metric's own units.
        base_accuracy: Accuracy of the float model on the validation data.
        loss_to_accuracy: Accuracy lost per unit of loss increase (the sampler's model
            corrects this scale from the trained trials).
        floor: Lowest forecast (chance level): large second-order terms do not extrapolate.
    """

    space: Any
    quadratic: Mapping[str, Mapping[int, float]]
    act_quadratic: Mapping[str, Mapping[int, float]]
    base_accuracy: float
    width_quadratic: Mapping[str, Mapping[float, float]] = dataclasses.field(default_factory=dict)
    width_change: Mapping[str, Mapping[float, float]] = dataclasses.field(default_factory=dict)
    loss_to_accuracy: float = 1.0
    floor: float = 0.0

    def loss_increase(self, config: QuantConfig) -> float:
        total = 0.0
        for name, layer in config.items():
            total += float(self.quadratic.get(name, {}).get(layer.weight_bits, 0.0))
            total += float(self.act_quadratic.get(name, {}).get(layer.act_bits, 0.0))
            if layer.width < 1.0:
                total += float(self.width_quadratic.get(name, {}).get(layer.width, 0.0))
        return total

    def __call__(self, params: Mapping[str, Any]) -> Sequence[float]:
        config = self.space.config_from_params(params)
        forecast = self.base_accuracy - self.loss_to_accuracy * self.loss_increase(config)
        forecast += sum(
            float(self.width_change.get(name, {}).get(layer.width, 0.0))
            for name, layer in config.items()
            if layer.width < 1.0
        )
        return [max(self.floor, forecast)]


#: Calibration batches of the PTQ that measures each width's change (BatchNorm re-estimation and
#: activation ranges): what the digits measurement of docs/sampler.md ("fourteenth round") used.
PRUNING_CALIBRATION_BATCHES = 4


def measured_pruning_changes(
    model: nn.Module,
    config: QuantConfig,
    widths: Mapping[str, Sequence[float]],
    *,
    calibration_loader: Iterable[Any],
    val_loader: Iterable[Any],
    metrics: Sequence[str],
    example_input: torch.Tensor,
    graph: ChannelGraph | None = None,
    loss: str = DEFAULT_LOSS,
) -> dict[str, dict[str, dict[float, float]]]:
    """``{metric: {layer: {width: change}}}``: what pruning one layer alone does, measured.

    Each entry is the metric of :func:`~optuna_kmtpe.quant.ptq` applied to the float model with
    ``config`` and that layer at that width, minus the metric of ``config`` at full width: no
    training, one validation pass per entry (37-55 ms each on the digits CNN). On digits these
    changes rank the width groups' QAT accuracies with Spearman 0.74-0.92 across four draws of
    the task, where the Hessian's second-order pruning term was off by 25x (docs/sampler.md,
    "Digits, fourteenth round"); QAT recovers part of the loss, which the sampler's fitted prior
    scale and per-level corrections take up.

    Args:
        model: The trained float model (never changed).
        config: The bits every measurement uses (the search's widest, max-bit config).
        widths: ``{layer: widths below 1 to measure}``.
        calibration_loader: Training batches; the first :data:`PRUNING_CALIBRATION_BATCHES`
            calibrate each PTQ model.
        val_loader: The data that scores trials.
        metrics: Training metrics to measure (:data:`optuna_kmtpe.quant.MEASURES`).
        example_input: One input batch (traces the channel graph of a pruned model).
        graph: The model's channel graph, if already traced.
        loss: The training loss (``val_loss`` is measured with it).

    Example:
        >>> import torch
        >>> from optuna_kmtpe.config import QuantConfig
        >>> from optuna_kmtpe.models import DigitsCNN
        >>> model = DigitsCNN()
        >>> names = ["features.0", "features.3", "features.7", "classifier"]
        >>> data = [(torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,)))]
        >>> changes = measured_pruning_changes(
        ...     model, QuantConfig.uniform(names, weight_bits=8, act_bits=8),
        ...     {"features.3": [0.5]}, calibration_loader=data, val_loader=data,
        ...     metrics=["accuracy"], example_input=data[0][0][:2],
        ... )
        >>> sorted(changes["accuracy"]["features.3"])
        [0.5]
    """
    from optuna_kmtpe import quant  # torch: objectives stays torch-free at import

    calibration = list(itertools.islice(calibration_loader, PRUNING_CALIBRATION_BATCHES))

    def measured(pruned: QuantConfig) -> dict[str, float]:
        qmodel = quant.ptq(
            model,
            pruned,
            calibration,
            example_input=example_input,
            num_batches=None,  # all of `calibration`, already cut to its length
            graph=graph,
        )
        return quant.measure(qmodel, val_loader, metrics, loss=loss)

    full = measured(config)
    changes: dict[str, dict[str, dict[float, float]]] = {name: {} for name in metrics}
    for layer, layer_widths in widths.items():
        for width in layer_widths:
            if width >= 1.0:
                continue
            values = measured(config.replace(layer, width=width))
            for name in metrics:
                changes[name].setdefault(layer, {})[float(width)] = values[name] - full[name]
    return changes


def sampler_forecast(
    objective: MPQObjective,
    *,
    report: SensitivityReport,
    model: nn.Module,
    val_loader: DataLoader,
    accuracy_window: float = 0.05,
    prior_std: float = 0.01,
    loss: str = DEFAULT_LOSS,
    calibration_loader: Iterable[Any] | None = None,
    example_input: torch.Tensor | None = None,
    graph: ChannelGraph | None = None,
) -> dict[str, Any] | None:
    """Keyword arguments that connect :class:`~optuna_kmtpe.KMeansTPESampler` to what is known.

    Exact costs (``known_objectives``), the Hessian prior of every training objective inside
    the additive predictor, and the region of interest (``reference_point``): accuracy within
    ``accuracy_window`` of the float model (the validation loss within as much above it),
    costs below those of uniform max-bit, full-width configs. No random startup trials: the
    prior makes the first model-based choice informed. Accuracy's forecast counts at most
    :func:`accuracy_upside` past the best measured value (``upside_limit``). ``None`` (no
    forecast: the sampler learns from the trials alone) when :data:`LOSS_TO_METRIC` does not
    cover every training objective.

    Args:
        objective: An :class:`~optuna_kmtpe.objectives.MPQObjective` with a training metric
            (``accuracy``, ``val_loss``) and at least one cost metric.
        report: The :class:`~optuna_kmtpe.sensitivity.SensitivityReport` of ``model``.
        model: The float model.
        val_loader: The data that scores trials.
        accuracy_window: Accuracy below ``float - accuracy_window`` counts for nothing.
        prior_std: Prior standard deviation of the residuals (accuracy: a fraction, 0.01 = 1
            point).
        loss: The training loss (:data:`optuna_kmtpe.quant.LOSSES`), which ``val_loss`` is.
        calibration_loader: Training batches. With ``example_input``, and a space whose layers
            may be pruned, the prior includes :func:`measured_pruning_changes`; without them it
            knows nothing of widths until trials are trained.
        example_input: One input batch (traces pruned models).
        graph: The model's channel graph, if already traced.
    """
    from optuna_kmtpe import quant  # torch: objectives stays torch-free at import

    space = objective.space
    known = objective.known_costs()
    training = [name for name in objective.metrics if not _known(name)]
    if any(name not in LOSS_TO_METRIC for name in training):
        return None
    base = quant.measure(model, val_loader, training, loss=loss)
    act_bits = space.act_bits if space.act_bits is not None else (space.default_act_bits,)
    worst = costliest_config(space.layer_names, space.weight_bits, act_bits)
    # The Hessian's pruning terms stay out of the prior: they cover only the pruned layer's own
    # weights (half the first conv's channels: forecast -1.6 points, QAT -40), and with them
    # the digits search ended lower (0.0352 vs 0.0385 median hypervolume, seeds 0-2). Measured
    # by PTQ instead, pruning goes in: over 80 paired digits searches (four draws x 20 seeds)
    # the search ended above the prior without it on 47 at 20 trials and 50 at 40, below on 33
    # and 30 (docs/sampler.md, "Digits, fourteenth round").
    widths = getattr(space, "widths", None) or ()
    prunable = width_layers(space)
    changes: dict[str, dict[str, dict[float, float]]] = {}
    if calibration_loader is not None and example_input is not None and widths and prunable:
        changes = measured_pruning_changes(
            model,
            worst,
            {name: list(widths) for name in prunable},  # full width is skipped there
            calibration_loader=calibration_loader,
            val_loader=val_loader,
            metrics=training,
            example_input=example_input,
            graph=graph,
            loss=loss,
        )
    hessian = HessianAccuracyPrior(
        space=space,
        quadratic={layer.name: dict(layer.quadratic) for layer in report},
        act_quadratic={layer.name: dict(layer.act_quadratic) for layer in report},
        base_accuracy=0.0,
    )
    priors = tuple(
        dataclasses.replace(
            hessian,
            base_accuracy=base[n],
            loss_to_accuracy=LOSS_TO_METRIC[n],
            width_change=changes.get(n, {}),
        )
        for n in training
    )
    limits = {n: base[n] - LOSS_TO_METRIC[n] * accuracy_window for n in training}
    return {
        "known_objectives": known,
        "predictor": AdditiveBayesianRegression(prior_mean=_Stacked(priors), prior_std=prior_std),
        "reference_point": known.reference_point(
            worst,
            limits,
            fewest_bits=QuantConfig.uniform(
                list(space.layer_names),
                weight_bits=min(space.weight_bits),
                act_bits=min(act_bits),
            ),
        ),
        "n_startup_trials": 0,
        "upside_limit": [
            accuracy_upside(base[n], example_count(val_loader)) if n == ACCURACY else None
            for n in objective.metrics
        ],
    }


def accuracy_upside(accuracy: float, n_examples: int) -> float:
    """How far a trained config's accuracy may be credited past the best one measured.

    One standard deviation of an accuracy measured on ``n_examples`` (binomial, at the float
    model's ``accuracy``; at least one example's worth). A quantized model does not beat its
    float model by more than the luck of the validation draw; a Gaussian forecast's tail does,
    and EHVI then spends trials on configs that can only tie the best one (digits: over half
    the model-chosen trials before 20 were forecast at 98% or more and added a sixth of the
    hypervolume per trial that the cheaper ones added; docs/sampler.md, "Digits, sixteenth
    round").

    Example:
        >>> round(accuracy_upside(0.989, 270), 4)
        0.0063
    """
    n = max(int(n_examples), 1)
    p = min(max(float(accuracy), 0.0), 1.0)
    return max(math.sqrt(p * (1.0 - p) / n), 1.0 / n)


def example_count(loader: Iterable[Any]) -> int:
    """Examples in a loader of ``(inputs, targets)`` batches (its dataset's length when it
    has one)."""
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__"):
        return len(dataset)
    return sum(len(batch[1]) for batch in loader)


@dataclasses.dataclass(frozen=True)
class _Stacked:
    """``params -> [forecast of each prior]``: one prior per training objective, in order."""

    priors: tuple[HessianAccuracyPrior, ...]

    def __call__(self, params: Mapping[str, Any]) -> list[float]:
        return [value for prior in self.priors for value in prior(params)]
