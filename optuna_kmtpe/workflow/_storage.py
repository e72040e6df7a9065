"""Open Optuna storages without side effects, and keep a study's trials whole after kills.

A killed or interrupted trial is failed and retried with the same parameters, on every storage:
RDB storages also fail it by heartbeat (other hosts), and :func:`recover_orphans` fails the
trials of dead processes of this host at once (journal storages have no heartbeat, and an
immediate re-run would otherwise wait out the heartbeat's grace period).
"""

from __future__ import annotations

from collections.abc import Callable
import datetime
from pathlib import Path
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_kmtpe import records as keys


MAX_RETRY = 2
"""How often one killed trial's parameters are retried before the sampler moves on."""

_RETRY_USER_ATTRS = (keys.WARM_START,)
"""User attributes a retry inherits (the rest describe the failed attempt)."""


class StudyError(ValueError):
    """A storage or study problem the user can fix (wrong URL, missing study, ...)."""


def storage_file(url: str) -> Path | None:
    """The file behind a SQLite URL or a journal path; None for servers and in-memory SQLite.

    Example:
        >>> str(storage_file("sqlite:///runs/kmtpe.db"))
        'runs/kmtpe.db'
        >>> storage_file("postgresql://kmtpe@db/kmtpe") is None
        True
    """
    if "://" not in url:
        return Path(url)
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:  # noqa: BLE001 - a malformed URL is reported by open_storage
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return keys.redact_credentials(text[0] if text else type(exc).__name__)


def open_storage(url: str, *, create: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL (RDB, with heartbeats) or a file path (journal storage).

    Heartbeats let a killed worker's RUNNING trial be failed and retried by the next process.

    Args:
        url: ``sqlite:///file.db``, ``postgresql+psycopg2://...``, ... or a journal file path.
        create: Create a missing SQLite or journal file. Only ``kmtpe search`` creates one;
            reading commands on a mistyped path fail instead of leaving an empty database.

    Raises:
        StudyError: With one line naming the (redacted) URL and what to do.
    """
    shown = keys.redact_credentials(url)
    path = storage_file(url)
    if path is not None:
        parent = path.parent
        if not parent.is_dir():
            raise StudyError(
                f"The directory {str(parent)!r} of the storage {shown!r} does not exist; create "
                "it or fix the path."
            )
        if not create and not path.exists():
            raise StudyError(
                f"There is no storage file {str(path)!r} ({shown!r}); check the path (`kmtpe "
                "search` creates it)."
            )
    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        except OSError as exc:
            raise StudyError(f"Cannot open the journal storage file {shown!r}: {exc}.") from None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return _rdb_storage(url, engine_kwargs)
    except ImportError as exc:
        raise StudyError(
            f"The storage {shown!r} needs a database driver that is not installed "
            f"({_first_line(exc)}); for PostgreSQL run: pip install 'optuna-kmtpe[postgres]'."
        ) from None
    except Exception as exc:  # SQLAlchemy raises many types for bad URLs and dead servers
        raise StudyError(
            f"Cannot open the storage {shown!r}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None


def _rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=10,
                grace_period=30,
                heartbeat_stale_trial_callback=retry_trial,
            )
        except Exception as exc:
            if not _lost_schema_race(exc) or attempt == _SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _lost_schema_race(exc: BaseException) -> bool:
    """Whether ``exc`` is another process creating the same new database's schema first.

    Creating the tables then sees "table ... already exists"; recording the schema version sees
    a unique-constraint violation on ``alembic_version`` (SQLite: "UNIQUE constraint failed",
    PostgreSQL: "duplicate key value"). The schema is complete a moment later.
    """
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError) or "already exists" in str(exc)


_SCHEMA_ATTEMPTS = 5


def find_study(storage: optuna.storages.BaseStorage, name: str, *, url: str) -> Any | None:
    """The study ``name`` if the storage holds it, else None (nothing is written)."""
    try:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    except Exception as exc:  # noqa: BLE001 - database errors of any driver
        raise StudyError(
            f"Cannot read the storage {keys.redact_credentials(url)!r}: {_first_line(exc)}"
        ) from None
    if not any(s.study_name == name for s in summaries):
        return None
    return optuna.load_study(study_name=name, storage=storage)


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue a failed trial's parameters again (at most :data:`MAX_RETRY` times per trial).

    The retry keeps the warm-start label and records Optuna's ``failed_trial`` and
    ``retry_history`` system attributes (``RetryFailedTrialCallback.retried_trial_number``
    reads them). A trial killed before its objective suggested everything is retried with the
    parameters it had, its enqueued ones included (a warm start killed early stays a warm
    start); one that had none is not retried: the sampler proposes anew. Used as the RDB
    heartbeat callback and for killed and interrupted trials.
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    fixed = dict(trial.system_attrs.get("fixed_params") or {})
    if len(history) > MAX_RETRY or not (trial.params or fixed):
        return
    system_attrs = {
        "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
        "retry_history": history,
    }
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k in _RETRY_USER_ATTRS}
    if fixed:  # enqueued parameters (study.enqueue_trial's format), sampled ones on top
        system_attrs["fixed_params"] = {**fixed, **trial.params}
    retry = optuna.create_trial(
        state=TrialState.WAITING,
        params=None if fixed else trial.params,
        distributions=None if fixed else trial.distributions,
        user_attrs=user_attrs,
        system_attrs=system_attrs,
    )
    study.add_trial(retry)


def fail_and_retry(study: optuna.Study, trial: FrozenTrial, *, reason: str) -> bool:
    """Fail a RUNNING trial with ``reason`` and retry it; False if another process was first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, keys.FAIL_REASON, reason)
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    retry_trial(study, storage.get_trial(trial._trial_id))
    return True


def recover_orphans(study: optuna.Study, *, log: Callable[[str], None] = print) -> int:
    """Fail and retry the RUNNING trials whose process died (:func:`records.is_orphaned`).

    Returns:
        How many trials this call failed.
    """
    now = datetime.datetime.now()
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if keys.is_orphaned(trial, now=now) and fail_and_retry(
            study, trial, reason=keys.FAIL_REASON_ORPHANED
        ):
            log(f"Trial {trial.number} was left RUNNING by a dead process: failed, retrying.")
            recovered += 1
    return recovered


def drop_waiting(study: optuna.Study) -> int:
    """Fail the WAITING trials (retries, unused warm starts) once the study needs no more.

    Returns:
        How many trials were dropped.
    """
    storage = study._storage
    dropped = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            # Claim it first, as Study.ask does: a worker that popped it meanwhile wins.
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                continue
            storage.set_trial_user_attr(
                trial._trial_id, keys.FAIL_REASON, keys.FAIL_REASON_NOT_NEEDED
            )
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        dropped += 1
    return dropped
