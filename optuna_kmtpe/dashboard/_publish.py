"""Saving the figures and the note into a study, once or from an ``optimize`` callback."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import threading
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import optuna_dashboard
import plotly.graph_objects as go

from optuna_kmtpe import records
from optuna_kmtpe import sampler
from optuna_kmtpe.dashboard import _keys
from optuna_kmtpe.dashboard._figures import layer_config_heatmap
from optuna_kmtpe.dashboard._figures import pareto_front_figure
from optuna_kmtpe.dashboard._figures import sampler_split_figure
from optuna_kmtpe.dashboard._figures import sensitivity_bits_figure
from optuna_kmtpe.dashboard._note import summary_markdown
from optuna_kmtpe.dashboard._note import trial_note_markdown
from optuna_kmtpe.dashboard._records import TrialPoint
from optuna_kmtpe.dashboard._records import points_from_trials
from optuna_kmtpe.dashboard._records import quality_renamed
from optuna_kmtpe.dashboard._records import sensitivity_layers
from optuna_kmtpe.records import study_metrics
from optuna_kmtpe.records import study_quality


_logger = optuna.logging.get_logger(__name__)

DEFAULT_PARETO_AXES: tuple[str, str, str | None] = (
    records.LATENCY_S,
    records.ACCURACY,
    records.ENERGY_J,
)


def load_split_history(study: optuna.Study) -> list[dict[str, Any]]:
    """The K-Means TPE split diagnostics of ``study``, or ``[]`` where there are none
    (:func:`optuna_kmtpe.sampler.split_history`)."""
    return [dict(row) for row in sampler.split_history(study)]


def publish_trial_notes(study: optuna.Study, trials: Sequence[FrozenTrial]) -> int:
    """Give each of ``trials`` that has a config and no note yet a note of its bits and widths.

    optuna-dashboard shows a trial's note first on its page, above the parameters (level
    indices). A note that exists, written here or by a user in the dashboard, is never
    overwritten: a trial's config does not change. Notes live in the study's system attrs
    (optuna-dashboard's format), so finished trials get them too.

    Returns:
        The number of notes written.
    """
    from optuna_dashboard._note import note_ver_key  # optuna-dashboard <0.22 (pinned)
    from optuna_dashboard._note import split_body

    storage, study_id = study._storage, study._study_id
    existing = storage.get_study_system_attrs(study_id)
    written = 0
    for trial in trials:
        config = trial.user_attrs.get(records.CONFIG)
        if not isinstance(config, Mapping) or note_ver_key(trial._trial_id) in existing:
            continue
        duplicate_of = trial.user_attrs.get(records.DUPLICATE_OF)
        body = trial_note_markdown(
            config, duplicate_of=duplicate_of if isinstance(duplicate_of, int) else None
        )
        for key, chunk in split_body(body, trial._trial_id).items():
            storage.set_study_system_attr(study_id, key, chunk)
        # The version last: a reader never sees a version without its text.
        storage.set_study_system_attr(study_id, note_ver_key(trial._trial_id), 1)
        written += 1
    return written


def _pick_axes(
    points: Sequence[TrialPoint],
    metric_names: Sequence[str],
    preferred: tuple[str, str, str | None],
) -> tuple[str, str, str | None]:
    x, y, color = preferred
    if any(x in p.metrics and y in p.metrics for p in points) or len(metric_names) < 2:
        return preferred
    # The hardware metrics are not recorded: fall back to the study's own objectives.
    return metric_names[1], metric_names[0], metric_names[2] if len(metric_names) > 2 else None


def _maximizes(study: optuna.Study, name: str, metric_names: Sequence[str]) -> bool:
    """Whether higher values of ``name`` are better: its objective's direction, if any."""
    if name in metric_names:
        return study.directions[list(metric_names).index(name)] == StudyDirection.MAXIMIZE
    return study_quality(study).direction == "maximize"


class _Publisher:
    """Builds and saves everything; remembers what it saved to skip unchanged writes."""

    def __init__(
        self, *, max_heatmap_trials: int, pareto_axes: tuple[str, str, str | None]
    ) -> None:
        if max_heatmap_trials < 2:
            raise ValueError(f"max_heatmap_trials must be >= 2, got {max_heatmap_trials}.")
        if len(pareto_axes) != 3 or not all(isinstance(a, str) for a in pareto_axes[:2]):
            raise ValueError(
                "pareto_axes must be (x_metric, y_metric, colour_metric_or_None), e.g. "
                f"{DEFAULT_PARETO_AXES}; got {pareto_axes!r}."
            )
        self._max_heatmap_trials = max_heatmap_trials
        self._pareto_axes = pareto_axes
        self._saved: dict[str, str] = {}

    def _save_figure(self, study: optuna.Study, graph_id: str, fig: go.Figure) -> None:
        payload = fig.to_json()
        if self._saved.get(graph_id) == payload:
            return
        optuna_dashboard.save_plotly_graph_object(study, fig, graph_object_id=graph_id)
        self._saved[graph_id] = payload

    def publish(self, study: optuna.Study) -> list[str]:
        trials: list[FrozenTrial] = study.get_trials(deepcopy=False)
        metric_names = [m.name for m in study_metrics(study)]
        renamed = quality_renamed(study)
        points = points_from_trials(trials, study.directions, metric_names, renamed=renamed)
        quality = renamed.get(records.ACCURACY, records.ACCURACY)
        maximize_quality = _maximizes(study, quality, metric_names)
        user_attrs = study.user_attrs
        sensitivity = sensitivity_layers(user_attrs)
        history = load_split_history(study)

        figures: dict[str, go.Figure] = {}
        if any(p.pareto and p.config for p in points):
            figures[_keys.GRAPH_LAYER_CONFIG] = layer_config_heatmap(
                points,
                sort_by=quality,
                maximize=maximize_quality,
                max_trials=self._max_heatmap_trials,
            )
        if sensitivity:
            figures[_keys.GRAPH_SENSITIVITY] = sensitivity_bits_figure(sensitivity, points)
        axes = tuple(renamed.get(a, a) if a else a for a in self._pareto_axes)
        x, y, color = _pick_axes(points, metric_names, axes)  # type: ignore[arg-type]
        if any(x in p.metrics and y in p.metrics for p in points):
            figures[_keys.GRAPH_PARETO] = pareto_front_figure(points, x=x, y=y, color=color)
        if history:
            # The sampler's thresholds are losses: the objective negated when maximized, or
            # the non-domination rank with several objectives.
            single = len(study.directions) == 1
            maximize = single and study.directions[0] == StudyDirection.MAXIMIZE
            figures[_keys.GRAPH_SAMPLER_SPLIT] = sampler_split_figure(
                history,
                threshold_label=metric_names[0] if single else "non-domination rank",
                threshold_sign=-1.0 if maximize else 1.0,
            )
        for graph_id, fig in figures.items():
            self._save_figure(study, graph_id, fig)

        run = user_attrs.get(records.STUDY_RUN)
        counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
        note = summary_markdown(
            study_name=study.study_name,
            run=run if isinstance(run, Mapping) else None,
            points=points,
            metric_names=metric_names,
            maximize=[d == StudyDirection.MAXIMIZE for d in study.directions],
            state_counts=counts,
        )
        if self._saved.get("note") != note:
            optuna_dashboard.save_note(study, note)
            self._saved["note"] = note
        publish_trial_notes(study, trials)
        return list(figures)


def publish_dashboard(
    study: optuna.Study,
    *,
    max_heatmap_trials: int = 40,
    pareto_axes: tuple[str, str, str | None] = DEFAULT_PARETO_AXES,
) -> list[str]:
    """Save (or overwrite) the run's plots and summary note in ``study`` for optuna-dashboard.

    Plots, each saved only when its data exists, under the stable ids of
    :data:`optuna_kmtpe.dashboard.GRAPH_IDS`: the per-layer bits/width heatmap of the Pareto
    trials, Hessian sensitivity vs assigned bits, the Pareto front with hardware metrics,
    and the K-Means TPE split per trial. The note summarizes the run and the Pareto trials;
    each trial with a config gets a note of its bits and widths (:func:`publish_trial_notes`).
    Failed, running, infeasible and attribute-less trials are tolerated.

    Args:
        study: The study (any storage) whose trials follow the keys of
            :mod:`optuna_kmtpe.records`.
        max_heatmap_trials: At most this many Pareto trials in the heatmap.
        pareto_axes: ``(x, y, colour)`` metrics of the Pareto plot; when no trial has ``x``
            and ``y``, the study's objectives are used instead.

    Returns:
        The ids of the plots saved.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(directions=["maximize", "minimize"])
        >>> study.set_metric_names(["accuracy", "latency_s"])
        >>> study.add_trial(optuna.create_trial(values=[0.9, 1e-3]))
        >>> publish_dashboard(study)
        ['kmtpe-pareto-hardware']
    """
    publisher = _Publisher(max_heatmap_trials=max_heatmap_trials, pareto_axes=pareto_axes)
    return publisher.publish(study)


class DashboardCallback:
    """``study.optimize`` callback that refreshes the dashboard every ``every_n_trials`` trials.

    Each finished trial also gets its note (bits and widths) at once.

    Counts the trials finished in this process (each worker of a distributed search may
    carry its own callback; the last refresh wins). Unchanged plots are not rewritten, a
    refresh already running in another thread is not doubled, and a refresh that raises is
    logged, never allowed to stop the search. Call :func:`publish_dashboard` once after
    ``optimize`` for a final refresh.

    Args:
        every_n_trials: Refresh after every this many finished trials (>= 1).
        max_heatmap_trials: See :func:`publish_dashboard`.
        pareto_axes: See :func:`publish_dashboard`.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> callback = DashboardCallback(every_n_trials=2)
        >>> study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=4,
        ...     callbacks=[callback])
        >>> callback.n_refreshes
        2
    """

    def __init__(
        self,
        *,
        every_n_trials: int = 5,
        max_heatmap_trials: int = 40,
        pareto_axes: tuple[str, str, str | None] = DEFAULT_PARETO_AXES,
    ) -> None:
        if (
            isinstance(every_n_trials, bool)
            or not isinstance(every_n_trials, int)
            or (every_n_trials < 1)
        ):
            raise ValueError(f"every_n_trials must be an int >= 1, got {every_n_trials!r}.")
        self._every_n_trials = every_n_trials
        self._publisher = _Publisher(
            max_heatmap_trials=max_heatmap_trials, pareto_axes=pareto_axes
        )
        self._n_finished = 0
        self._count_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self.n_refreshes = 0
        """How many refreshes ran (successful or not)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        try:  # every trial's note at once, whatever the refresh interval
            publish_trial_notes(study, [trial])
        except Exception as exc:  # noqa: BLE001 - the dashboard must never stop a search
            _logger.warning(f"optuna-kmtpe note of trial {trial.number} failed: {exc!r}")
        with self._count_lock:
            self._n_finished += 1
            due = self._n_finished % self._every_n_trials == 0
        # A refresh already running in another thread (n_jobs > 1) will show this trial too.
        if not due or not self._refresh_lock.acquire(blocking=False):
            return
        try:
            self.n_refreshes += 1
            self._publisher.publish(study)
        except Exception as exc:  # noqa: BLE001 - the dashboard must never stop a search
            _logger.warning(
                f"optuna-kmtpe dashboard refresh after trial {trial.number} failed: {exc!r}"
            )
        finally:
            self._refresh_lock.release()
