"""What the sampler can know before a trial trains: exact costs and a Hessian accuracy prior.

``known_costs`` turns a trial's parameters into the objective values that are exact functions of
the config (every cost metric of the FPGA model) and ``None`` for accuracy. The Hessian prior
predicts the accuracy of any config before training from the per-layer second-order terms stored in
the sensitivity report: ``0.5 dW^T H dW`` for each layer's actual weight perturbation at each
weight bit-width, ``0.5 da^T H_a da`` for its input activation at each activation bit-width and
``0.5 dW^T H dW`` for the output channels each width prunes. The predicted loss increase is their
sum over layers, and the accuracy forecast is ``base_accuracy - loss_to_accuracy * increase``. The
sampler's additive Bayesian model (``optuna_kmtpe.sampler.AdditiveBayesianRegression``) starts from
this prior and lets trained trials correct its offset, its scale and each layer's levels (the
pruning term covers only the layer's own weights, so its scale is the least certain).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
from typing import Any

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.records import COST
from optuna_kmtpe.records import METRICS


def _known(name: str) -> bool:
    """Whether the metric ``name`` is known before training (a cost of the hardware model)."""
    return METRICS[name].source == COST


@dataclasses.dataclass(frozen=True)
class KnownCosts:
    """``params -> [value or None per metric]``: the metrics known before training.

    Args:
        space: Turns parameters into a config (``config_from_params``).
        cost_fn: Config -> :class:`~optuna_kmtpe.objectives.CostRecord`.
        metrics: The objective's metrics, in order; ``accuracy`` is the unknown one.
    """

    space: Any
    cost_fn: Any
    metrics: tuple[str, ...]

    def __call__(self, params: Mapping[str, Any]) -> list[float | None]:
        costs = self.cost_fn(self.space.config_from_params(params)).metrics
        return [float(costs[n]) if _known(n) else None for n in self.metrics]

    def reference_point(self, worst: QuantConfig, accuracy_floor: float) -> list[float]:
        """The region of interest: ``accuracy_floor`` and the costs of the ``worst`` config."""
        costs = self.cost_fn(worst).metrics
        return [float(costs[name]) if _known(name) else accuracy_floor for name in self.metrics]


@dataclasses.dataclass(frozen=True)
class HessianAccuracyPrior:
    """``params -> [accuracy forecast]`` from the report's second-order terms (see module).

    Args:
        space: Turns parameters into a config.
        quadratic: ``{layer: {weight_bits: 0.5 dW^T H dW}}`` (``SensitivityReport`` layers).
        act_quadratic: ``{layer: {act_bits: 0.5 da^T H_a da}}`` (may be empty).
        width_quadratic: ``{layer: {width: 0.5 dW^T H dW}}`` of pruning (may be empty).
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
    loss_to_accuracy: float = 1.0
    floor: float = 0.0

    @classmethod
    def from_report(
        cls, report: Any, space: Any, base_accuracy: float, *, floor: float = 0.0
    ) -> HessianAccuracyPrior:
        return cls(
            space=space,
            quadratic={layer.name: dict(layer.quadratic) for layer in report},
            act_quadratic={layer.name: dict(layer.act_quadratic) for layer in report},
            width_quadratic={layer.name: dict(layer.width_quadratic) for layer in report},
            base_accuracy=base_accuracy,
            floor=floor,
        )

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
        return [max(self.floor, forecast)]


def sampler_forecast(
    objective: Any,
    *,
    report: Any,
    model: Any,
    val_loader: Any,
    accuracy_window: float = 0.05,
    prior_std: float = 0.01,
) -> dict[str, Any]:
    """Keyword arguments that connect :class:`~optuna_kmtpe.KMeansTPESampler` to what is known.

    Exact costs (``known_objectives``), the Hessian prior inside the additive predictor, and
    the region of interest (``reference_point``): accuracy within ``accuracy_window`` of the
    float model, costs below those of uniform max-bit, full-width configs. No random startup
    trials: the prior makes the first model-based choice informed.

    Args:
        objective: An :class:`~optuna_kmtpe.objectives.MPQObjective` with ``accuracy`` and at
            least one cost metric.
        report: The :class:`~optuna_kmtpe.sensitivity.SensitivityReport` of ``model``.
        model: The float model.
        val_loader: The data that scores trials.
        accuracy_window: Accuracy below ``float - accuracy_window`` counts for nothing.
        prior_std: Prior standard deviation of the accuracy residual (fraction, 0.01 = 1 point).
    """
    from optuna_kmtpe import quant
    from optuna_kmtpe.sampler import AdditiveBayesianRegression

    space = objective.space
    base = float(quant.evaluate(model, val_loader))
    known = objective.known_costs()
    worst = QuantConfig.uniform(
        list(space.layer_names),
        weight_bits=max(space.weight_bits),
        act_bits=max(space_act_bits(space)),
    )
    # The pruning terms stay out of the default prior: they cover only the pruned layer's own
    # weights (half the first conv's channels: forecast -1.6 points, QAT -40), and with them
    # the digits search ended lower (0.0352 vs 0.0385 median hypervolume, seeds 0-2).
    prior = dataclasses.replace(
        HessianAccuracyPrior.from_report(report, space, base), width_quadratic={}
    )
    return {
        "known_objectives": known,
        "predictor": AdditiveBayesianRegression(prior_mean=prior, prior_std=prior_std),
        "reference_point": known.reference_point(worst, base - accuracy_window),
        "n_startup_trials": 0,
    }


def space_act_bits(space: Any) -> tuple[int, ...]:
    return tuple(space.act_bits) if space.act_bits is not None else (space.default_act_bits,)
