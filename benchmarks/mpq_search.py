"""Mixed-precision search on real digits QAT: the full method against its ablations and baselines.

Methods (objectives accuracy + FPGA latency + FPGA energy, QAT in the loop):

* ``full``: K-Means TPE with the forecast (exact FPGA costs as known objectives, the Hessian
  second-order prior inside the additive accuracy model, expected hypervolume improvement) and
  warm starts, on the unconstrained space (the Hessian is used softly, as the prior);
* ``full_hard_order``: the same on the Hessian-constrained (monotone) space;
* ``full_no_warm``: the full method without warm starts (the forecast alone picks from trial 2);
* ``kmtpe_constrained_warm``: the previous version's full method (no forecast);
* ``kmtpe_raw``: K-Means TPE on the unconstrained space, no forecast;
* ``tpe_raw``: Optuna 5 TPE (defaults) on the unconstrained space;
* ``tpe_constrained``: TPE on the constrained space;
* ``gp``: Optuna 5 GPSampler (defaults) on the unconstrained space;
* ``nsga2`` and ``random`` on the unconstrained space.

Hypervolume uses a fixed reference point: objectives are normalized as (1 - accuracy,
latency / latency_max, energy / energy_max), where *_max are the costs of the most expensive
config of the space (uniform 8-bit weights and activations, full width), and the reference
point is (0.10, 1.0, 1.0): configs below 90% validation accuracy or costlier than uniform 8-bit
add nothing (the float model reaches ~99%, so the interesting front lies above 90%). Accuracy
is a deterministic function of the config under the fixed QAT recipe, so one config -> accuracy
memo is shared by all methods and seeds (it saves time and changes no result).

Usage: ``python benchmarks/mpq_search.py [--task digits|mnist1d] [--task-seed 0] [--quick]
[--seeds N] [--trials N] [--methods full,tpe_raw,gp] [--plot out.png] [--jobs 16]
[--results-dir DIR]``. ``--task-seed`` draws the task again (data split, float pre-training,
sensitivity): a sampler change should win on several draws, not on one.
``--jobs`` runs (method, seed) studies in parallel processes of one torch thread each (they
share the accuracy cache file); ``--results-dir`` keeps each finished study's curve, so a run
that was stopped (or ran on another machine) resumes with only the missing studies.
The last line printed is one JSON object. ``trials_ratio_vs_tpe`` is the full budget divided by
the trials the full method's median curve needs to reach the median hypervolume TPE
(unconstrained) has at the full budget; it is ``null`` when the full method never reaches it.
``trials_ratio_vs_tpe_at_budget`` asks the same question at smaller budgets.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume  # benchmark-only use of a private helper

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives import make_objective
from optuna_kmtpe.objectives import warm_start_configs
from optuna_kmtpe.objectives import warm_start_study
from optuna_kmtpe.sampler import PREDICTION_ATTR_KEY
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import build_space
from optuna_kmtpe.workflow import forecast_for
from optuna_kmtpe.workflow import make_sampler
from optuna_kmtpe.workflow import prepare_job
from optuna_kmtpe.workflow import recipe_for


METHODS: dict[str, tuple[str, bool, bool, bool]] = {
    # name: (sampler, constrained space, warm starts, forecast: known costs + Hessian prior)
    "full": ("kmtpe", False, True, True),
    "full_hard_order": ("kmtpe", True, True, True),  # the same with the hard Hessian order
    "full_no_warm": ("kmtpe", False, False, True),  # ablation: the forecast alone
    "kmtpe_constrained_warm": ("kmtpe", True, True, False),  # the previous version's "full"
    "kmtpe_raw": ("kmtpe", False, False, False),
    "tpe_raw": ("tpe", False, False, False),
    "tpe_constrained": ("tpe", True, False, False),
    "gp": ("gp", False, False, False),
    "nsga2": ("nsga2", False, False, False),
    "random": ("random", False, False, False),
}
REFERENCE = np.array([0.10, 1.0, 1.0])

# Seeds and trials of a run without --seeds/--trials: the README's tables. The reach of TPE's
# final hypervolume is read off median curves that run nearly level with it, so it needs many
# seeds: on the digits default draw, seeds 0-4 alone put it at trial 47, seeds 0-9 at 33 and
# seeds 0-19 at 16 (docs/sampler.md, "Digits, seventeenth round").
TASK_RUNS: dict[str, tuple[int, int]] = {"digits": (20, 60), "mnist1d": (10, 80)}


def normalized_losses(values: list[list[float]], scale: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float).reshape(-1, 3)
    return np.column_stack([1.0 - v[:, 0], v[:, 1] / scale[0], v[:, 2] / scale[1]])


def hypervolume(points: list[list[float]], scale: np.ndarray) -> float:
    """Hypervolume of (accuracy, latency, energy) points against the fixed reference point."""
    if not points:
        return 0.0
    losses = normalized_losses(points, scale)
    inside = losses[np.all(losses < REFERENCE, axis=1)]
    return float(compute_hypervolume(inside, REFERENCE)) if len(inside) else 0.0


def hypervolume_curve(study: optuna.Study, n_trials: int, scale: np.ndarray) -> np.ndarray:
    curve = np.zeros(n_trials)
    points: list[list[float]] = []
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    for i in range(n_trials):
        if i < len(trials) and trials[i].state == optuna.trial.TrialState.COMPLETE:
            points.append(list(trials[i].values))
            curve[i] = hypervolume(points, scale)
        elif i:
            curve[i] = curve[i - 1]
    return curve


def run_method(
    name: str, seed: int, n_trials: int, job: Any, spaces: dict[bool, Any], cache: dict
) -> optuna.Study:
    sampler_name, constrained, warm, forecast = METHODS[name]
    space = spaces[constrained]
    objective = job_objective(job, space, cache)
    options = job_forecast(job, objective) if forecast else None
    if sampler_name == "gp":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GPSampler(seed=seed)
    else:
        sampler = make_sampler(sampler_name, seed=seed, n_objectives=3, forecast=options)
    study = optuna.create_study(directions=objective.directions, sampler=sampler)
    if warm:  # the warm starts of `kmtpe search`
        warm_start_study(
            study, space, weight_bits=job.settings.weight_bits, act_bits=job.settings.act_bits,
            forecast=options, max_trials=n_trials,
        )  # fmt: skip
    study.optimize(objective, n_trials=n_trials)
    return study


def job_objective(job: Any, space: Any, cache: dict) -> Any:
    return make_objective(
        model=job.model,
        train_loader=job.train_loader,
        val_loader=job.val_loader,
        space=space,
        fpga=job.fpga,
        example_input=job.example_input,
        recipe=recipe_for(job.settings),
        early_stop=None,  # curves must compare full QAT accuracies
        accuracy_cache=cache,
    )


def job_forecast(job: Any, objective: Any) -> dict[str, Any] | None:
    return forecast_for(job.settings, objective, job)


def job_warm_starts(
    job: Any, space: Any, n_trials: int, cache: dict
) -> list[tuple[str, QuantConfig]]:
    """The full method's warm starts (its forecast chooses their base)."""
    return warm_start_configs(
        space,
        weight_bits=job.settings.weight_bits,
        act_bits=job.settings.act_bits,
        n_trials=n_trials,
        forecast=job_forecast(job, job_objective(job, space, cache)),
        log=lambda message: None,
    )


def first_reaching(curve: np.ndarray, target: float) -> int | None:
    hits = np.nonzero(curve >= target - 1e-12)[0]
    return int(hits[0]) + 1 if len(hits) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds x 25 trials")
    parser.add_argument(
        "--seeds", type=int, help="sampler seeds 0..N-1 (default: the task's, see TASK_RUNS)"
    )
    parser.add_argument("--trials", type=int, help="trials per study (default: the task's)")
    parser.add_argument("--plot", help="write the hypervolume curves (PNG, needs matplotlib)")
    parser.add_argument("--task", choices=("digits", "mnist1d"), default="digits")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated subset of: " + ", ".join(METHODS) + " (full and tpe_raw always)",
    )
    parser.add_argument(
        "--accuracy-cache",
        help="JSON-lines file of config -> accuracy, read at start and appended to: reruns "
        "(new methods, more seeds) retrain nothing already trained under the same task and recipe",
    )
    parser.add_argument(
        "--task-seed",
        type=int,
        default=0,
        help="seed of the data split, float pre-training and sensitivity: another draw of the "
        "same task (the sampler seeds stay 0..seeds-1)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="parallel processes (1 torch thread each)"
    )
    parser.add_argument(
        "--results-dir", help="keep each finished study here; a rerun runs only missing ones"
    )
    args = parser.parse_args()
    default_seeds, default_trials = TASK_RUNS[args.task]
    seeds, n_trials = (
        (3, 25) if args.quick else (args.seeds or default_seeds, args.trials or default_trials)
    )
    methods = [m for m in METHODS if m in set(args.methods.split(",")) | {"full", "tpe_raw"}]
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    # The `kmtpe search` defaults of the task: digits CNN or ResNet-20-1D, pynq-z2, 2 QAT epochs.
    settings = SearchSettings(data=args.task, seed=args.task_seed)
    job = prepare_job(settings, None, log=lambda m: print(m, flush=True), progress=False)
    spaces = {
        constrained: build_space(settings.replace(constrained=constrained), job.report, job.graph)
        for constrained in (True, False)
    }
    layers = list(job.space.layer_names)
    most_expensive = QuantConfig.uniform(layers, weight_bits=8, act_bits=8)
    top = job.fpga.evaluate(job.shapes, most_expensive)
    scale = np.array([top.latency_s, top.energy_j])
    cache = PersistentCache(args.accuracy_cache, settings)
    forecasts: list[tuple[float, float, float]] = []  # (predicted, std, measured) of `full`

    curves: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    wall: dict[str, list[float]] = {name: [] for name in methods}
    fronts: dict[str, list[list[float]]] = {}  # final Pareto fronts of seed 0, for the plot
    started = time.perf_counter()
    pending = [(seed, name) for seed in range(seeds) for name in methods]
    for result in run_studies(pending, n_trials, args, cache):
        name, seed = result["method"], result["seed"]
        wall[name].append(result["wall_s"])
        if name == "full":
            forecasts.extend(tuple(row) for row in result["forecasts"])
        curves[name].append(np.asarray(result["curve"]))
        if seed == 0 and name in ("full", "tpe_raw"):
            fronts[name] = result["front"]
        print(
            f"seed {seed} {name:16s} hv {curves[name][-1][-1]:.4f} "
            f"({result['wall_s']:.0f}s{', stored' if result.get('stored') else ''})",
            flush=True,
        )
    cache.refresh()
    medians = {name: np.median(np.stack(c), axis=0) for name, c in curves.items()}
    q25 = {name: np.percentile(np.stack(c), 25, axis=0) for name, c in curves.items()}
    q75 = {name: np.percentile(np.stack(c), 75, axis=0) for name, c in curves.items()}

    target = medians["tpe_raw"][-1]
    reach_full = first_reaching(medians["full"], target)
    ratio = n_trials / reach_full if reach_full else None
    # The same question at smaller budgets B: how many trials does the full method need to
    # reach what TPE (unconstrained) has after B trials?
    budgets = sorted({b for b in (10, 15, 20, 30, 40, n_trials) if b <= n_trials})
    reach_at = {b: first_reaching(medians["full"], medians["tpe_raw"][b - 1]) for b in budgets}
    ratio_at = {str(b): round(b / r, 2) if r else None for b, r in reach_at.items()}

    print()
    print(f"Hypervolume (median [q25, q75] over {seeds} seeds) after {n_trials} trials")
    print(
        f"{'method':18s} {'hv@10':>8s} {'hv@25':>8s} {'hv@final':>9s} {'q25':>7s} {'q75':>7s} "
        f"{'trials to tpe_raw final':>24s} {'wall s/seed':>12s}"
    )
    for name in methods:
        m = medians[name]
        reach = first_reaching(m, target)
        print(
            f"{name:18s} {m[min(9, n_trials - 1)]:8.4f} {m[min(24, n_trials - 1)]:8.4f} "
            f"{m[-1]:9.4f} {q25[name][-1]:7.4f} {q75[name][-1]:7.4f} "
            f"{(str(reach) if reach else 'not reached'):>24s} {np.median(wall[name]):12.1f}"
        )
    print(
        "(wall: median seconds per seed, sampler time included; trainings are shared through "
        "the config cache, so the first method to meet a config pays for it)"
    )
    print()
    print("Trials the full method needs to reach tpe_raw's median hypervolume at budget B")
    print(f"{'B':>4s} {'tpe_raw hv@B':>13s} {'full needs':>11s} {'ratio B/needs':>14s}")
    for budget, reach in reach_at.items():
        print(
            f"{budget:4d} {medians['tpe_raw'][budget - 1]:13.4f} "
            f"{(str(reach) if reach else 'not reached'):>11s} "
            f"{(f'{budget / reach:.2f}' if reach else '-'):>14s}"
        )
    print()
    print("Reference points (accuracy after the same QAT recipe, FPGA latency, energy):")
    reference_points = reference_configs(job, spaces[True], cache, n_trials)
    for label, acc, lat, energy in reference_points:
        alone = hypervolume([[acc, lat, energy]], scale)
        print(
            f"  {label:16s} acc {100 * acc:6.2f}%  latency {lat * 1e6:8.2f}us  "
            f"energy {energy * 1e6:8.3f}uJ  hv alone {alone:.4f}"
        )
    reference_hv = hypervolume([[acc, lat, e] for _, acc, lat, e in reference_points], scale)
    print(f"  hypervolume of the reference points together: {reference_hv:.4f}")
    pooled_hv, pooled_constrained_hv = pooled_hypervolumes(job, spaces[True], cache, scale)
    print(
        f"\nAll {len(cache)} configs trained by any method and seed: hypervolume {pooled_hv:.4f}; "
        f"those inside the constrained space: {pooled_constrained_hv:.4f}"
    )
    print(f"{len(cache)} distinct configs trained in {time.perf_counter() - started:.0f}s")
    calibration = forecast_calibration(forecasts)
    if calibration:
        print(
            "\nThe full method's accuracy forecast against QAT, over its model-chosen trials: "
            f"median |error| {100 * calibration['median_abs_error']:.2f} points, "
            f"{100 * calibration['within_1_std']:.0f}% within one predicted std, "
            f"Spearman {calibration['spearman']:.2f} ({calibration['n']} trials)"
        )
    if args.plot:
        plot(
            medians, q25, q75, reference_points, reference_hv, fronts, scale, args.plot, args.task
        )
    print(
        json.dumps(
            {
                **{
                    f"hv_{name}": round(float(medians[name][-1]), 5) if name in medians else None
                    for name in METHODS
                },
                "best_method": max(medians, key=lambda name: float(medians[name][-1])),
                "task": args.task,
                "task_seed": args.task_seed,
                "trials_ratio_vs_tpe": round(ratio, 2) if ratio else None,
                "trials_ratio_vs_tpe_at_budget": ratio_at,
                "hv_reference_configs": round(reference_hv, 5),
                "hv_pooled_all_configs": round(pooled_hv, 5),
                "hv_pooled_constrained_configs": round(pooled_constrained_hv, 5),
                "forecast_median_abs_error": calibration.get("median_abs_error"),
                "forecast_spearman": calibration.get("spearman"),
                "wall_s_per_seed": {
                    name: round(float(np.median(w)), 1) for name, w in wall.items()
                },
                "seeds": seeds,
                "trials": n_trials,
            }
        )
    )


def run_studies(
    pending: list[tuple[int, str]], n_trials: int, args: argparse.Namespace, cache: Any
) -> Any:
    """Yield one result dict per (seed, method): stored ones first, then fresh ones."""
    todo = []
    for seed, name in pending:
        stored = _load_result(args.results_dir, _task_tag(args), name, seed, n_trials)
        if stored is not None:
            yield {**stored, "stored": True}
        else:
            todo.append((seed, name))
    if args.jobs <= 1:
        _WORKER.update(_worker_state(args.task, args.accuracy_cache, args.task_seed, cache=cache))
        for seed, name in todo:
            yield _save_result(args.results_dir, _task_tag(args), _run_study(name, seed, n_trials))
        return
    import concurrent.futures
    import multiprocessing

    # Seed by seed (a run stopped early leaves whole seeds), slow methods first in each seed.
    todo.sort(key=lambda job: (job[0], job[1] not in ("gp", "full", "full_hard_order")))
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=args.jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(args.task, args.accuracy_cache, args.task_seed),
    ) as pool:
        futures = [pool.submit(_run_study, name, seed, n_trials) for seed, name in todo]
        for future in concurrent.futures.as_completed(futures):
            yield _save_result(args.results_dir, _task_tag(args), future.result())


_WORKER: dict[str, Any] = {}


def _task_tag(args: argparse.Namespace) -> str:
    """The task's name in stored results (another task seed is another task)."""
    return args.task if args.task_seed == 0 else f"{args.task}-taskseed{args.task_seed}"


def _worker_state(
    task: str, cache_path: str | None, task_seed: int = 0, cache: Any = None
) -> dict[str, Any]:
    # One torch thread per process: small models train fastest that way, and N processes
    # share N cores. The thread count is not part of the recipe (the cache stays valid).
    settings = SearchSettings(data=task, seed=task_seed, torch_threads=1)
    job = prepare_job(settings, None, log=lambda m: None, progress=False)
    spaces = {
        constrained: build_space(settings.replace(constrained=constrained), job.report, job.graph)
        for constrained in (True, False)
    }
    layers = list(job.space.layer_names)
    top = job.fpga.evaluate(job.shapes, QuantConfig.uniform(layers, weight_bits=8, act_bits=8))
    return {
        "job": job,
        "spaces": spaces,
        "cache": cache if cache is not None else PersistentCache(cache_path, settings),
        "scale": np.array([top.latency_s, top.energy_j]),
    }


def _init_worker(task: str, cache_path: str | None, task_seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _WORKER.update(_worker_state(task, cache_path, task_seed))


def _run_study(name: str, seed: int, n_trials: int) -> dict[str, Any]:
    state = _WORKER
    t0 = time.perf_counter()
    study = run_method(name, seed, n_trials, state["job"], state["spaces"], state["cache"])
    return {
        "method": name,
        "seed": seed,
        "trials": n_trials,
        "wall_s": time.perf_counter() - t0,
        "curve": hypervolume_curve(study, n_trials, state["scale"]).tolist(),
        "forecasts": forecast_records(study) if name.startswith("full") else [],
        "front": [list(t.values) for t in study.best_trials],
    }


def _result_path(results_dir: str, task: str, name: str, seed: int, n_trials: int) -> str:
    return os.path.join(results_dir, f"{task}-{name}-seed{seed}-trials{n_trials}.json")


def _load_result(
    results_dir: str | None, task: str, name: str, seed: int, n_trials: int
) -> dict[str, Any] | None:
    if not results_dir:
        return None
    path = _result_path(results_dir, task, name, seed, n_trials)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def _save_result(results_dir: str | None, task: str, result: dict[str, Any]) -> dict[str, Any]:
    if results_dir:
        os.makedirs(results_dir, exist_ok=True)
        path = _result_path(results_dir, task, result["method"], result["seed"], result["trials"])
        with open(path + ".tmp", "w") as handle:
            json.dump(result, handle)
        os.replace(path + ".tmp", path)
    return result


# Settings that do not change what a config trains to.
_NOT_RECIPE = (
    "n_trials",
    "timeout",
    "storage",
    "study_name",
    "cache_dir",
    "torch_threads",
    "constrained",
    "sampler",
    "warm_start",
    "accuracy_window",  # the sampler's region of interest
)


@functools.cache
def _default_settings() -> dict[str, Any]:
    # Built once: the key is computed for every line of a cache file.
    return json.loads(json.dumps(SearchSettings().to_dict(), default=str))


def _recipe_key(settings: dict[str, Any]) -> str:
    # Settings at their defaults are left out, so a new option whose default keeps the old
    # behaviour leaves every stored accuracy valid.
    defaults = _default_settings()
    settings = json.loads(json.dumps(settings, default=str))
    return json.dumps(
        {
            k: v
            for k, v in settings.items()
            if k not in _NOT_RECIPE and (k not in defaults or v != defaults[k])
        },
        sort_keys=True,
    )


class PersistentCache(dict):
    """The shared config -> accuracy memo, optionally backed by a JSON-lines file.

    Each line holds the task's settings, the config and its accuracy; lines whose settings
    differ in anything that changes training are ignored, so one file can serve several tasks.
    """

    def __init__(self, path: str | None, settings: SearchSettings) -> None:
        super().__init__()
        self._path = path
        self._key = _recipe_key(settings.to_dict())
        self._offset = 0
        self.refresh()

    def refresh(self) -> None:
        """Read the lines appended since the last read (by this or another process)."""
        if not (self._path and os.path.exists(self._path)):
            return
        with open(self._path, "rb") as handle:
            handle.seek(self._offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # another process is still writing this line
                self._offset += len(line)
                record = json.loads(line)
                stored = record["settings"]
                stored = json.loads(stored) if isinstance(stored, str) else stored
                if _recipe_key(stored) == self._key:
                    super().__setitem__(QuantConfig.from_dict(record["config"]), record["acc"])

    def __contains__(self, config: object) -> bool:
        if super().__contains__(config):
            return True
        self.refresh()  # parallel runs: another process may have trained it meanwhile
        return super().__contains__(config)

    def __setitem__(self, config: QuantConfig, accuracy: float) -> None:
        super().__setitem__(config, accuracy)
        if self._path:
            record = {"settings": self._key, "config": config.to_dict(), "acc": accuracy}
            with open(self._path, "a") as handle:  # one write per line: O_APPEND keeps it whole
                handle.write(json.dumps(record) + "\n")


def forecast_records(study: optuna.Study) -> list[tuple[float, float, float]]:
    """(predicted accuracy, predicted std, measured accuracy) of trials the sampler chose."""
    rows = []
    for trial in study.trials:
        predicted = trial.user_attrs.get(PREDICTION_ATTR_KEY)
        if predicted and trial.values is not None and trial.user_attrs.get("duplicate_of") is None:
            rows.append((predicted["mean"][0], predicted["std"][0], trial.values[0]))
    return rows


def forecast_calibration(rows: list[tuple[float, float, float]]) -> dict[str, Any]:
    if len(rows) < 3:
        return {}
    from scipy.stats import spearmanr

    predicted, std, measured = (np.array(c) for c in zip(*rows))
    error = np.abs(predicted - measured)
    return {
        "median_abs_error": round(float(np.median(error)), 5),
        "within_1_std": round(float(np.mean(error <= std)), 3),
        "spearman": round(float(spearmanr(predicted, measured).statistic), 3),
        "n": len(rows),
    }


def pooled_hypervolumes(
    job: Any, constrained_space: Any, cache: dict, scale: np.ndarray
) -> tuple[float, float]:
    """Hypervolume of every config any run trained, and of those the constrained space allows.

    The second number bounds what a search on the constrained space could reach with these
    configs: if it is below the first, the sensitivity order excludes part of the best front.
    """
    everything, allowed = [], []
    for config, acc in cache.items():
        report = job.fpga.evaluate(job.shapes, config)
        point = [acc, report.latency_s, report.energy_j]
        everything.append(point)
        try:
            constrained_space.params_for(config)
        except ValueError:
            continue
        allowed.append(point)
    return hypervolume(everything, scale), hypervolume(allowed, scale)


def reference_configs(
    job: Any, space: Any, cache: dict, n_trials: int
) -> list[tuple[str, float, float, float]]:
    from optuna_kmtpe.objectives import quantized_accuracy_fn

    accuracy = quantized_accuracy_fn(
        job.model,
        job.train_loader,
        job.val_loader,
        recipe=recipe_for(job.settings),
        example_input=job.example_input,
        cache=cache,
    )
    rows = []
    for label, config in job_warm_starts(job, space, n_trials, cache):
        report = job.fpga.evaluate(job.shapes, config)
        rows.append(
            (
                label,
                accuracy(config, lambda e, a: None)["accuracy"],
                report.latency_s,
                report.energy_j,
            )
        )
    return rows


def plot(
    medians: dict[str, np.ndarray],
    q25: dict[str, np.ndarray],
    q75: dict[str, np.ndarray],
    reference_points: list[tuple[str, float, float, float]],
    reference_hv: float,
    fronts: dict[str, list[list[float]]],
    scale: np.ndarray,
    path: str,
    task: str = "digits",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, m in medians.items():
        x = np.arange(1, len(m) + 1)
        ax.plot(x, m, label=name, lw=2.2 if name == "full" else 1.3)
        ax.fill_between(x, q25[name], q75[name], alpha=0.12)
    ax.axhline(reference_hv, color="grey", ls="--", lw=1)
    ax.annotate(
        "the full method's warm starts alone",
        (1, reference_hv),
        textcoords="offset points",
        xytext=(2, 3),
        fontsize=7,
        color="grey",
    )
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume (1-acc, latency, energy; normalized)")
    model = {"digits": "digits CNN", "mnist1d": "MNIST-1D ResNet-20-1D"}.get(task, task)
    ax.set_title(f"{model}, QAT in the loop: median and quartiles")
    ax.legend(fontsize=8)
    # Energy separates configs that share a latency (packing makes latency a step function).
    for name, marker in (("full", "o"), ("tpe_raw", "x")):
        points = np.asarray(fronts.get(name, []), dtype=float).reshape(-1, 3)
        points = points[points[:, 0] >= 1.0 - REFERENCE[0]]
        ax2.scatter(
            points[:, 2] / scale[1],
            points[:, 0],
            marker=marker,
            s=22,
            alpha=0.7,
            label=f"{name}: Pareto front, seed 0",
        )
    for label, acc, _lat, energy in reference_points:
        ax2.scatter(energy / scale[1], acc, marker="*", s=110, edgecolors="black", label=label)
    ax2.set_xlabel("energy / energy of uniform 8-bit")
    ax2.set_ylabel("validation accuracy")
    ax2.set_title("final fronts (accuracy >= 90%) and reference configs")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
