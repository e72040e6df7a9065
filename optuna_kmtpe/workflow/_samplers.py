"""The sampler of a kmtpe process: chosen by name, seeded by its first trial, fed a forecast."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_kmtpe import records as keys
from optuna_kmtpe.objectives import sampler_forecast
from optuna_kmtpe.records import METRICS
from optuna_kmtpe.sampler import KMeansTPESampler
from optuna_kmtpe.workflow._settings import SearchSettings


if TYPE_CHECKING:
    from optuna_kmtpe.objectives import MPQObjective
    from optuna_kmtpe.workflow._prepare import SearchJob


def make_sampler(
    name: str,
    *,
    seed: int | None,
    n_objectives: int,
    forecast: Mapping[str, Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler named on the command line.

    Args:
        name: ``kmtpe``, ``tpe``, ``random`` or ``nsga2``.
        seed: Sampler seed.
        n_objectives: Number of objectives of the study.
        forecast: For ``kmtpe``: known objectives, predictor and region of interest
            (:func:`optuna_kmtpe.objectives.sampler_forecast`); ignored by the others.
    """
    if name == "kmtpe":
        return KMeansTPESampler(seed=seed, **dict(forecast or {}))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    raise ValueError(f"Unknown sampler {name!r}; choose kmtpe, tpe, random or nsga2.")


def forecast_for(
    settings: SearchSettings, objective: MPQObjective, job: SearchJob
) -> dict[str, Any] | None:
    """The K-Means TPE forecast of a job, when its objectives have a training metric and a
    cost."""
    sources = {METRICS[name].source for name in objective.metrics}
    if settings.sampler != "kmtpe" or sources != {keys.COST, keys.TRAINING}:
        return None
    if settings.metric is not None:  # the Hessian prior forecasts accuracy, not a user metric
        return None
    return sampler_forecast(
        objective,
        report=job.report,
        model=job.model,
        val_loader=job.val_loader,
        loss=settings.loss,
        accuracy_window=settings.accuracy_window,
        calibration_loader=job.train_loader if settings.pruning_prior else None,
        example_input=job.example_input,
        graph=job.graph,
    )


def sampler_seed(seed: int, first_trial: int) -> int:
    """The sampler seed of a process whose first trial is number ``first_trial``.

    A fresh study (first trial 0) uses the study seed itself. A resumed run or a worker derives
    its seed from the study seed and its first trial number: no process id, so resuming the same
    study from the same point repeats the same proposals, and trial numbers are unique, so two
    workers started together never replay one random stream.

    Example:
        >>> sampler_seed(3, 0), sampler_seed(3, 12) == sampler_seed(3, 12)
        (3, True)
    """
    if first_trial == 0:
        return seed
    return (seed * 1_000_003 + first_trial * 7919) % 2**31


class ProcessSampler(optuna.samplers.BaseSampler):
    """The sampler of one kmtpe process: built at the process's first trial with
    :func:`sampler_seed`, and tagging each trial with its worker the moment it is created (so a
    killed process's trial is recognized at once, :func:`records.is_orphaned`)."""

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], *, seed: int) -> None:
        self._build = build
        self._seed = seed
        self._sampler: optuna.samplers.BaseSampler | None = None
        self._worker = keys.worker_id()
        self.seed: int | None = None
        """The seed the sampler was built with (None before the first trial)."""
        self.last_trial_id: int | None = None
        """Storage id of the trial this process started last."""

    def _inner(self, first_trial: int = 0) -> optuna.samplers.BaseSampler:
        if self._sampler is None:
            self.seed = sampler_seed(self._seed, first_trial)
            self._sampler = self._build(self.seed)
        return self._sampler

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, keys.WORKER, self._worker)
        self.last_trial_id = trial._trial_id
        self._inner(trial.number).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> Any:
        return self._inner().infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: Any) -> Any:
        return self._inner().sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self._inner().sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner().after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        if self._sampler is not None:
            self._sampler.reseed_rng()
