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

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.dashboard import _keys
from optuna_kmtpe.sampler import pareto_mask


@dataclasses.dataclass(frozen=True)
class TrialPoint:
    """One completed trial, reduced to what the dashboard shows.

    Args:
        number: The trial number.
        metrics: Finite scalar metrics by name: the objective values under the study's metric
            names (``objective_<i>`` when unnamed) plus the numeric trial user attributes of
            :data:`optuna_kmtpe.dashboard._keys.TRIAL_METRIC_KEYS`.
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
    if raw is None:
        return None
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


def metric_names_of(study: optuna.Study) -> list[str]:
    """The study's metric names, or ``objective_<i>`` for unnamed objectives."""
    names = study.metric_names
    n_objectives = len(study.directions)
    if names is None or len(names) != n_objectives:
        return [f"objective_{i}" for i in range(n_objectives)]
    return list(names)


def _is_feasible(trial: FrozenTrial) -> bool:
    if trial.user_attrs.get(_keys.FEASIBLE) is False:
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
        for key in _keys.TRIAL_METRIC_KEYS:
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
                config=parse_config(trial.user_attrs.get(_keys.CONFIG)),
                feasible=feasible,
            )
        )
        complete_row = feasible and len(row) == len(directions) and None not in row
        objective_rows.append(row if complete_row else None)  # type: ignore[arg-type]

    candidates = [i for i, row in enumerate(objective_rows) if row is not None]
    front: set[int] = set()
    if candidates:
        values = np.array([objective_rows[i] for i in candidates], dtype=float)
        mask = pareto_mask(values, directions)
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
        trials, study.directions, metric_names_of(study), renamed=quality_renamed(study)
    )


def quality_renamed(study: optuna.Study) -> dict[str, str]:
    """``{"accuracy": name}`` when the study's quality metric is the user's, else ``{}``."""
    from optuna_kmtpe.objectives._metrics import study_quality

    name = study_quality(study).name
    return {} if name == _keys.ACCURACY else {_keys.ACCURACY: name}


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """Average Hessian trace of one layer, as read from the study's sensitivity report."""

    layer: str
    trace: float
    trace_stderr: float | None = None


def _per_layer(field: Any, layers: Sequence[str]) -> dict[str, Any]:
    if isinstance(field, Mapping):
        return dict(field)
    if isinstance(field, Sequence) and not isinstance(field, str) and len(field) == len(layers):
        return dict(zip(layers, field))
    return {}


def collect_sensitivity(user_attrs: Mapping[str, Any]) -> Any:
    """The ``kmtpe:sensitivity`` report from study user attrs, its extra chunks joined.

    ``SensitivityReport.save_to_study`` splits large reports over ``kmtpe:sensitivity``,
    ``kmtpe:sensitivity:1``, ...; a missing chunk leaves the layers that are there.
    """
    header = user_attrs.get(_keys.STUDY_SENSITIVITY)
    if not isinstance(header, Mapping):
        return header
    extra = header.get("extra_chunks", 0)
    if isinstance(extra, bool) or not isinstance(extra, int) or extra <= 0:
        return header
    layers = list(header.get("layers") or [])
    for index in range(1, extra + 1):
        chunk = user_attrs.get(f"{_keys.STUDY_SENSITIVITY}:{index}")
        if isinstance(chunk, Sequence) and not isinstance(chunk, str):
            layers.extend(chunk)
    return {**header, "layers": layers}


def parse_sensitivity(report: Any) -> list[LayerSensitivity]:
    """Per-layer traces from the ``kmtpe:sensitivity`` study user attribute.

    Accepts ``{"layers": [names], "trace": {name: value} | [values], "trace_stderr": ...}``,
    and ``layers`` given as a list of ``{"name", "trace", "trace_stderr"}`` dicts. Layers
    without a finite trace are dropped; anything unreadable gives an empty list.

    Example:
        >>> parse_sensitivity({"layers": ["a", "b"], "trace": [2.0, 0.5]})[0]
        LayerSensitivity(layer='a', trace=2.0, trace_stderr=None)
    """
    if not isinstance(report, Mapping):
        return []
    raw_layers = report.get("layers")
    if not isinstance(raw_layers, Sequence) or isinstance(raw_layers, str):
        return []
    names: list[str] = []
    traces: dict[str, Any] = {}
    stderrs: dict[str, Any] = {}
    for entry in raw_layers:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            names.append(entry["name"])
            traces[entry["name"]] = entry.get("trace")
            stderrs[entry["name"]] = entry.get("trace_stderr")
    traces.update(_per_layer(report.get("trace"), names))
    stderrs.update(_per_layer(report.get("trace_stderr"), names))
    result = []
    for name in names:
        trace = _finite_float(traces.get(name))
        if trace is None:
            continue
        result.append(LayerSensitivity(name, trace, _finite_float(stderrs.get(name))))
    return result
