"""What the objective records in a study, and how constraints are recorded.

One torch-free, plotly-free module that both the objective (which writes these attributes) and
the dashboard helpers and ``kmtpe report`` (which read them) import, so the names cannot drift.
Keep the strings stable: they are stored in users' databases.

Trial user attributes (visible in optuna-dashboard's trials table; each may be missing, a
failed or infeasible trial records fewer):

==========================  ================================================================
key                         value
==========================  ================================================================
``config``                  ``QuantConfig.to_dict()``: ``{layer: {weight_bits, act_bits, width}}``
``accuracy``                validation accuracy in ``[0, 1]`` after QAT/PTQ
``latency_s``               modelled accelerator latency of one inference, seconds
``energy_j``                modelled energy of one inference, joules
``size_bits``               model size, bits
``bops``                    bit operations of one inference
``throughput_ips``          inferences per second of a layer-pipelined design
``dsp_used``                DSP slices the design needs
``feasible``                ``bool``: every budget and the device capacity met
``skipped_training``        ``True`` when an infeasible config was not trained
``stopped_early``           ``True`` when the multi-objective early-stop rule ended QAT
``train_time_s``            wall time of QAT/PTQ, seconds
``layer_latency_s``         ``{layer: seconds}``
``layer_energy_j``          ``{layer: joules}``
``accuracy_epoch_<i>``      validation accuracy after QAT epoch ``i``
``constraints``             ``{name: value}`` written by :func:`record_constraints` (``<= 0``: met)
``fail_reason``             why a failed trial failed (``fail_traceback``: the traceback tail)
``warm_start``              label of an enqueued warm-start config
``worker``                  ``host:pid`` of the process that ran the trial (``kmtpe`` runs)
``duplicate_of``            number of the completed trial whose identical config was reused
==========================  ================================================================

Study user attributes: ``kmtpe:run`` (the run's settings, so workers and resumed runs rebuild the
same job; its storage URL passes through :func:`redact_credentials`, so no password is ever
stored), ``kmtpe:sensitivity`` (the Hessian report, see
:meth:`~optuna_kmtpe.sensitivity.SensitivityReport.save_to_study`), ``kmtpe:warm_started``.

Constraints. Recording constraint values so that Optuna AND optuna-dashboard 0.21 both see them.

Optuna 5's ``Trial.set_constraint(key, value)`` stores each value under the system attribute
``constraints:<key>``. optuna-dashboard 0.21 only reads the legacy list attribute
``constraints`` (the format of the deprecated ``constraints_func``), so constraints set the new
way show as ``[]`` in the dashboard and infeasible trials are not greyed out.

Optuna 5 reads both formats and merges them (``FrozenTrial.constraints`` returns the legacy
values under the keys ``"0"``, ``"1"``, ...), so writing the values in BOTH formats would count
every constraint twice: TPE and NSGA-II would double the violation sums and GPSampler would
model each constraint twice. :func:`record_constraints` therefore writes the legacy list
only (every Optuna 5 sampler and plot reads it) and keeps the names in a trial user attribute
(``constraints``: ``{name: value}``), which the dashboard shows in the trials table.
"""

from __future__ import annotations

from collections.abc import Mapping
import datetime
import math
import os
import re
import socket

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState


CONFIG = "config"
ACCURACY = "accuracy"
LATENCY_S = "latency_s"
ENERGY_J = "energy_j"
SIZE_BITS = "size_bits"
BOPS = "bops"
THROUGHPUT_IPS = "throughput_ips"
DSP_USED = "dsp_used"
FEASIBLE = "feasible"
SKIPPED_TRAINING = "skipped_training"
STOPPED_EARLY = "stopped_early"
TRAIN_TIME_S = "train_time_s"
LAYER_LATENCY_S = "layer_latency_s"
LAYER_ENERGY_J = "layer_energy_j"
EPOCH_ACCURACY = "accuracy_epoch_"
CONSTRAINTS = "constraints"
FAIL_REASON = "fail_reason"
FAIL_TRACEBACK = "fail_traceback"
WARM_START = "warm_start"
WORKER = "worker"
DUPLICATE_OF = "duplicate_of"

TRIAL_METRIC_KEYS: tuple[str, ...] = (
    ACCURACY,
    LATENCY_S,
    ENERGY_J,
    SIZE_BITS,
    BOPS,
    THROUGHPUT_IPS,
    DSP_USED,
    TRAIN_TIME_S,
)
"""Scalar trial user attributes the plots and the note may show."""

STUDY_RUN = "kmtpe:run"
STUDY_SENSITIVITY = "kmtpe:sensitivity"
STUDY_WARM_STARTED = "kmtpe:warm_started"

FAIL_REASON_INTERRUPTED = "interrupted (Ctrl-C); retried by the next run"
FAIL_REASON_ORPHANED = "its process died (killed?); retried"
FAIL_REASON_NOT_NEEDED = "not run: the study already holds the requested number of trials"

UNOWNED_AFTER_S = 30.0
"""A RUNNING trial that names no worker after this many seconds was abandoned (kmtpe tags each
trial with its worker the moment it is created)."""

_LEGACY_KEY = "constraints"
_NEW_FORMAT_PREFIX = "constraints:"


def record_constraints(trial: optuna.Trial, constraints: Mapping[str, float]) -> bool:
    """Record a running trial's constraint values (``<= 0`` means satisfied).

    Use it instead of ``Trial.set_constraint`` so that optuna-dashboard 0.21 shows the values
    and greys out infeasible trials. Calling it again replaces the values.

    Args:
        trial: The running trial (the ``trial`` argument of the objective).
        constraints: Constraint name -> value, e.g. ``{"latency_s": latency - budget}``.
            Order is kept; values must be finite-or-infinite floats, never NaN.

    Returns:
        Whether the trial is feasible (every value ``<= 0``).

    Raises:
        ValueError: On an empty mapping, a non-string name, a NaN or non-numeric value, or if
            the trial already has constraints set with ``Trial.set_constraint`` (mixing the
            two would count each constraint twice).

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> trial = study.ask()
        >>> record_constraints(trial, {"latency_s": -0.2, "dsp": 3.0})
        False
        >>> _ = study.tell(trial, 1.0)
        >>> study.trials[0].constraints
        {'0': -0.2, '1': 3.0}
    """
    if not isinstance(constraints, Mapping) or not constraints:
        raise ValueError(
            "record_constraints needs a non-empty mapping {name: value}, e.g. "
            "{'latency_s': latency - budget}; a value <= 0 means the constraint is met."
        )
    names: list[str] = []
    values: list[float] = []
    for name, value in constraints.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"record_constraints: names must be non-empty strings, got {name!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"record_constraints: the value of {name!r} must be a float, got {value!r}."
            ) from None
        if math.isnan(number):
            raise ValueError(
                f"record_constraints: the value of {name!r} is NaN; record a large positive "
                f"value for a violated constraint or fail the trial instead."
            )
        names.append(name)
        values.append(number)

    storage = trial.storage
    trial_id = trial._trial_id
    system_attrs = storage.get_trial_system_attrs(trial_id)
    already_new = sorted(k for k in system_attrs if k.startswith(_NEW_FORMAT_PREFIX))
    if already_new:
        raise ValueError(
            f"record_constraints: trial {trial.number} already has {already_new} from "
            f"Trial.set_constraint; use only one of the two, or each constraint counts twice."
        )
    storage.set_trial_system_attr(trial_id, _LEGACY_KEY, values)
    # Trial caches a frozen copy; keep it consistent, as Trial.set_constraint does.
    cached = getattr(trial, "_cached_frozen_trial", None)
    if cached is not None:
        cached.system_attrs[_LEGACY_KEY] = values
    trial.set_user_attr(CONSTRAINTS, dict(zip(names, values)))
    return all(v <= 0.0 for v in values)


_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):(?P<secret>[^\s'\"/]*)@"
)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)[^&\s'\"]*", re.I)


def redact_credentials(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    The one redaction applied to everything kmtpe stores or prints that may hold a storage URL:
    the ``kmtpe:run`` settings, the dashboard note, the command's output and its error lines
    (SQLAlchemy repeats the URL in its messages). User, host, port and database stay readable.

    Example:
        >>> redact_credentials("postgresql+psycopg2://kmtpe:s3cret@db:5432/kmtpe")
        'postgresql+psycopg2://kmtpe:***@db:5432/kmtpe'
        >>> redact_credentials("sqlite:///kmtpe.db")
        'sqlite:///kmtpe.db'
    """
    text = _URL_PASSWORD.sub(r"\g<head>:***@", text)
    return _QUERY_PASSWORD.sub(r"\g<head>***", text)


def worker_id() -> str:
    """``host:pid`` of this process, the value of the ``worker`` trial attribute."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def is_orphaned(trial: FrozenTrial, *, now: datetime.datetime | None = None) -> bool:
    """Whether a RUNNING trial's process is gone, so that nobody will ever finish it.

    True when its ``worker`` names a process of this host that no longer exists, or when it
    names no worker :data:`UNOWNED_AFTER_S` seconds after it started. Trials of other hosts
    are never judged here (RDB storages fail them by heartbeat). A reused pid makes a dead
    worker look alive; the heartbeat then still catches it on RDB storages.
    """
    if trial.state != TrialState.RUNNING:
        return False
    owner = trial.user_attrs.get(WORKER)
    if not isinstance(owner, str) or not owner:
        if trial.datetime_start is None:
            return False
        now = now or datetime.datetime.now()
        return (now - trial.datetime_start).total_seconds() > UNOWNED_AFTER_S
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return int(pid) != os.getpid() and not _process_alive(int(pid))
