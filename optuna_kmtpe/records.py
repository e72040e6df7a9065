"""What a search records in a study: every attribute key, the metric schema, constraints.

One torch-free, plotly-free module that both the objective (which writes these attributes) and
the dashboard helpers, the CLI and ``kmtpe report`` (which read them) import, so the names cannot
drift. Keep the strings stable: they are stored in users' databases. A metric is defined once,
in :data:`METRICS` (:class:`Metric`: name, direction, unit and display, source); the CLI help,
budgets, tables, trial lines and dashboard axes are built from it.

Trial user attributes (visible in optuna-dashboard's trials table; each may be missing, a
failed or infeasible trial records fewer):

==========================  ================================================================
key                         value
==========================  ================================================================
``config``                  ``QuantConfig.to_dict()``: ``{layer: {weight_bits, act_bits, width}}``
``accuracy``                validation accuracy in ``[0, 1]`` after QAT/PTQ
``val_loss``                validation loss (the training loss) after QAT/PTQ, when optimized
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
:meth:`~optuna_kmtpe.sensitivity.SensitivityReport.save_to_study`), ``kmtpe:warm_started``,
``kmtpe:metrics`` (:func:`save_study_metrics`).

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
from collections.abc import Sequence
import dataclasses
import datetime
import math
import os
import re
import socket
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_kmtpe._metric_names import ACCURACY as ACCURACY
from optuna_kmtpe._metric_names import BOPS as BOPS
from optuna_kmtpe._metric_names import DSP_USED as DSP_USED
from optuna_kmtpe._metric_names import ENERGY_J as ENERGY_J
from optuna_kmtpe._metric_names import FEASIBLE as FEASIBLE
from optuna_kmtpe._metric_names import LATENCY_S as LATENCY_S
from optuna_kmtpe._metric_names import LAYER_ENERGY_J as LAYER_ENERGY_J
from optuna_kmtpe._metric_names import LAYER_LATENCY_S as LAYER_LATENCY_S
from optuna_kmtpe._metric_names import SIZE_BITS as SIZE_BITS
from optuna_kmtpe._metric_names import THROUGHPUT_IPS as THROUGHPUT_IPS
from optuna_kmtpe._metric_names import VAL_LOSS as VAL_LOSS


CONFIG = "config"
SKIPPED_TRAINING = "skipped_training"
STOPPED_EARLY = "stopped_early"
TRAIN_TIME_S = "train_time_s"
EPOCH_ACCURACY = "accuracy_epoch_"
CONSTRAINTS = "constraints"
FAIL_REASON = "fail_reason"
FAIL_TRACEBACK = "fail_traceback"
WARM_START = "warm_start"
WORKER = "worker"
DUPLICATE_OF = "duplicate_of"

STUDY_RUN = "kmtpe:run"
STUDY_SENSITIVITY = "kmtpe:sensitivity"
STUDY_WARM_STARTED = "kmtpe:warm_started"
STUDY_METRICS = "kmtpe:metrics"
"""Study user attr: the :class:`Metric` of each objective and of the quality slot
(:func:`save_study_metrics`), so that every printer shows a user metric as itself."""

QUALITY_SLOT = ACCURACY
"""The objective name and trial user attr of the model's quality: top-1 accuracy, or the
user's metric in its place (recorded under this key, shown under its own name)."""

FAIL_REASON_INTERRUPTED = "interrupted (Ctrl-C); retried by the next run"
FAIL_REASON_ORPHANED = "its process died (killed?); retried"
FAIL_REASON_NOT_NEEDED = "not run: the study already holds the requested number of trials"

UNOWNED_AFTER_S = 30.0
"""A RUNNING trial that names no worker after this many seconds was abandoned (kmtpe tags each
trial with its worker the moment it is created)."""

COST = "cost"
"""Metric source: computed exactly before training from the config by the hardware model."""
TRAINING = "training"
"""Metric source: measured by training and evaluation."""


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric: how it is named, optimized and shown, and where its value comes from.

    The one definition that the objective, the budgets, the CLI help, the tables, the trial
    lines and the dashboard read: adding an entry to :data:`METRICS` is all it takes to show a
    new metric everywhere. A :data:`COST` metric's value is the attribute of the same name on
    the hardware model's report; a :data:`TRAINING` metric's value is measured on the trained
    model by the function of the same name in :data:`optuna_kmtpe.quant.MEASURES`.

    Attributes:
        name: Name used in metric names, trial user attrs, CLI flags and budgets.
        direction: ``"maximize"`` or ``"minimize"``.
        unit: Unit, which decides the display (:meth:`format`): ``"%"`` marks a fraction in
            ``[0, 1]`` shown in percent; ``"s"``, ``"J"``, ``"bit"``, ``"1/s"`` get scaled
            units; a built-in metric without unit is a count.
        description: One line for help texts.
        source: :data:`COST` or :data:`TRAINING`.
        in_table: Shown as a column of the Pareto table even when it is not an objective.
    """

    name: str
    direction: str
    unit: str
    description: str
    source: str = TRAINING
    in_table: bool = False

    def format(self, value: float | None) -> str:
        """``value`` in human units: ``%`` for fractions, us/ms, uJ/mJ, KiB, else 4 digits.

        Example:
            >>> METRICS["accuracy"].format(0.9712), METRICS["latency_s"].format(2.5e-5)
            ('97.12%', '25.00us')
            >>> Metric("rmse", "minimize", "", "user metric").format(41.237)
            '41.24'
        """
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if self.unit == "%":
            return f"{100 * value:.2f}%"
        if self.unit == "s":
            return f"{value * 1e6:.2f}us" if value < 1e-3 else f"{value * 1e3:.3f}ms"
        if self.unit == "J":
            return f"{value * 1e6:.3f}uJ" if value < 1e-3 else f"{value * 1e3:.3f}mJ"
        if self.unit == "bit":
            return f"{value / 8 / 1024:.2f}KiB"
        if self.unit == "1/s":
            return f"{value:,.0f}/s"
        if self.name in METRICS:
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
        return f"{value:.4g}"

    @property
    def axis_title(self) -> str:
        """The name with its unit, for plot axes: ``latency_s [s]``, ``accuracy``."""
        unit = "" if self.unit in ("", "%") else self.unit
        return f"{self.name} [{unit}]" if unit else self.name

    def best_first(self, value: float | None) -> float:
        """Sort key putting the best value first and missing or NaN values last.

        Example:
            >>> error = Metric("error", "minimize", "", "user metric")
            >>> sorted([0.3, None, 0.1], key=error.best_first)
            [0.1, 0.3, None]
        """
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.inf
        return -value if self.direction == "maximize" else value

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in a study."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metric:
        """The metric :meth:`to_dict` stored (fields it lacks, e.g. from older runs, default)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(ACCURACY, "maximize", "%", "validation accuracy after QAT/PTQ (0..1)"),
        Metric(VAL_LOSS, "minimize", "", "validation loss (the training loss) after QAT/PTQ"),
        Metric(LATENCY_S, "minimize", "s", "FPGA latency of one inference (sequential layers)",
               COST, in_table=True),
        Metric(ENERGY_J, "minimize", "J", "FPGA energy of one inference", COST, in_table=True),
        Metric(SIZE_BITS, "minimize", "bit", "model size with the config's bit-widths", COST,
               in_table=True),
        Metric(BOPS, "minimize", "", "bit operations: sum of MACs x weight bits x act bits",
               COST),
        Metric(THROUGHPUT_IPS, "maximize", "1/s", "inferences per second, layer-pipelined",
               COST),
        Metric(DSP_USED, "minimize", "", "DSP slices the accelerator needs", COST),
    )
}  # fmt: skip
"""Every metric an objective can optimize, by name: the one place a metric is defined."""


def cost_metrics() -> tuple[str, ...]:
    """Metrics known before training and minimized, the ones a budget (upper limit) applies to.

    Example:
        >>> cost_metrics()
        ('latency_s', 'energy_j', 'size_bits', 'bops', 'dsp_used')
    """
    return tuple(
        m.name for m in METRICS.values() if m.source == COST and m.direction == "minimize"
    )


def metric(name: str, direction: str = "maximize") -> Metric:
    """The :class:`Metric` called ``name``: built-in, or a plain one (4 digits, no unit) in
    ``direction``."""
    return METRICS.get(name) or Metric(name, direction, "", name)


def objective_metrics(objectives: Sequence[str], *, quality: Metric) -> tuple[Metric, ...]:
    """The metrics of ``objectives`` (names of :data:`METRICS`), ``quality`` in its slot."""
    return tuple(quality if name == QUALITY_SLOT else METRICS[name] for name in objectives)


def save_study_metrics(
    study: optuna.Study, objectives: Sequence[str], *, quality: Metric
) -> tuple[Metric, ...]:
    """Name the study's objectives after their metrics and store the definitions.

    optuna-dashboard shows the names; :func:`study_metrics` and :func:`study_quality` read
    the definitions back (for tables, trial lines and plots). Returns the objectives' metrics.
    """
    metrics = objective_metrics(objectives, quality=quality)
    study.set_metric_names([m.name for m in metrics])
    study.set_user_attr(
        STUDY_METRICS,
        {"objectives": [m.to_dict() for m in metrics], "quality": quality.to_dict()},
    )
    return metrics


def study_metrics(study: optuna.Study) -> tuple[Metric, ...]:
    """The :class:`Metric` of each objective of ``study``, in objective order.

    Read from the study (:func:`save_study_metrics`); a study without them gets the built-in
    metric of each objective name, or a plain one named after it in the study's direction.

    Example:
        >>> study = optuna.create_study(directions=["minimize"])
        >>> study_metrics(study)[0].name
        'value0'
    """
    stored = study.user_attrs.get(STUDY_METRICS)
    directions = [d.name.lower() for d in study.directions]
    if isinstance(stored, Mapping) and len(stored.get("objectives", ())) == len(directions):
        return tuple(Metric.from_dict(m) for m in stored["objectives"])
    names = study.metric_names or [f"value{i}" for i in range(len(directions))]
    return tuple(metric(name, direction) for name, direction in zip(names, directions))


def study_quality(study: optuna.Study) -> Metric:
    """The metric recorded in the quality slot of ``study`` (accuracy unless the user's)."""
    stored = study.user_attrs.get(STUDY_METRICS)
    if isinstance(stored, Mapping) and isinstance(stored.get("quality"), Mapping):
        return Metric.from_dict(stored["quality"])
    return METRICS[QUALITY_SLOT]


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
