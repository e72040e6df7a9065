"""Run, resume and join searches on an Optuna storage; read their Pareto fronts."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Mapping
from collections.abc import Sequence
import json
import logging
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_kmtpe import records as keys
from optuna_kmtpe.objectives._metrics import quality_metric
from optuna_kmtpe.records import METRICS
from optuna_kmtpe.records import Metric
from optuna_kmtpe.records import objective_metrics
from optuna_kmtpe.records import save_study_metrics
from optuna_kmtpe.records import study_metrics
from optuna_kmtpe.records import study_quality
from optuna_kmtpe.sampler import PREDICTION_ATTR_KEY
from optuna_kmtpe.workflow._budgets import over_budget_note
from optuna_kmtpe.workflow._prepare import SearchJob
from optuna_kmtpe.workflow._prepare import check_inputs
from optuna_kmtpe.workflow._prepare import prepare_job
from optuna_kmtpe.workflow._prepare import recipe_for
from optuna_kmtpe.workflow._settings import SearchSettings
from optuna_kmtpe.workflow._settings import resumed_settings
from optuna_kmtpe.workflow._storage import StudyError
from optuna_kmtpe.workflow._storage import drop_waiting
from optuna_kmtpe.workflow._storage import fail_and_retry
from optuna_kmtpe.workflow._storage import find_study
from optuna_kmtpe.workflow._storage import open_storage
from optuna_kmtpe.workflow._storage import recover_orphans
from optuna_kmtpe.workflow._storage import retry_trial
from optuna_kmtpe.workflow._storage import storage_file


__all__ = ["StudyError", "open_storage"]  # re-exported: defined in _storage


_logger = logging.getLogger(__name__)

_COUNTED = (TrialState.COMPLETE,)
"""States counted toward ``n_trials``: a failed, killed or interrupted trial is replaced."""


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
        from optuna_kmtpe import KMeansTPESampler

        return KMeansTPESampler(seed=seed, **dict(forecast or {}))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    raise ValueError(f"Unknown sampler {name!r}; choose kmtpe, tpe, random or nsga2.")


def forecast_for(settings: SearchSettings, objective: Any, job: Any) -> dict[str, Any] | None:
    """The K-Means TPE forecast of a job, when its objectives have a training metric and a
    cost."""
    from optuna_kmtpe.objectives import sampler_forecast

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


class _ProcessSampler(optuna.samplers.BaseSampler):
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


def _existing_study(
    settings: SearchSettings, *, join_only: bool
) -> tuple[optuna.storages.BaseStorage | None, optuna.Study | None]:
    """The storage and study if they exist; reads only (a missing file is not created)."""
    path = storage_file(settings.storage)
    if path is not None and not path.exists() and not join_only:
        if not path.parent.is_dir():
            open_storage(settings.storage)  # raises the missing-directory error
        return None, None  # created with the study, once every check has passed
    storage = open_storage(settings.storage)
    study = find_study(storage, settings.study_name, url=settings.storage)
    if study is None and join_only:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, False)]
        raise StudyError(
            f"No study {settings.study_name!r} in {keys.redact_credentials(settings.storage)!r} "
            f"(studies there: {names}). Start it with `kmtpe search` first."
        )
    return storage, study


def _resume(
    study: optuna.Study,
    settings: SearchSettings,
    *,
    explicit: Collection[str] | None,
    join_only: bool,
) -> SearchSettings | None:
    """The resumed run's settings, or None for an empty study to adopt (a killed first run)."""
    stored = study.user_attrs.get(keys.STUDY_RUN)
    if stored is None:
        if join_only or study.user_attrs or study.get_trials(deepcopy=False):
            raise StudyError(
                f"Study {study.study_name!r} in {keys.redact_credentials(settings.storage)!r} "
                f"was not created by kmtpe (it has no {keys.STUDY_RUN!r} settings) and kmtpe "
                "never writes into it; choose another --study-name."
            )
        return None
    try:
        stored_settings = SearchSettings.from_dict(stored)
    except ValueError as exc:
        raise StudyError(
            f"The settings stored in study {study.study_name!r} are not readable by this "
            f"version of kmtpe ({exc}); start a new study with another --study-name."
        ) from None
    return resumed_settings(stored_settings, settings, explicit=explicit)


def _create_study(
    settings: SearchSettings, storage: optuna.storages.BaseStorage | None, job: SearchJob
) -> optuna.Study:
    """Create the study and store its settings and sensitivity report (after every check)."""
    from optuna_kmtpe.workflow._sources import save_sources

    storage = storage or open_storage(settings.storage, create=True)
    quality = settings_quality(settings)
    directions = [m.direction for m in objective_metrics(settings.objectives, quality=quality)]
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=storage,
        directions=directions,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != directions:
        raise StudyError(
            f"Study {settings.study_name!r} optimizes {[d.name.lower() for d in study.directions]}"
            f", not {directions}; choose another --study-name."
        )
    study.set_user_attr(keys.STUDY_RUN, settings.to_dict())
    save_study_metrics(study, settings.objectives, quality=quality)
    job.report.save_to_study(study)
    save_sources(study, job.sources)
    return study


def settings_quality(settings: SearchSettings) -> Metric:
    """The quality metric of a run: accuracy, or the user's ``metric`` under its own name."""
    return quality_metric(settings.metric, direction=settings.metric_direction)


def run_search(
    settings: SearchSettings,
    *,
    join_only: bool = False,
    explicit: Collection[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> optuna.Study:
    """Run (or resume, or join) a search until the study holds ``n_trials`` COMPLETE trials.

    Every input is checked before anything is written: a rejected run leaves no study, no
    settings and no database file behind. Re-running with the same storage and study name
    resumes: finished trials are kept, the stored settings and sensitivity report are reused,
    warm starts are not enqueued twice. A trial that was killed or interrupted is failed and
    retried with the same parameters, and failed trials do not count toward ``n_trials``, so
    after any crash one re-run of the same command completes the study.

    Args:
        settings: The run's settings. For an existing study only the resumable settings
            (:data:`~optuna_kmtpe.workflow._settings.RESUMABLE`: trial count, timeout,
            threads, cache directory, storage URL) are taken from here; any other setting
            in ``explicit`` that differs from the stored study's is an error.
        join_only: Join an existing study (``kmtpe worker``); error if it does not exist.
        explicit: The settings the user set (the command line passes its flags and TOML
            keys); None: see :func:`~optuna_kmtpe.workflow._settings.resumed_settings`.
        log: Where progress lines go.
        progress: Show progress bars for long steps.
        callbacks: Extra ``study.optimize`` callbacks.

    Returns:
        The study.
    """
    from optuna_kmtpe.objectives import EarlyStopRule
    from optuna_kmtpe.objectives import make_objective
    from optuna_kmtpe.objectives import warm_start_study
    from optuna_kmtpe.workflow._prepare import load_data
    from optuna_kmtpe.workflow._sources import check_stored_sources
    from optuna_kmtpe.workflow._sources import metric_function
    from optuna_kmtpe.workflow._sources import source_key

    storage, study = _existing_study(settings, join_only=join_only)
    if study is not None:
        resumed = _resume(study, settings, explicit=explicit, join_only=join_only)
        if resumed is None:  # an empty study a killed first run left: start it afresh
            study = None
        else:
            settings = resumed
    check_settings(settings)
    if study is not None:
        # Before a word is printed or a trial touched: never resume on changed code or data.
        check_stored_sources(study, source_key(settings, load_data(settings)))
        optuna.storages.fail_stale_trials(study)
        recover_orphans(study, log=log)
        log(f"Resuming study {settings.study_name!r}: {_count(study)} trials complete.")
    job = prepare_job(settings, study, log=log, progress=progress)
    if study is None:
        study = _create_study(settings, storage, job)
    log(job.space.describe() if hasattr(job.space, "describe") else "")

    objective = make_objective(
        model=job.model,
        train_loader=job.train_loader,
        val_loader=job.val_loader,
        space=job.space,
        fpga=job.fpga,
        example_input=job.example_input,
        shapes=job.shapes,
        graph=job.graph,
        metrics=settings.objectives,
        budgets=settings.budgets,
        recipe=recipe_for(settings),
        early_stop=EarlyStopRule(),
        metric=metric_function(settings),
        metric_direction=settings.metric_direction,
    )
    forecast = forecast_for(settings, objective, job)
    sampler = _ProcessSampler(
        lambda seed: make_sampler(
            settings.sampler,
            seed=seed,
            n_objectives=len(settings.objectives),
            # Costs are exact and free before training; the Hessian prior forecasts accuracy.
            forecast=forecast,
        ),
        seed=settings.seed,
    )
    study.sampler = sampler
    if settings.warm_start and not join_only:
        n = warm_start_study(
            study, job.space, weight_bits=settings.weight_bits, act_bits=settings.act_bits,
            forecast=forecast, max_trials=settings.n_trials, log=log,
        )  # fmt: skip
        if n:
            log(warm_start_line(n, n_trials=settings.n_trials, sampler=settings.sampler))

    all_callbacks = [
        optuna.study.MaxTrialsCallback(settings.n_trials, states=_COUNTED),
        _TrialLine(settings.n_trials, study_metrics(study), log),
        *_dashboard_callbacks(),
        *callbacks,
    ]

    def tagged_objective(trial: optuna.Trial) -> Any:
        try:
            return objective(trial)
        except KeyboardInterrupt:
            trial.set_user_attr(keys.FAIL_REASON, keys.FAIL_REASON_INTERRUPTED)
            raise

    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    announced = False
    try:
        while True:
            recover_orphans(study, log=log)
            remaining = settings.n_trials - _count(study)
            left = None if deadline is None else deadline - time.monotonic()
            if remaining <= 0 or (left is not None and left <= 0):
                break
            if not announced:
                log(
                    running_line(
                        remaining, n_trials=settings.n_trials, sampler=settings.sampler,
                        worker=join_only,
                    )
                )  # fmt: skip
                announced = True
            before = _count(study)
            study.optimize(
                tagged_objective, n_trials=remaining, timeout=left, callbacks=all_callbacks
            )
            if _count(study) == before:
                log(
                    "No trial completed in this round (see each trial's fail_reason); "
                    "stopping. Run the same command again after fixing the cause."
                )
                break
    except KeyboardInterrupt:
        _retry_interrupted(study, sampler.last_trial_id)
        raise
    if _count(study) >= settings.n_trials:
        if not announced:
            log(f"The study already holds {_count(study)} >= {settings.n_trials} trials.")
        drop_waiting(study)
    _publish_dashboard(study)
    return study


def warm_start_line(n_warm: int, *, n_trials: int, sampler: str) -> str:
    """What the warm starts take of a run: a short run may be all warm starts.

    Example:
        >>> warm_start_line(5, n_trials=40, sampler="kmtpe").split(": ")[1]
        'trials 1-5 of 40; the kmtpe sampler proposes the other 35.'
        >>> warm_start_line(5, n_trials=5, sampler="kmtpe").split(": ")[1]
        'all 5 trials are warm starts, the kmtpe sampler proposes none (use --trials > 5).'
    """
    head = f"Enqueued {n_warm} warm-start configs (uniform 8/4-bit, HAWQ-V2): "
    if n_warm >= n_trials:
        return (
            f"{head}all {n_trials} trials are warm starts, the {sampler} sampler proposes none "
            f"(use --trials > {n_warm})."
        )
    return (
        f"{head}trials 1-{n_warm} of {n_trials}; the {sampler} sampler proposes the other "
        f"{n_trials - n_warm}."
    )


def running_line(remaining: int, *, n_trials: int, sampler: str, worker: bool) -> str:
    """The line that starts the trials; a worker's count is the study's total, not its own.

    Example:
        >>> running_line(3, n_trials=10, sampler="kmtpe", worker=True)[:76]
        'Running up to 3 trials (sampler: kmtpe) until the study holds 10 COMPLETE tr'
    """
    if not worker:
        return f"Running {remaining} trials (sampler: {sampler})."
    return (
        f"Running up to {remaining} trials (sampler: {sampler}) until the study holds "
        f"{n_trials} COMPLETE trials (--trials is the study's total, every worker's trials "
        "count)."
    )


def _retry_interrupted(study: optuna.Study, trial_id: int | None) -> None:
    """Fail (if still RUNNING) and retry the trial a Ctrl-C interrupted."""
    if trial_id is None:
        return
    trial = study._storage.get_trial(trial_id)
    if trial.state == TrialState.RUNNING:
        fail_and_retry(study, trial, reason=keys.FAIL_REASON_INTERRUPTED)
    elif trial.state == TrialState.FAIL and (
        trial.user_attrs.get(keys.FAIL_REASON) == keys.FAIL_REASON_INTERRUPTED
    ):
        retry_trial(study, trial)


def check_settings(settings: SearchSettings) -> None:
    """Fail fast, before anything is written, loaded or trained: names that do not exist, a
    user's model, data or metric that cannot be imported or does not fit
    (:func:`~optuna_kmtpe.workflow._sources.check_sources`), a dataset directory that is
    missing, a cache directory that cannot be written."""
    from optuna_kmtpe.hardware import get_device
    from optuna_kmtpe.workflow._sources import check_sources

    get_device(settings.device)
    check_inputs(settings)
    check_sources(settings)


def _count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_COUNTED))


def _dashboard_callbacks() -> list[Callable[[optuna.Study, FrozenTrial], None]]:
    try:
        from optuna_kmtpe.dashboard import DashboardCallback
    except ImportError:
        return []
    return [DashboardCallback(every_n_trials=5)]


def _publish_dashboard(study: optuna.Study) -> None:
    try:
        from optuna_kmtpe.dashboard import publish_dashboard
    except ImportError:
        return
    publish_dashboard(study)


class _TrialLine:
    """One compact progress line per finished trial."""

    def __init__(
        self, n_trials: int, metrics: Sequence[Metric], log: Callable[[str], None]
    ) -> None:
        self._n_trials = n_trials
        self._metrics = list(metrics)
        self._log = log

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = _count(study)
        if trial.state == TrialState.COMPLETE:
            shown = [f"{m.name} {m.format(v)}" for m, v in zip(self._metrics, trial.values)]
            forecast = trial.user_attrs.get(PREDICTION_ATTR_KEY)
            if forecast:
                # What the sampler expected, next to what QAT measured: trust it or not.
                for index, mean, std in zip(
                    forecast["objectives"], forecast["mean"], forecast["std"]
                ):
                    metric = self._metrics[index]
                    shown[index] += f" (forecast {metric.format(mean)} +-{metric.format(std)})"
            if not trial.user_attrs.get(keys.FEASIBLE, True):
                # Never trained: its quality value is a placeholder, the reason is the news.
                costs = [s for m, s in zip(self._metrics, shown) if m.source == keys.COST]
                shown = [over_budget_note(trial.user_attrs), *costs]
            values = "  ".join(shown)
            config = trial.user_attrs.get(keys.CONFIG)
            bits = compact_bits(config) if config else ""
            self._log(f"[{done}/{self._n_trials}] trial {trial.number}: {values}  {bits}")
        else:
            reason = trial.user_attrs.get(keys.FAIL_REASON) or trial.system_attrs.get(
                "fail_reason", ""
            )
            self._log(
                f"[{done}/{self._n_trials}] trial {trial.number}: {trial.state.name} {reason}"
            )


def trial_progress(
    n_trials: int, metric_names: Sequence[str], *, log: Callable[[str], None] = print
) -> Callable[[optuna.Study, FrozenTrial], None]:
    """A ``study.optimize`` callback that logs one line per finished trial, as `kmtpe search`.

    Each line shows the count of complete trials, every objective with its unit, the sampler's
    forecast where it made one, and the per-layer bits.

    Args:
        n_trials: The study's trial budget (shown as ``[done/n_trials]``).
        metric_names: The objective's metric names (``MPQObjective.metric_names``).
        log: Where the lines go.
    """
    return _TrialLine(n_trials, [METRICS[name] for name in metric_names], log)


def compact_bits(config: dict[str, dict[str, Any]]) -> str:
    """``w8-4-4-8 a8-8-6-8 x1-.5-1-1``: weight bits, activation bits and widths per layer."""
    layers = list(config.values())
    w = "-".join(str(c["weight_bits"]) for c in layers)
    a = "-".join(str(c["act_bits"]) for c in layers)
    x = "-".join(f"{c['width']:g}".replace("0.", ".") for c in layers)
    return f"w{w} a{a} x{x}"


def pareto_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The feasible Pareto-optimal trials as rows, best quality first (accuracy or the user's
    metric, under its own name and in its direction: :func:`study_quality`).

    Trials that evaluated the same config (a sampler may propose a config twice; the objective
    then reuses the first result) are one row, under the first trial's number, with the others
    in ``"same_config_trials"``.
    """
    metrics = [m.name for m in study_metrics(study)]
    quality = study_quality(study)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []  # study.best_trial raises "Record does not exist." on an empty study
    trials = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    rows = []
    by_config: dict[str, dict[str, Any]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        config_key = json.dumps(trial.user_attrs.get(keys.CONFIG), sort_keys=True)
        if trial.user_attrs.get(keys.CONFIG) and config_key in by_config:
            by_config[config_key]["same_config_trials"].append(trial.number)
            continue
        row: dict[str, Any] = {"trial": trial.number, "same_config_trials": []}
        by_config[config_key] = row
        row.update(dict(zip(metrics, trial.values)))
        row.setdefault(quality.name, trial.user_attrs.get(keys.ACCURACY))
        for extra in (m.name for m in METRICS.values() if m.in_table):
            row.setdefault(extra, trial.user_attrs.get(extra))
        row["config"] = trial.user_attrs.get(keys.CONFIG, {})
        row[keys.WARM_START] = trial.user_attrs.get(keys.WARM_START, "")
        rows.append(row)
    rows.sort(key=lambda r: quality.best_first(r.get(quality.name)))
    return rows


def format_pareto_table(rows: list[dict[str, Any]], *, quality: Metric | None = None) -> str:
    """A plain-text table of :func:`pareto_rows`.

    Args:
        rows: The rows.
        quality: The study's quality metric (:func:`study_quality`; None: accuracy).
    """
    if not rows:
        return "No feasible completed trial yet."
    quality = quality or METRICS[keys.QUALITY_SLOT]
    # The schema's table metrics and any other metric the rows hold (e.g. a cost objective).
    shown = [
        m
        for m in METRICS.values()
        if m.name != keys.QUALITY_SLOT and (m.in_table or any(m.name in r for r in rows))
    ]
    header = ["trial", quality.name, *(m.name for m in shown), "bits (weights / acts / widths)"]
    table = [header]
    for row in rows:
        table.append(
            [
                str(row["trial"])
                + "".join(f"={number}" for number in row.get("same_config_trials", ()))
                + (f" ({row['warm_start']})" if row[keys.WARM_START] else ""),
                quality.format(row.get(quality.name)),
                *(m.format(row.get(m.name)) for m in shown),
                compact_bits(row["config"]) if row["config"] else "",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
