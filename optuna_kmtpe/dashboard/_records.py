"""Plain data read from a study: what every figure and the note are built from.

The figures take :class:`TrialPoint` lists, not studies, so they can be tested and reused on
data from anywhere. :func:`trial_points` is the one place that reads a study's trials, and it
tolerates anything a real search leaves behind: failed and running trials, infeasible trials,
trials without a config or without hardware metrics, non-finite values.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_kmtpe import records
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.records import study_metrics
from optuna_kmtpe.records import study_quality
from optuna_kmtpe.sampler import pareto_mask
from optuna_kmtpe.sensitivity import LayerSensitivity
from optuna_kmtpe.sensitivity import SensitivityReport


@dataclasses.dataclass(frozen=True)
class TrialPoint:
    """One completed trial, reduced to what the dashboard shows.

    Args:
        number: The trial number.
        metrics: Finite scalar metrics by name: the objective values under the study's metric
            names (:func:`~optuna_kmtpe.records.study_metrics`) plus the numeric trial user
            attributes of every metric of :data:`~optuna_kmtpe.records.METRICS` and the QAT
            time.
        config: The trial's per-layer config (``QuantConfig.to_dict()`` form), or ``None``.
        feasible: Whether every constraint (and the ``feasible`` user attribute) is met.
        pareto: Whether the trial is on the study's Pareto front (among feasible trials, in
            objective space, using the study's directions).

    Example:
        >>> p = TrialPoint(number=3, metrics={"accuracy": 0.97}, config=None)
        >>> p.feasible, p.pareto
        (True, False)
    """

    number: int
    metrics: Mapping[str, float]
    config: Mapping[str, Mapping[str, Any]] | None
    feasible: bool = True
    pareto: bool = False


def parse_config(raw: Any) -> dict[str, dict[str, Any]] | None:
    """A stored ``config`` user attribute as a dict, or ``None`` if missing or malformed.

    Accepts ``QuantConfig.to_dict()`` output or ``QuantConfig.to_json()`` text. A malformed
    config is not an error here: the dashboard shows what it can.
    """
    try:
        if isinstance(raw, str):
            return QuantConfig.from_json(raw).to_dict()
        if isinstance(raw, Mapping):
            return QuantConfig.from_dict(raw).to_dict()
    except (ValueError, TypeError):
        return None
    return None


def _finite_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _is_feasible(trial: FrozenTrial) -> bool:
    if trial.user_attrs.get(records.FEASIBLE) is False:
        return False
    return all(v <= 0.0 for v in trial.constraints.values())


def points_from_trials(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    metric_names: Sequence[str],
    *,
    renamed: Mapping[str, str] | None = None,
) -> list[TrialPoint]:
    """Turn frozen trials into :class:`TrialPoint` records, marking the Pareto front.

    Only ``COMPLETE`` trials become points. The Pareto front is computed among feasible
    trials whose objective values are all finite.

    Args:
        trials: The trials.
        directions: One direction per objective.
        metric_names: One name per objective.
        renamed: Trial user attr -> the metric name it is shown under (a user metric is
            recorded as ``accuracy`` and shown as itself).
    """
    renamed = dict(renamed or {})
    if len(metric_names) != len(directions):
        raise ValueError(
            f"points_from_trials: got {len(metric_names)} metric names for "
            f"{len(directions)} objectives; pass one name per objective."
        )
    drafts: list[TrialPoint] = []
    objective_rows: list[list[float] | None] = []
    for trial in trials:
        if trial.state != TrialState.COMPLETE or trial.values is None:
            continue
        metrics: dict[str, float] = {}
        for key in (*records.METRICS, records.TRAIN_TIME_S):
            value = _finite_float(trial.user_attrs.get(key))
            if value is not None:
                metrics[renamed.get(key, key)] = value
        row = [_finite_float(v) for v in trial.values]
        for name, value in zip(metric_names, row):
            if value is not None:
                # The objective's own number wins over a user attr of the same name.
                metrics[name] = value
        feasible = _is_feasible(trial)
        drafts.append(
            TrialPoint(
                number=trial.number,
                metrics=metrics,
                config=parse_config(trial.user_attrs.get(records.CONFIG)),
                feasible=feasible,
            )
        )
        complete_row = feasible and len(row) == len(directions) and None not in row
        objective_rows.append(row if complete_row else None)  # type: ignore[arg-type]

    candidates = [i for i, row in enumerate(objective_rows) if row is not None]
    values = np.array([objective_rows[i] for i in candidates], dtype=float)
    mask = pareto_mask(values.reshape(len(candidates), len(directions)), directions)
    front = {candidates[j] for j in np.flatnonzero(mask)}
    return [dataclasses.replace(p, pareto=True) if i in front else p for i, p in enumerate(drafts)]


def trial_points(study: optuna.Study) -> list[TrialPoint]:
    """Read every completed trial of ``study`` as a :class:`TrialPoint`, Pareto front marked.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(directions=["maximize", "minimize"])
        >>> study.set_metric_names(["accuracy", "latency_s"])
        >>> study.add_trial(optuna.create_trial(values=[0.9, 1e-3]))
        >>> [(p.number, p.metrics["accuracy"], p.pareto) for p in trial_points(study)]
        [(0, 0.9, True)]
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return points_from_trials(
        trials,
        study.directions,
        [m.name for m in study_metrics(study)],
        renamed=quality_renamed(study),
    )


def quality_renamed(study: optuna.Study) -> dict[str, str]:
    """``{"accuracy": name}`` when the study's quality metric is the user's, else ``{}``."""
    name = study_quality(study).name
    return {} if name == records.QUALITY_SLOT else {records.QUALITY_SLOT: name}


def sensitivity_layers(user_attrs: Mapping[str, Any]) -> list[LayerSensitivity]:
    """The layers of the study's sensitivity report that have a finite trace.

    Decoded by :meth:`SensitivityReport.from_study_attrs`, the reader every part of kmtpe uses;
    a missing chunk leaves the layers that are there, an unreadable report gives ``[]``.
    """
    try:
        report = SensitivityReport.from_study_attrs(user_attrs, partial=True)
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
    return [layer for layer in report or () if _finite_float(layer.trace) is not None]
