"""Run, resume and join searches on an Optuna storage; read their Pareto fronts."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import json
import logging
import math
import os
import socket
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives._metrics import METRICS
from optuna_kmtpe.sampler import PREDICTION_ATTR_KEY
from optuna_kmtpe.workflow._prepare import prepare_job
from optuna_kmtpe.workflow._prepare import recipe_for
from optuna_kmtpe.workflow._settings import SearchSettings


_logger = logging.getLogger(__name__)

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class StudyError(ValueError):
    """A storage or study problem the user can fix (wrong URL, missing study, ...)."""


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL (RDB, with heartbeats) or a file path (journal storage).

    Heartbeats let a killed worker's RUNNING trial be failed and retried by the next process.
    """
    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        except OSError as exc:
            raise StudyError(f"Cannot open the journal storage file {url!r}: {exc}.") from None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=10,
            grace_period=30,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=2
            ),
        )
    except ImportError as exc:
        raise StudyError(
            f"The storage {url!r} needs a database driver that is not installed ({exc}); for "
            "PostgreSQL run: pip install 'optuna-kmtpe[postgres]'."
        ) from None
    except Exception as exc:  # SQLAlchemy raises many types for bad URLs and dead servers
        raise StudyError(f"Cannot open the storage {url!r}: {type(exc).__name__}: {exc}") from None


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
    """The K-Means TPE forecast of a job, when its objectives have accuracy and a cost."""
    from optuna_kmtpe.objectives import sampler_forecast

    metrics = list(objective.metrics)
    if settings.sampler != "kmtpe" or "accuracy" not in metrics or len(metrics) < 2:
        return None
    return sampler_forecast(
        objective, report=job.report, model=job.model, val_loader=job.val_loader
    )


def warm_start_configs(
    space: Any, *, weight_bits: Sequence[int], act_bits: Sequence[int]
) -> list[tuple[str, QuantConfig]]:
    """Uniform 8-bit and 4-bit configs and HAWQ-V2 selections at 3 size budgets.

    HAWQ-V2 selections respect the space's sensitivity order, so every one of them is a config
    the space can express (and ``params_for`` reproduces it exactly). Their activation bits are
    paired with their weight bits (:meth:`MonotoneSearchSpace.pair_activation_bits`) so that
    the selections are cheaper on the FPGA, not only smaller.
    """
    layers = list(space.layer_names)
    configs: list[tuple[str, QuantConfig]] = []
    for bits in (8, 4):
        if bits in weight_bits:
            act = bits if bits in act_bits else max(act_bits)
            configs.append(
                (
                    f"uniform-w{bits}a{act}",
                    QuantConfig.uniform(layers, weight_bits=bits, act_bits=act),
                )
            )
    # The space's own frontier: its (budget-pruned, monotone) configs, so each one is enqueueable.
    frontier = space.hawq_v2_frontier()
    for fraction in (0.25, 0.5, 0.75):
        if frontier:
            point = frontier[min(len(frontier) - 1, int(fraction * len(frontier)))]
            # HAWQ-V2 chooses weight bits; with 8-bit activations the DSPs could not pack and
            # the selection would cost as much as uniform 8-bit (benchmarks/mpq_search.py:
            # paired warm starts gain about 8% hypervolume at 20 trials on digits).
            config = space.pair_activation_bits(point.config)
            configs.append((f"hawq-v2-{int(fraction * 100)}%", config))
    return configs


def _create_or_load_study(
    settings: SearchSettings, storage: optuna.storages.BaseStorage, *, join_only: bool
) -> tuple[optuna.Study, SearchSettings, bool, int]:
    try:
        summaries = optuna.get_all_study_summaries(storage)
    except Exception as exc:
        raise StudyError(f"Cannot read the storage {settings.storage!r}: {exc}") from None
    exists = any(s.study_name == settings.study_name for s in summaries)
    if join_only and not exists:
        names = [s.study_name for s in summaries]
        raise StudyError(
            f"No study {settings.study_name!r} in {settings.storage!r} (studies there: {names}). "
            "Start it with `kmtpe search` first."
        )
    sampler_seed = settings.seed
    if exists:
        study = optuna.load_study(study_name=settings.study_name, storage=storage)
        stored = study.user_attrs.get(keys.STUDY_RUN)
        if stored is not None:
            stored_settings = SearchSettings.from_dict(stored)
            # The job is fixed by the study; only how long this process runs may change.
            settings = stored_settings.replace(
                n_trials=settings.n_trials, timeout=settings.timeout, storage=settings.storage
            )
        # A resumed run or a worker must not replay another process's random stream (two
        # workers started together would otherwise propose the same configs). Only a fresh
        # study is reproducible from its seed; a resumed one depends on where it stopped anyway.
        n_trials = len(study.get_trials(deepcopy=False))
        sampler_seed = (settings.seed * 1_000_003 + n_trials * 7919 + os.getpid()) % 2**31
    directions = [METRICS[m].direction for m in settings.objectives]
    sampler = make_sampler(settings.sampler, seed=sampler_seed, n_objectives=len(directions))
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=storage,
        directions=directions,
        sampler=sampler,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != directions:
        raise StudyError(
            f"Study {settings.study_name!r} optimizes {[d.name.lower() for d in study.directions]}"
            f", not {directions}; choose another --study-name."
        )
    if not exists:
        study.set_user_attr(keys.STUDY_RUN, settings.to_dict())
        study.set_metric_names(list(settings.objectives))
    return study, settings, exists, sampler_seed


def run_search(
    settings: SearchSettings,
    *,
    join_only: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = True,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> optuna.Study:
    """Run (or resume, or join) a search until the study holds ``settings.n_trials`` trials.

    Re-running with the same storage and study name resumes: finished trials are kept, the
    stored settings and sensitivity report are reused, warm starts are not enqueued twice, and
    RUNNING trials left by a killed process are failed and retried (heartbeats).

    Args:
        settings: The run's settings (for an existing study, only ``n_trials`` and ``timeout``
            are taken from here; the rest comes from the study).
        join_only: Join an existing study (``kmtpe worker``); error if it does not exist.
        log: Where progress lines go.
        progress: Show progress bars for long steps.
        callbacks: Extra ``study.optimize`` callbacks.

    Returns:
        The study.
    """
    from optuna_kmtpe.objectives import EarlyStopRule
    from optuna_kmtpe.objectives import enqueue_warm_starts
    from optuna_kmtpe.objectives import make_objective

    check_settings(settings)
    storage = open_storage(settings.storage)
    study, settings, resumed, sampler_seed = _create_or_load_study(
        settings, storage, join_only=join_only
    )
    optuna.storages.fail_stale_trials(study)
    if resumed:
        log(f"Resuming study {settings.study_name!r}: {_count(study)} trials finished.")
    job = prepare_job(settings, study, log=log, progress=progress)
    log(job.space.describe() if hasattr(job.space, "describe") else "")

    objective = make_objective(
        model=job.model,
        train_loader=job.train_loader,
        val_loader=job.val_loader,
        space=job.space,
        fpga=job.fpga,
        example_input=job.example_input,
        metrics=settings.objectives,
        budgets=settings.budgets,
        recipe=recipe_for(settings),
        early_stop=EarlyStopRule(),
    )
    forecast = forecast_for(settings, objective, job)
    if forecast is not None:
        # Costs are exact and free before training; the Hessian prior forecasts accuracy.
        study.sampler = make_sampler(
            settings.sampler,
            seed=sampler_seed,
            n_objectives=len(settings.objectives),
            forecast=forecast,
        )
    if settings.warm_start and not join_only:
        configs = warm_start_configs(
            job.space,
            weight_bits=settings.weight_bits,
            act_bits=settings.act_bits,
        )
        n = enqueue_warm_starts(study, configs, job.space.params_for)
        if n:
            log(f"Enqueued {n} warm-start configs (uniform 8/4-bit, HAWQ-V2).")

    remaining = settings.n_trials - _count(study)
    if remaining <= 0:
        log(f"The study already holds {_count(study)} >= {settings.n_trials} trials.")
        return study
    log(f"Running {remaining} trials (sampler: {settings.sampler}).")
    all_callbacks = [
        optuna.study.MaxTrialsCallback(settings.n_trials, states=_FINISHED),
        _TrialLine(settings.n_trials, settings.objectives, log),
        *_dashboard_callbacks(),
        *callbacks,
    ]
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def tagged_objective(trial: optuna.Trial) -> Any:
        trial.set_user_attr(keys.WORKER, worker)  # which process ran it, for distributed runs
        return objective(trial)

    study.optimize(
        tagged_objective, n_trials=remaining, timeout=settings.timeout, callbacks=all_callbacks
    )
    _publish_dashboard(study)
    return study


def check_settings(settings: SearchSettings) -> None:
    """Fail fast, before any data is loaded or model trained, on names that do not exist."""
    from optuna_kmtpe.hardware import get_device
    from optuna_kmtpe.models import MODEL_NAMES

    if settings.model not in MODEL_NAMES:
        raise ValueError(
            f"Unknown model {settings.model!r}; choose one of {list(MODEL_NAMES)}, or use the "
            "Python API (optuna_kmtpe.objectives.make_objective) with your own nn.Module."
        )
    get_device(settings.device)


def _count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_FINISHED))


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

    def __init__(self, n_trials: int, metrics: Sequence[str], log: Callable[[str], None]) -> None:
        self._n_trials = n_trials
        self._metrics = list(metrics)
        self._log = log

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = _count(study)
        if trial.state == TrialState.COMPLETE:
            shown = [f"{m} {format_metric(m, v)}" for m, v in zip(self._metrics, trial.values)]
            forecast = trial.user_attrs.get(PREDICTION_ATTR_KEY)
            if forecast:
                # What the sampler expected, next to what QAT measured: trust it or not.
                for index, mean, std in zip(
                    forecast["objectives"], forecast["mean"], forecast["std"]
                ):
                    name = self._metrics[index]
                    shown[index] += f" (forecast {format_metric(name, mean)}"
                    shown[index] += f" +-{format_metric(name, std)})"
            values = "  ".join(shown)
            config = trial.user_attrs.get(keys.CONFIG)
            bits = compact_bits(config) if config else ""
            flag = "" if trial.user_attrs.get(keys.FEASIBLE, True) else "  (over budget)"
            self._log(f"[{done}/{self._n_trials}] trial {trial.number}: {values}  {bits}{flag}")
        else:
            reason = trial.user_attrs.get(keys.FAIL_REASON) or trial.system_attrs.get(
                "fail_reason", ""
            )
            self._log(
                f"[{done}/{self._n_trials}] trial {trial.number}: {trial.state.name} {reason}"
            )


def format_metric(name: str, value: float | None) -> str:
    """Human units: accuracy in %, seconds in us/ms, joules in uJ/mJ, bits in KiB."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if name == "accuracy":
        return f"{100 * value:.2f}%"
    if name == "latency_s":
        return f"{value * 1e6:.2f}us" if value < 1e-3 else f"{value * 1e3:.3f}ms"
    if name == "energy_j":
        return f"{value * 1e6:.3f}uJ" if value < 1e-3 else f"{value * 1e3:.3f}mJ"
    if name == "size_bits":
        return f"{value / 8 / 1024:.2f}KiB"
    if name == "throughput_ips":
        return f"{value:,.0f}/s"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def compact_bits(config: dict[str, dict[str, Any]]) -> str:
    """``w8-4-4-8 a8-8-6-8 x1-.5-1-1``: weight bits, activation bits and widths per layer."""
    layers = list(config.values())
    w = "-".join(str(c["weight_bits"]) for c in layers)
    a = "-".join(str(c["act_bits"]) for c in layers)
    x = "-".join(f"{c['width']:g}".replace("0.", ".") for c in layers)
    return f"w{w} a{a} x{x}"


def pareto_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The feasible Pareto-optimal trials as rows (best accuracy first).

    Trials that evaluated the same config (a sampler may propose a config twice; the objective
    then reuses the first result) are one row, under the first trial's number, with the others
    in ``"same_config_trials"``.
    """
    metrics = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
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
        for extra in ("accuracy", "latency_s", "energy_j", "size_bits"):
            row.setdefault(extra, trial.user_attrs.get(extra))
        row["config"] = trial.user_attrs.get(keys.CONFIG, {})
        row[keys.WARM_START] = trial.user_attrs.get(keys.WARM_START, "")
        rows.append(row)
    rows.sort(key=lambda r: -(r.get("accuracy") or 0.0))
    return rows


def format_pareto_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`pareto_rows`."""
    if not rows:
        return "No feasible completed trial yet."
    header = ["trial", "accuracy", "latency", "energy", "size", "bits (weights / acts / widths)"]
    table = [header]
    for row in rows:
        table.append(
            [
                str(row["trial"])
                + "".join(f"={number}" for number in row.get("same_config_trials", ()))
                + (f" ({row['warm_start']})" if row[keys.WARM_START] else ""),
                format_metric("accuracy", row.get("accuracy")),
                format_metric("latency_s", row.get("latency_s")),
                format_metric("energy_j", row.get("energy_j")),
                format_metric("size_bits", row.get("size_bits")),
                compact_bits(row["config"]) if row["config"] else "",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
