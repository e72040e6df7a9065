"""The mixed-precision objective: hardware costs first (cheap), then QAT/PTQ (expensive)."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import logging
import math
import time
import traceback
from typing import Any
from typing import Protocol

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives._forecast import KnownCosts
from optuna_kmtpe.objectives._metrics import DEFAULT_OBJECTIVES
from optuna_kmtpe.objectives._metrics import METRICS
from optuna_kmtpe.objectives._metrics import validate_budgets
from optuna_kmtpe.objectives._metrics import validate_metrics


_logger = logging.getLogger(__name__)


class ConfigSpace(Protocol):
    """Anything that turns an Optuna trial into a :class:`QuantConfig` (e.g. a search space)."""

    def suggest(self, trial: optuna.Trial) -> QuantConfig: ...


@dataclasses.dataclass(frozen=True)
class CostRecord:
    """Costs of one config known before training.

    Attributes:
        metrics: Cost metric name -> value (``latency_s``, ``energy_j``, ``size_bits``, ``bops``,
            ``throughput_ips``, ``dsp_used``).
        layer_latency_s: Per-layer latency.
        layer_energy_j: Per-layer energy.
        violations: Device-capacity violations (name -> amount over capacity, > 0), e.g. DSPs.
    """

    metrics: Mapping[str, float]
    layer_latency_s: Mapping[str, float] = dataclasses.field(default_factory=dict)
    layer_energy_j: Mapping[str, float] = dataclasses.field(default_factory=dict)
    violations: Mapping[str, float] = dataclasses.field(default_factory=dict)


CostFunction = Callable[[QuantConfig], CostRecord]
"""Config -> costs (the hardware model behind a thin adapter, see :func:`hardware_costs`)."""

AccuracyFunction = Callable[
    [QuantConfig, Callable[[int, float], None]], float | Mapping[str, float]
]
"""``(config, report_epoch) -> accuracy`` or ``-> {training metric: value}`` (the accuracy,
the quality slot, under ``"accuracy"``); calls ``report_epoch(epoch, accuracy)`` after each
epoch, which may raise :class:`optuna.TrialPruned` or :class:`StopTraining`."""


class StopTraining(Exception):
    """Raised by the epoch callback to end QAT early and keep the accuracy reached so far.

    Args:
        accuracy: The accuracy reached.
        metrics: Every training metric measured on the stopped model, by name (None: the
            accuracy alone).
    """

    def __init__(self, accuracy: float, metrics: Mapping[str, float] | None = None) -> None:
        super().__init__(f"stopped early at accuracy {accuracy:.4f}")
        self.accuracy = accuracy
        self.metrics = metrics


@dataclasses.dataclass(frozen=True)
class EarlyStopRule:
    """When to stop a hopeless QAT run in a multi-objective study (Optuna pruners need one value).

    After each epoch, the trial's costs are already known. If some completed, feasible trial is
    at least as cheap in every cost objective and its final accuracy exceeds the current
    accuracy by more than ``margin`` (the most further QAT epochs are assumed to add), this
    trial can no longer reach the Pareto front, so QAT stops and the accuracy reached so far is
    recorded (user attr ``stopped_early``). Single-objective studies use Optuna's pruners
    instead (the accuracy is reported with ``trial.report`` each epoch).

    Attributes:
        margin: Optimistic accuracy gain still possible after an epoch.
        min_epochs: Epochs always run before the rule applies.
    """

    margin: float = 0.05
    min_epochs: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError(f"EarlyStopRule.margin must be in [0, 1], got {self.margin}.")
        if self.min_epochs < 1:
            raise ValueError(f"EarlyStopRule.min_epochs must be >= 1, got {self.min_epochs}.")


class MPQObjective:
    """An Optuna objective for mixed-precision quantization search.

    Per trial: suggest a config through ``space``; compute its hardware costs (cheap) and record
    them; if a budget or the device capacity is violated, record the violation with
    :meth:`optuna.Trial.set_constraint` and skip training (the sampler learns from it);
    otherwise run QAT/PTQ through ``accuracy_fn`` and return the chosen metrics: each
    :data:`~optuna_kmtpe.records.COST` metric from the costs, each
    :data:`~optuna_kmtpe.records.TRAINING` metric (accuracy, ``val_loss``, ...) from what
    ``accuracy_fn`` measured, each recorded under its name. A failing trial
    (NaN loss, out of memory, an error in one config) fails alone: the reason is stored in the
    user attr ``fail_reason`` and the study goes on.

    Use :func:`make_objective` to build one from a model, data and hardware model.

    Args:
        space: Turns a trial into a config.
        cost_fn: Config -> :class:`CostRecord`.
        accuracy_fn: ``(config, report_epoch) -> accuracy`` or ``{training metric: value}``,
            holding at least the accuracy and every training metric of ``metrics``.
        metrics: Metric names returned, in order (see :data:`METRICS`).
        budgets: Upper limits on cost metrics; violations become constraints.
        early_stop: Rule that ends hopeless QAT runs in multi-objective studies (None: never).
        infeasible_accuracy: Accuracy recorded for infeasible configs, which are never trained
            (None: the worst value, 0 or +inf for a minimized metric; the other training
            metrics get -inf or +inf).
        quality_direction: Direction of the ``"accuracy"`` objective (``"minimize"`` when a
            user metric such as an error replaces accuracy).
        reuse_duplicates: When the sampler proposes a config that a completed trial already
            evaluated (common on discrete spaces), copy that trial's results instead of
            training again (user attr ``duplicate_of``); a config another worker is training
            is waited for and then reused. Accuracy is a deterministic function
            of the config under a fixed recipe, so nothing is lost.
    """

    def __init__(
        self,
        *,
        space: ConfigSpace,
        cost_fn: CostFunction,
        accuracy_fn: AccuracyFunction,
        metrics: Sequence[str] = DEFAULT_OBJECTIVES,
        budgets: Mapping[str, float] | None = None,
        early_stop: EarlyStopRule | None = EarlyStopRule(),
        infeasible_accuracy: float | None = None,
        reuse_duplicates: bool = True,
        quality_direction: str = "maximize",
    ) -> None:
        self.metrics = validate_metrics(metrics)
        # Measured by training: the quality slot, always recorded, and any other objective.
        self._training = (keys.QUALITY_SLOT,) + tuple(
            n
            for n in self.metrics
            if METRICS[n].source == keys.TRAINING and n != keys.QUALITY_SLOT
        )
        self.budgets = validate_budgets(dict(budgets or {}))
        self._space = space
        self._cost_fn = cost_fn
        self._accuracy_fn = accuracy_fn
        self._early_stop = early_stop
        if quality_direction not in ("maximize", "minimize"):
            raise ValueError(
                f"quality_direction must be 'maximize' or 'minimize', got {quality_direction!r}."
            )
        self._quality_direction = quality_direction
        if infeasible_accuracy is None:  # the worst value: an untrained config never wins
            infeasible_accuracy = 0.0 if quality_direction == "maximize" else math.inf
        self._infeasible_accuracy = float(infeasible_accuracy)
        self._reuse_duplicates = reuse_duplicates
        self._duplicate_poll_s = 1.0

    @property
    def directions(self) -> list[str]:
        """Study directions matching :attr:`metrics` (pass to ``optuna.create_study``)."""
        return [
            self._quality_direction if name == keys.QUALITY_SLOT else METRICS[name].direction
            for name in self.metrics
        ]

    @property
    def space(self) -> ConfigSpace:
        """The space that turns trials into configs."""
        return self._space

    def known_costs(self) -> KnownCosts:
        """``params -> values`` of the metrics known before training (``None`` for the others).

        Pass it to :class:`~optuna_kmtpe.KMeansTPESampler` as ``known_objectives`` (or use
        :func:`~optuna_kmtpe.objectives.sampler_forecast`).
        """
        return KnownCosts(space=self._space, cost_fn=self._cost_fn, metrics=self.metrics)

    @property
    def metric_names(self) -> list[str]:
        """Names for ``study.set_metric_names`` (shown by optuna-dashboard)."""
        return list(self.metrics)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        try:
            return self._run(trial)
        except (optuna.TrialPruned, KeyboardInterrupt):
            raise
        except Exception as exc:  # a failing trial must fail alone
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(keys.FAIL_REASON, reason[:2000])
            trial.set_user_attr(keys.FAIL_TRACEBACK, traceback.format_exc()[-4000:])
            _logger.warning("Trial %d failed: %s", trial.number, reason)
            nan = float("nan")
            return nan if len(self.metrics) == 1 else tuple(nan for _ in self.metrics)

    def _run(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        config = self._space.suggest(trial)
        trial.set_user_attr(keys.CONFIG, config.to_dict())
        if self._reuse_duplicates:
            previous = _same_config_trial(trial, config, wait_s=self._duplicate_poll_s)
            if previous is not None:
                return self._reuse(trial, previous)
        costs = self._cost_fn(config)
        for name, value in costs.metrics.items():
            trial.set_user_attr(name, float(value))
        trial.set_user_attr(keys.LAYER_LATENCY_S, dict(costs.layer_latency_s))
        trial.set_user_attr(keys.LAYER_ENERGY_J, dict(costs.layer_energy_j))

        violations = self._violations(costs)
        feasible = keys.record_constraints(trial, violations) if violations else True
        trial.set_user_attr(keys.FEASIBLE, feasible)

        if not feasible:
            trial.set_user_attr(keys.SKIPPED_TRAINING, True)
            measured = self._infeasible_values()
        else:
            measured = self._train(trial, config, costs)
        for name in self._training:
            trial.set_user_attr(name, measured[name])
        values = [
            measured[name] if name in measured else float(costs.metrics[name])
            for name in self.metrics
        ]
        return values[0] if len(values) == 1 else tuple(values)

    def _train(
        self, trial: optuna.Trial, config: QuantConfig, costs: CostRecord
    ) -> dict[str, float]:
        """Run ``accuracy_fn``; its training metrics by name, each checked finite."""
        start = time.perf_counter()
        try:
            result = self._accuracy_fn(config, self._epoch_reporter(trial, costs))
        except StopTraining as stop:
            trial.set_user_attr(keys.STOPPED_EARLY, True)
            result = stop.metrics if stop.metrics is not None else stop.accuracy
        trial.set_user_attr(keys.TRAIN_TIME_S, time.perf_counter() - start)
        if not isinstance(result, Mapping):
            result = {keys.QUALITY_SLOT: result}
        measured: dict[str, float] = {}
        for name in self._training:
            if name not in result:
                raise ValueError(
                    f"The training function measured no {name!r} (it returned {sorted(result)})."
                )
            measured[name] = float(result[name])
            if not math.isfinite(measured[name]):
                raise FloatingPointError(f"{name} is {measured[name]} (training diverged?)")
        return measured

    def _infeasible_values(self) -> dict[str, float]:
        """The worst value of each training metric: an untrained config never wins."""
        worst = {"maximize": -math.inf, "minimize": math.inf}
        values = {name: worst[METRICS[name].direction] for name in self._training}
        return {**values, keys.QUALITY_SLOT: self._infeasible_accuracy}

    def _reuse(self, trial: optuna.Trial, previous: FrozenTrial) -> float | tuple[float, ...]:
        attrs = previous.user_attrs
        for key, value in attrs.items():
            if key not in (keys.WORKER, keys.WARM_START, keys.CONSTRAINTS, keys.DUPLICATE_OF):
                trial.set_user_attr(key, value)
        trial.set_user_attr(keys.DUPLICATE_OF, previous.number)
        constraints = attrs.get(keys.CONSTRAINTS)
        if constraints:
            keys.record_constraints(trial, constraints)
        values = [float(attrs[name]) for name in self.metrics]
        return values[0] if len(values) == 1 else tuple(values)

    def _violations(self, costs: CostRecord) -> dict[str, float]:
        # Relative excess, so that violations of different units are comparable.
        violations = {
            n: float(costs.metrics[n]) / budget - 1.0 for n, budget in self.budgets.items()
        }
        return {**violations, **{f"device_{n}": float(a) for n, a in costs.violations.items()}}

    def _epoch_reporter(
        self, trial: optuna.Trial, costs: CostRecord
    ) -> Callable[[int, float], None]:
        # Only the accuracy is seen each epoch: it prunes a study that optimizes it alone, and
        # stops a run early only when it is the one objective that training decides.
        prunable = self.metrics == (keys.QUALITY_SLOT,)
        cost_names = [name for name in self.metrics if name not in self._training]
        stoppable = keys.QUALITY_SLOT in self.metrics and len(self._training) == 1
        rule = self._early_stop if stoppable and cost_names else None

        def report_epoch(epoch: int, accuracy: float) -> None:
            trial.set_user_attr(keys.EPOCH_ACCURACY + str(epoch), float(accuracy))
            if prunable:
                trial.report(float(accuracy), epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}, accuracy {accuracy:.4f}")
            elif rule is not None and epoch + 1 >= rule.min_epochs:
                if _is_hopeless(trial, costs, accuracy, cost_names, rule.margin):
                    raise StopTraining(accuracy)

        return report_epoch


def _same_config_trial(
    trial: optuna.Trial, config: QuantConfig, *, wait_s: float = 1.0
) -> FrozenTrial | None:
    """The completed trial that evaluated ``config``, waiting for one still being trained.

    A RUNNING trial with the same config (another worker trains it) is waited for, polling
    every ``wait_s`` seconds, and then reused, instead of training the config twice: a
    lower-numbered one, or a higher-numbered one that already passed this check (it records
    its costs next, so it has ``layer_latency_s``; it checked before this trial recorded its
    config). Neither kind waits for this trial, so two trials never wait for each other; a
    trial whose process died (:func:`records.is_orphaned`, or a stale heartbeat) is not waited
    for.
    """
    wanted = config.to_dict()
    study = trial.study
    while True:
        waiting_for = None
        states = (TrialState.COMPLETE, TrialState.RUNNING)
        for other in study.get_trials(deepcopy=False, states=states):
            attrs = other.user_attrs
            if other.number == trial.number or attrs.get(keys.CONFIG) != wanted:
                continue
            if other.state == TrialState.COMPLETE:
                if not attrs.get(keys.STOPPED_EARLY):
                    return other
            elif (
                other.number < trial.number or keys.LAYER_LATENCY_S in attrs
            ) and not keys.is_orphaned(other):
                waiting_for = other
        if waiting_for is None:
            return None
        time.sleep(wait_s)
        optuna.storages.fail_stale_trials(study)  # a dead worker on another host


def _is_hopeless(
    trial: optuna.Trial,
    costs: CostRecord,
    accuracy: float,
    cost_names: Sequence[str],
    margin: float,
) -> bool:
    study = trial.study
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = other.user_attrs
        if not attrs.get(keys.FEASIBLE, True) or attrs.get(keys.STOPPED_EARLY):
            continue
        other_acc = attrs.get(keys.ACCURACY)
        if other_acc is None or other_acc <= accuracy + margin:
            continue
        if all(_no_worse(name, attrs.get(name), costs.metrics[name]) for name in cost_names):
            return True
    return False


def _no_worse(name: str, other: Any, mine: float) -> bool:
    if other is None:
        return False
    if METRICS[name].direction == "minimize":
        return float(other) <= mine
    return float(other) >= mine
