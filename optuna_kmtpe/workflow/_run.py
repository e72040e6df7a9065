"""Run, resume and join searches on an Optuna storage: the orchestration of ``kmtpe search``.

The parts live by concern: the study (found, created, resumed, counted) in ``_study.py``, the
sampler in ``_samplers.py``, the job's artifacts in ``_prepare.py``, what is printed in
``_tables.py`` and the storage's reliability in ``_storage.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Sequence
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from optuna_kmtpe import records as keys
from optuna_kmtpe.objectives import EarlyStopRule
from optuna_kmtpe.objectives import make_objective
from optuna_kmtpe.objectives import warm_start_study
from optuna_kmtpe.records import study_metrics
from optuna_kmtpe.workflow._prepare import check_settings
from optuna_kmtpe.workflow._prepare import load_data
from optuna_kmtpe.workflow._prepare import prepare_job
from optuna_kmtpe.workflow._prepare import recipe_for
from optuna_kmtpe.workflow._samplers import ProcessSampler
from optuna_kmtpe.workflow._samplers import forecast_for
from optuna_kmtpe.workflow._samplers import make_sampler
from optuna_kmtpe.workflow._settings import SearchSettings
from optuna_kmtpe.workflow._sources import check_stored_sources
from optuna_kmtpe.workflow._sources import metric_function
from optuna_kmtpe.workflow._sources import source_key
from optuna_kmtpe.workflow._storage import drop_waiting
from optuna_kmtpe.workflow._storage import recover_orphans
from optuna_kmtpe.workflow._study import COUNTED
from optuna_kmtpe.workflow._study import count_complete
from optuna_kmtpe.workflow._study import create_study
from optuna_kmtpe.workflow._study import existing_study
from optuna_kmtpe.workflow._study import resume
from optuna_kmtpe.workflow._study import retry_interrupted
from optuna_kmtpe.workflow._tables import TrialLine
from optuna_kmtpe.workflow._tables import running_line
from optuna_kmtpe.workflow._tables import warm_start_line


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
    storage, study = existing_study(settings, join_only=join_only)
    if study is not None:
        resumed = resume(study, settings, explicit=explicit, join_only=join_only)
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
        log(f"Resuming study {settings.study_name!r}: {count_complete(study)} trials complete.")
    job = prepare_job(settings, study, log=log, progress=progress)
    if study is None:
        study = create_study(settings, storage, job)
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
    sampler = ProcessSampler(
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
        optuna.study.MaxTrialsCallback(settings.n_trials, states=COUNTED),
        TrialLine(settings.n_trials, study_metrics(study), log),
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
            remaining = settings.n_trials - count_complete(study)
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
            before = count_complete(study)
            study.optimize(
                tagged_objective, n_trials=remaining, timeout=left, callbacks=all_callbacks
            )
            if count_complete(study) == before:
                log(
                    "No trial completed in this round (see each trial's fail_reason); "
                    "stopping. Run the same command again after fixing the cause."
                )
                break
    except KeyboardInterrupt:
        retry_interrupted(study, sampler.last_trial_id)
        raise
    if count_complete(study) >= settings.n_trials:
        if not announced:
            log(f"The study already holds {count_complete(study)} >= {settings.n_trials} trials.")
        drop_waiting(study)
    _publish_dashboard(study)
    return study


# The dashboard (plotly, about 1.5 s to import) is loaded when a run starts, not with
# `optuna_kmtpe.workflow`; a run goes on without it if it cannot be imported.
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
