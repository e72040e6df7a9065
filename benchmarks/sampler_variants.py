"""Compare K-Means TPE variants with Optuna's TPE (the study that chose the defaults).

Usage::

    PYTHONPATH=. python benchmarks/sampler_variants.py --seeds 6 --groups ab

Prints, per variant, wins/losses of the final median against TPE over the problems, the
median log10 ratio of final values (negative = better), and the median speedup on group (b).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _sampler_problems import problems  # noqa: E402
from _sampler_runner import compare  # noqa: E402
from _sampler_runner import run_jobs  # noqa: E402
from _sampler_runner import stack  # noqa: E402
from _split_variants import TIEBREAKS  # noqa: E402
from _split_variants import WholeRankSampler  # noqa: E402


def _schedule_grow(n: int) -> int:
    return 2 if n < 30 else (3 if n < 80 else 4)


VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "k2": {"n_clusters": 2},
    "k4": {"n_clusters": 4},
    "k-grow-2to4": {"n_clusters": _schedule_grow},
    "share-0.1-0.25": {"min_good_fraction": 0.1, "max_good_fraction": 0.25},
    "share-0.02-0.15": {"min_good_fraction": 0.02, "max_good_fraction": 0.15},
    "share-0.1-0.1": {"min_good_fraction": 0.1, "max_good_fraction": 0.1},
    "middle-0.5": {"middle_weight": 0.5},
    "middle-0": {"middle_weight": 0.0},
    "window-4": {"window_factor": 4.0},
    "window-1": {"window_factor": 1.0},
    "window-3": {"window_factor": 3.0},
    "mo-box": {"multi_objective_tiebreak": TIEBREAKS["box"]},
    "mo-approx-hv": {"multi_objective_tiebreak": TIEBREAKS["approx-hv"]},
    "mo-hv2d-approx-hv": {"multi_objective_tiebreak": TIEBREAKS["hv2d+approx-hv"]},
    "mo-whole-rank": {"_sampler_class": WholeRankSampler},
    "mo-share-0.05-0.1": {"max_good_fraction": 0.1},
    "mo-share-0.1-0.3": {"min_good_fraction": 0.1, "max_good_fraction": 0.3},
    "mo-hv2d-spread": {"multi_objective_tiebreak": TIEBREAKS["hv2d+spread"]},
    "mo-hv2d-knee-spread": {"multi_objective_tiebreak": TIEBREAKS["hv2d+knee-spread"]},
    "mo-knee-spread": {"multi_objective_tiebreak": TIEBREAKS["knee-spread"]},
    "mo-box-share-0.1-0.1": {
        "multi_objective_tiebreak": TIEBREAKS["box"],
        "min_good_fraction": 0.1,
        "max_good_fraction": 0.1,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--groups", default="ab")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--problems", default="")
    args = parser.parse_args()

    chosen = [v for v in args.variants.split(",") if v]
    probs = [p for p in problems() if p.group in args.groups]
    if args.problems:
        probs = [p for p in probs if p.name in args.problems.split(",")]
    jobs = []
    for p in probs:
        for seed in range(args.seeds):
            jobs.append((p.name, "tpe", "tpe", {}, seed, p.n_trials))
            for v in chosen:
                jobs.append((p.name, v, "kmtpe", VARIANTS[v], seed, p.n_trials))
    start = time.perf_counter()
    curves = run_jobs(jobs)
    print(f"{len(jobs)} runs in {time.perf_counter() - start:.0f} s")

    summary = {}
    print(
        f"{'variant':<18}{'wins':>5}{'loss':>5}{'seedW':>7}{'seedL':>7}{'med log10':>10}"
        f"{'flat spd':>9}{'strict':>8}{'mo hv':>8}"
    )
    for v in chosen:
        rows = {
            p.name: compare(p, stack(curves[(p.name, v)]), stack(curves[(p.name, "tpe")]))
            for p in probs
        }
        ab = [rows[p.name] for p in probs if p.group in "ab"]
        b = [rows[p.name] for p in probs if p.group == "b"]
        c = [rows[p.name] for p in probs if p.group == "c"]
        s = {
            "wins": sum(r["better"] for r in ab),
            "losses": sum(r["worse"] for r in ab),
            "seed_wins": sum(r["seed_wins"] for r in ab + c),
            "seed_losses": sum(r["seed_losses"] for r in ab + c),
            "log_ratio": float(np.median([r["log_ratio"] for r in ab])) if ab else float("nan"),
            "flat_speedup": float(np.median([r["speedup"] for r in b])) if b else float("nan"),
            "flat_strict": float(np.median([r["speedup_strict"] for r in b]))
            if b
            else float("nan"),
            "mo_hv": float(np.median([r["final_km"] / max(r["final_tpe"], 1e-12) for r in c]))
            if c
            else float("nan"),
            "per_problem": {k: round(r["log_ratio"], 3) for k, r in rows.items()},
        }
        summary[v] = s
        print(
            f"{v:<18}{s['wins']:>5}{s['losses']:>5}{s['seed_wins']:>7}{s['seed_losses']:>7}"
            f"{s['log_ratio']:>10.3f}{s['flat_speedup']:>9.2f}{s['flat_strict']:>8.2f}"
            f"{s['mo_hv']:>8.3f}"
        )
    for v in chosen:
        print(v, json.dumps(summary[v]["per_problem"]))


if __name__ == "__main__":
    main()
