"""Factories that wire a model, data, a search space and the FPGA model into an objective."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import MutableMapping
from collections.abc import Sequence
import functools
from typing import TYPE_CHECKING

import optuna

from optuna_kmtpe import hardware
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.geometry import NetworkShape
from optuna_kmtpe.objectives._metrics import DEFAULT_OBJECTIVES
from optuna_kmtpe.objectives._metrics import validate_metrics
from optuna_kmtpe.objectives._objective import AccuracyFunction
from optuna_kmtpe.objectives._objective import ConfigSpace
from optuna_kmtpe.objectives._objective import CostFunction
from optuna_kmtpe.objectives._objective import CostRecord
from optuna_kmtpe.objectives._objective import EarlyStopRule
from optuna_kmtpe.objectives._objective import MPQObjective
from optuna_kmtpe.objectives._objective import StopTraining
from optuna_kmtpe.records import ACCURACY
from optuna_kmtpe.records import COST
from optuna_kmtpe.records import METRICS
from optuna_kmtpe.records import TRAINING


# quant (torch) is imported inside the factories that train: `optuna_kmtpe.objectives` stays
# torch-free (tests/test_doctests.py TORCH_FREE), as do the workflow and CLI above it.
if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from optuna_kmtpe.graph import ChannelGraph
    from optuna_kmtpe.quant import TrainingRecipe


def quantized_accuracy_fn(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    recipe: TrainingRecipe | None = None,
    example_input: torch.Tensor | None = None,
    graph: ChannelGraph | None = None,
    cache: MutableMapping[QuantConfig, float] | None = None,
    progress: bool = False,
    score: Callable[[nn.Module, DataLoader], float] | None = None,
    extra_metrics: Sequence[str] = (),
) -> AccuracyFunction:
    """Config -> training metrics after QAT (or PTQ) from the float ``model``, by name.

    The function returns ``{"accuracy": validation accuracy (or score), **extra_metrics}``,
    measured by :func:`optuna_kmtpe.quant.run_recipe`.

    The float model is never changed: every trial quantizes a copy.

    Args:
        model: Trained float model.
        train_loader: Data for calibration and QAT.
        val_loader: Data that scores the trial.
        recipe: Training settings (:class:`optuna_kmtpe.quant.TrainingRecipe`; None: its
            defaults).
        example_input: One input batch (for width propagation); taken from ``val_loader`` if
            omitted.
        graph: ``channel_graph(model, example_input)``, traced once for every trial (None:
            each trial with a width below 1 traces it again).
        cache: Optional config -> accuracy memo. Accuracy is a deterministic function of the
            config under a fixed recipe, so benchmarks comparing samplers share one. It holds
            the accuracy only, so it cannot serve ``extra_metrics``.
        progress: Show a progress bar for each trial's QAT.
        score: ``score(model, val_loader) -> float`` replacing top-1 accuracy
            (``functools.partial(quant.evaluate, metric=metric)`` scores with a
            ``metric(outputs, targets)``).
        extra_metrics: Training metrics measured besides the accuracy (names of
            :data:`optuna_kmtpe.quant.MEASURES`, e.g. ``val_loss``).
    """
    from optuna_kmtpe import quant

    recipe = quant.TrainingRecipe() if recipe is None else recipe
    extra_metrics = tuple(extra_metrics)
    if cache is not None and extra_metrics:
        raise ValueError(
            f"The accuracy cache holds accuracies only and cannot serve {list(extra_metrics)}; "
            f"drop the cache or those metrics."
        )
    if example_input is None:
        example_input = next(iter(val_loader))[0][:2]

    def accuracy(
        config: QuantConfig, report_epoch: Callable[[int, float], None]
    ) -> dict[str, float]:
        if cache is not None and config in cache:
            return {ACCURACY: cache[config]}

        def on_epoch(epoch: int, value: float) -> bool:
            try:
                report_epoch(epoch, value)  # may prune the trial
            except StopTraining:
                return True  # the runner keeps the model and score reached so far
            return False

        result = quant.run_recipe(
            model,
            config,
            recipe,
            train_loader=train_loader,
            val_loader=val_loader,
            score=score,
            example_input=example_input,
            graph=graph,
            on_epoch=on_epoch,
            extra_metrics=extra_metrics,
            progress=progress,
        )
        if result.stopped_early:
            raise StopTraining(result.score, metrics=result.metrics)
        if cache is not None:
            cache[config] = result.score
        return result.metrics

    return accuracy


def hardware_cost_fn(fpga: hardware.FPGAModel, shapes: NetworkShape) -> CostFunction:
    """Config -> :class:`CostRecord` from the analytic FPGA model.

    Every :data:`~optuna_kmtpe.records.COST` metric of :data:`~optuna_kmtpe.records.METRICS`
    is read from the report's attribute of the same name.

    Args:
        fpga: An :class:`optuna_kmtpe.hardware.FPGAModel`.
        shapes: The model's layer shapes from :func:`optuna_kmtpe.hardware.trace_layer_shapes`.
    """

    def costs(config: QuantConfig) -> CostRecord:
        report = fpga.evaluate(shapes, config)
        return CostRecord(
            metrics={n: getattr(report, n) for n, m in METRICS.items() if m.source == COST},
            layer_latency_s={layer.name: layer.latency_s for layer in report.layers},
            layer_energy_j={layer.name: layer.energy_j for layer in report.layers},
            violations=dict(report.violations),
        )

    return costs


def make_objective(
    *,
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    space: ConfigSpace,
    fpga: hardware.FPGAModel,
    example_input: torch.Tensor,
    shapes: NetworkShape | None = None,
    graph: ChannelGraph | None = None,
    metrics: Sequence[str] = DEFAULT_OBJECTIVES,
    budgets: Mapping[str, float] | None = None,
    recipe: TrainingRecipe | None = None,
    early_stop: EarlyStopRule | None = EarlyStopRule(),
    accuracy_cache: MutableMapping[QuantConfig, float] | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    metric_direction: str = "maximize",
) -> MPQObjective:
    """An Optuna objective for hardware-aware mixed-precision search on a model and data.

    Args:
        model: Trained float model (never modified).
        train_loader: Calibration and QAT data.
        val_loader: Data that scores each trial.
        space: Turns trials into configs, e.g. :class:`optuna_kmtpe.space.MonotoneSearchSpace`.
        fpga: The FPGA model, :class:`optuna_kmtpe.hardware.FPGAModel`.
        example_input: One input batch, for shape tracing.
        shapes: The model's layer shapes, traced once by the caller
            (:func:`optuna_kmtpe.hardware.trace_layer_shapes`); None: traced here.
        graph: The model's channel graph (:func:`optuna_kmtpe.graph.channel_graph`), traced
            once by the caller; None: every trial with a width below 1 traces it.
        metrics: Returned metrics; see :data:`optuna_kmtpe.objectives.METRICS`. Each
            training metric among them besides the accuracy (e.g. ``val_loss``) is measured on
            the trial's final model (:data:`optuna_kmtpe.quant.MEASURES`).
        budgets: Upper limits on cost metrics (``latency_s``, ``energy_j``, ``size_bits``,
            ``bops``, ``dsp_used``); violating configs are recorded as infeasible, not trained.
        recipe: QAT/PTQ settings (None: ``quant.TrainingRecipe()``).
        early_stop: Multi-objective early-stop rule for hopeless QAT runs.
        accuracy_cache: Optional config -> accuracy memo shared across studies.
        metric: ``metric(outputs, targets) -> float`` on the whole validation split, in the
            place of top-1 accuracy (the ``"accuracy"`` objective then holds its value; for
            example top-5 accuracy, macro F1 or an error). The early-stop rule, whose margin
            is in accuracy units, is then off.
        metric_direction: ``"maximize"`` or ``"minimize"``, the direction of ``metric``.

    Returns:
        The objective; pass ``objective.directions`` to ``optuna.create_study`` and
        ``objective.metric_names`` to ``study.set_metric_names``.

    Example:
        .. code-block:: python

            objective = make_objective(model=model, train_loader=train, val_loader=val,
                                       space=space, fpga=fpga, example_input=x[:2])
            study = optuna.create_study(directions=objective.directions)
            study.set_metric_names(objective.metric_names)
            study.optimize(objective, n_trials=30)
    """
    from optuna_kmtpe import quant

    metrics = validate_metrics(metrics)
    if shapes is None:
        shapes = hardware.trace_layer_shapes(model, example_input, graph=graph)
    return MPQObjective(
        space=space,
        cost_fn=hardware_cost_fn(fpga, shapes),
        accuracy_fn=quantized_accuracy_fn(
            model,
            train_loader,
            val_loader,
            recipe=recipe,
            example_input=example_input,
            graph=graph,
            cache=accuracy_cache,
            score=None if metric is None else functools.partial(quant.evaluate, metric=metric),
            extra_metrics=[n for n in metrics if METRICS[n].source == TRAINING and n != ACCURACY],
        ),
        metrics=metrics,
        budgets=budgets,
        early_stop=early_stop if metric is None else None,
        quality_direction=metric_direction,
    )


class ScalarizedObjective:
    """One number for users who want a single-objective study: accuracy minus cost penalties.

    ``score = accuracy - sum_m weight_m * cost_m / reference_m``, where ``reference_m`` is the
    cost of a reference config (e.g. uniform 8-bit): with weight 0.1, a model as costly as
    the reference pays 0.1 accuracy, one half as costly pays 0.05. Budgets still apply as
    constraints. Intermediate accuracies are reported each epoch, so Optuna pruners work.

    Args:
        objective: A single-metric :class:`MPQObjective` with ``metrics=["accuracy"]``; its
            cost records are read back from the trial.
        weights: Cost metric -> penalty weight.
        reference: Cost metric -> reference value (same keys as ``weights``).
    """

    def __init__(
        self,
        objective: MPQObjective,
        *,
        weights: Mapping[str, float],
        reference: Mapping[str, float],
    ) -> None:
        if objective.metrics != (ACCURACY,):
            raise ValueError(
                "ScalarizedObjective wraps an MPQObjective built with metrics=('accuracy',)."
            )
        missing = sorted(set(weights) - set(reference))
        if missing:
            raise ValueError(f"ScalarizedObjective: no reference value for {missing}.")
        for name, value in reference.items():
            if not value > 0:
                raise ValueError(f"ScalarizedObjective: reference {name}={value} must be > 0.")
        self._objective = objective
        self._weights = dict(weights)
        self._reference = dict(reference)

    directions = ["maximize"]
    metric_names = ["score"]

    def __call__(self, trial: optuna.Trial) -> float:
        accuracy = self._objective(trial)
        assert isinstance(accuracy, float)
        if accuracy != accuracy:  # NaN: the trial failed and recorded why
            return accuracy
        penalty = sum(
            weight * float(trial.user_attrs[name]) / self._reference[name]
            for name, weight in self._weights.items()
        )
        trial.set_user_attr("score_penalty", penalty)
        return accuracy - penalty
