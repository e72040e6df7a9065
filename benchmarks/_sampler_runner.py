"""Run (problem, sampler, seed) jobs on at most two processes and summarize the curves."""

from __future__ import annotations

from collections.abc import Sequence
import functools
import inspect
import math
import multiprocessing
import os
import sys
import time
from typing import Any

import numpy as np
import optuna


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _sampler_problems import Problem  # noqa: E402
from _sampler_problems import _constraints_from_attrs  # noqa: E402
from _sampler_problems import run_study_details  # noqa: E402
from _sampler_problems_suite import problem_by_name  # noqa: E402

from optuna_kmtpe import KMeansTPESampler  # noqa: E402


@functools.cache
def kmtpe_takes_constraints() -> bool:
    """Whether ``KMeansTPESampler.__init__`` accepts ``constraints_func``."""
    return "constraints_func" in inspect.signature(KMeansTPESampler.__init__).parameters


def make_sampler(
    kind: str, kwargs: dict[str, Any], seed: int, constrained: bool = False
) -> optuna.samplers.BaseSampler:
    """A sampler; ``constrained``: pass ``constraints_func`` where the sampler accepts it
    (TPE, NSGA-II, and K-Means TPE once its constructor has the parameter)."""
    extra: dict[str, Any] = {"constraints_func": _constraints_from_attrs} if constrained else {}
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **extra)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **extra)
    if kind == "kmtpe":
        kwargs = dict(kwargs)
        # A rejected variant's sampler class (benchmarks/_split_variants.py), variant study only.
        sampler_class = kwargs.pop("_sampler_class", KMeansTPESampler)
        if not kmtpe_takes_constraints():
            extra = {}
        return sampler_class(seed=seed, **kwargs, **extra)
    raise ValueError(kind)


def _job(
    args: tuple[str, str, str, dict[str, Any], int, int],
) -> tuple[str, str, int, np.ndarray, float, dict[str, Any]]:
    problem_name, label, kind, kwargs, seed, n_trials = args
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    from threadpoolctl import threadpool_limits

    warnings.simplefilter("ignore")
    problem = problem_by_name(problem_name)
    sampler = make_sampler(kind, kwargs, seed, constrained=problem.constraints is not None)
    start = time.perf_counter()
    with threadpool_limits(limits=1):  # two processes on two cores: no BLAS/OpenMP threads
        curve, info = run_study_details(problem, sampler, n_trials, seed=seed)
    elapsed = time.perf_counter() - start
    info["seconds"] = elapsed
    return problem_name, label, seed, curve, elapsed, info


def run_jobs(
    jobs: Sequence[tuple[str, str, str, dict[str, Any], int, int]],
    processes: int = 2,
    info: dict[tuple[str, str], dict[int, dict[str, Any]]] | None = None,
) -> dict[tuple[str, str], dict[int, np.ndarray]]:
    """Return ``curves[(problem, label)][seed]``; fill ``info[(problem, label)][seed]`` (the
    number of distinct configurations and the seconds of each study) when given."""
    results: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    context = multiprocessing.get_context("fork")
    with context.Pool(processes=min(processes, 2)) as pool:
        for problem_name, label, seed, curve, _, details in pool.imap_unordered(
            _job, jobs, chunksize=1
        ):
            results.setdefault((problem_name, label), {})[seed] = curve
            if info is not None:
                info.setdefault((problem_name, label), {})[seed] = details
    return results


def stack(curves: dict[int, np.ndarray]) -> np.ndarray:
    return np.stack([curves[s] for s in sorted(curves)])


def trials_to_reach(median_curve: np.ndarray, target: float, maximize: bool) -> int | None:
    """First trial (1-based) at which the median curve reaches ``target``."""
    hit = median_curve >= target if maximize else median_curve <= target
    idx = np.flatnonzero(hit)
    return int(idx[0]) + 1 if idx.size else None


def compare(problem: Problem, km: np.ndarray, tpe: np.ndarray) -> dict[str, Any]:
    """Compare K-Means TPE and TPE curves (seeds x trials) of one problem."""
    maximize = problem.group == "c"  # hypervolume
    km_median = np.median(km, axis=0)
    tpe_median = np.median(tpe, axis=0)
    n = km.shape[1]
    target = float(tpe_median[-1])
    km_reach = trials_to_reach(km_median, target, maximize)
    tpe_reach = trials_to_reach(tpe_median, target, maximize)
    final_km, final_tpe = float(km_median[-1]), float(tpe_median[-1])
    sign = -1.0 if maximize else 1.0
    better = sign * final_km < sign * final_tpe
    worse = sign * final_km > sign * final_tpe
    paired = np.sign(sign * (tpe[:, -1] - km[:, -1]))
    return {
        "final_km": final_km,
        "final_tpe": final_tpe,
        "better": bool(better),
        "worse": bool(worse),
        "km_reach": km_reach,
        "tpe_reach": tpe_reach,
        "speedup": n / km_reach if km_reach else n / (n + 1),
        "speedup_strict": (tpe_reach or n) / km_reach if km_reach else (tpe_reach or n) / (n + 1),
        "seed_wins": int(np.sum(paired > 0)),
        "seed_losses": int(np.sum(paired < 0)),
        "log_ratio": (
            math.log10((final_km + 1e-12) / (final_tpe + 1e-12))
            if not maximize and final_tpe >= 0 and final_km >= 0
            else math.log10(max(final_km, 1e-12) / max(final_tpe, 1e-12))
        ),
    }
