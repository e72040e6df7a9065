"""The study of a run: found or created, its stored settings resumed, its trials counted."""

from __future__ import annotations

from collections.abc import Collection

import optuna
from optuna.trial import TrialState

from optuna_kmtpe import records as keys
from optuna_kmtpe.objectives._metrics import quality_metric
from optuna_kmtpe.records import objective_metrics
from optuna_kmtpe.records import save_study_metrics
from optuna_kmtpe.workflow._prepare import SearchJob
from optuna_kmtpe.workflow._settings import SearchSettings
from optuna_kmtpe.workflow._settings import resumed_settings
from optuna_kmtpe.workflow._sources import save_sources
from optuna_kmtpe.workflow._storage import StudyError
from optuna_kmtpe.workflow._storage import fail_and_retry
from optuna_kmtpe.workflow._storage import find_study
from optuna_kmtpe.workflow._storage import open_storage
from optuna_kmtpe.workflow._storage import retry_trial
from optuna_kmtpe.workflow._storage import storage_file


COUNTED = (TrialState.COMPLETE,)
"""States counted toward ``n_trials``: a failed, killed or interrupted trial is replaced."""


def count_complete(study: optuna.Study) -> int:
    """The trials that count toward ``n_trials`` (:data:`COUNTED`)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def existing_study(
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


def resume(
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


def create_study(
    settings: SearchSettings, storage: optuna.storages.BaseStorage | None, job: SearchJob
) -> optuna.Study:
    """Create the study and store its settings and sensitivity report (after every check)."""
    storage = storage or open_storage(settings.storage, create=True)
    # Accuracy, or the user's metric under its own name.
    quality = quality_metric(settings.metric, direction=settings.metric_direction)
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


def retry_interrupted(study: optuna.Study, trial_id: int | None) -> None:
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
