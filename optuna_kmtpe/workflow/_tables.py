"""What a search prints: its start and progress lines, and the Pareto table of a study."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_kmtpe import records as keys
from optuna_kmtpe.records import METRICS
from optuna_kmtpe.records import Metric
from optuna_kmtpe.records import study_metrics
from optuna_kmtpe.records import study_quality
from optuna_kmtpe.sampler import PREDICTION_ATTR_KEY
from optuna_kmtpe.workflow._budgets import over_budget_note
from optuna_kmtpe.workflow._study import count_complete


def warm_start_line(n_warm: int, *, n_trials: int, sampler: str) -> str:
    """What the warm starts take of a run: a short run may be all warm starts.

    Example:
        >>> warm_start_line(5, n_trials=40, sampler="kmtpe").split(": ")[1]
        'trials 1-5 of 40; the kmtpe sampler proposes the other 35.'
        >>> warm_start_line(5, n_trials=5, sampler="kmtpe").split(": ")[1]
        'all 5 trials are warm starts, the kmtpe sampler proposes none (use --trials > 5).'
    """
    head = f"Enqueued {n_warm} warm-start configs (uniform bits, then pruned or HAWQ-V2): "
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


class TrialLine:
    """One compact progress line per finished trial."""

    def __init__(
        self, n_trials: int, metrics: Sequence[Metric], log: Callable[[str], None]
    ) -> None:
        self._n_trials = n_trials
        self._metrics = list(metrics)
        self._log = log

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = count_complete(study)
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
    return TrialLine(n_trials, [METRICS[name] for name in metric_names], log)


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
