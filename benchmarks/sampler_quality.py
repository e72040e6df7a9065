"""Search quality of KMeansTPESampler against Optuna's samplers, paired seeds.

Groups of problems (see ``_sampler_problems.py``): (a) standard continuous and mixed-integer
functions, (b) flat, plateau-heavy landscapes with many ties (incl. per-layer bit-width problems
shaped like mixed-precision search), (c) 2- and 3-objective problems. Samplers: KMeansTPE
(defaults), TPE (Optuna 5.0 defaults, which for several objectives is Optuna's default
multi-objective TPE), Random, and for group (c) also NSGA-II. Every sampler gets the same seeds
(KMeansTPE and TPE then share their random startup trials).

Reported per problem: the final median and quartiles of the best value (single objective, lower
is better) or of the hypervolume (several objectives, higher is better), and the number of trials
K-Means TPE's median curve needs to reach TPE's final median (``km@tpe``; ``-`` = not reached),
next to the trials TPE's own median curve needs (``tpe@tpe``).

Usage::

    PYTHONPATH=. python benchmarks/sampler_quality.py [--quick] [--seeds N]

The last line is a JSON object with ``wins_vs_tpe``, ``losses_vs_tpe`` (fractions of group
(a)+(b) problems where K-Means TPE's final median is strictly better / worse than TPE's),
``flat_speedup_vs_tpe`` (median over group (b) of ``budget / km@tpe``) and ``mo_hv_ratio_vs_tpe``
(median over group (c) of K-Means TPE's final median hypervolume over TPE's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _sampler_problems import problems  # noqa: E402
from _sampler_runner import compare  # noqa: E402
from _sampler_runner import run_jobs  # noqa: E402
from _sampler_runner import stack  # noqa: E402


QUICK_PROBLEMS = (
    "sphere5",
    "rastrigin5",
    "mixed_int7",
    "bits12_round",
    "step_sphere6",
    "zdt1",
    "dtlz2_3obj",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute on 2 cores")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--processes", type=int, default=2, choices=(1, 2))
    args = parser.parse_args()

    seeds = args.seeds or (3 if args.quick else 10)
    probs = problems()
    if args.quick:
        probs = [p for p in probs if p.name in QUICK_PROBLEMS]
    budget = {p.name: (p.n_trials * 2 // 3 if args.quick else p.n_trials) for p in probs}

    samplers_so = ("kmtpe", "tpe", "random")
    samplers_mo = ("kmtpe", "tpe", "nsga2", "random")
    jobs = []
    for seed in range(seeds):
        for p in probs:
            for kind in samplers_mo if p.group == "c" else samplers_so:
                jobs.append((p.name, kind, kind, {}, seed, budget[p.name]))
    start = time.perf_counter()
    curves = run_jobs(jobs, processes=args.processes)
    elapsed = time.perf_counter() - start

    def q(values: np.ndarray) -> str:
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        return f"{med:.4g} [{q1:.3g},{q3:.3g}]"

    print(f"{len(jobs)} studies, {seeds} paired seeds, {elapsed:.0f} s wall")
    header = (
        f"{'grp':<4}{'problem':<17}{'N':>4}  {'KMeansTPE':<26}{'TPE':<26}{'Random':<26}"
        f"{'NSGA-II':<26}{'km@tpe':>7}{'tpe@tpe':>8}{'seeds W/L':>10}"
    )
    print(
        "single objective: best value, median [q1,q3], lower is better; "
        "multi-objective: hypervolume, higher is better"
    )
    print(header)
    rows = {}
    for p in probs:
        km, tpe = stack(curves[(p.name, "kmtpe")]), stack(curves[(p.name, "tpe")])
        rows[p.name] = compare(p, km, tpe)
        r = rows[p.name]
        random_text = q(stack(curves[(p.name, "random")])[:, -1])
        nsga_text = q(stack(curves[(p.name, "nsga2")])[:, -1]) if p.group == "c" else "-"
        print(
            f"{p.group:<4}{p.name:<17}{budget[p.name]:>4}  {q(km[:, -1]):<26}{q(tpe[:, -1]):<26}"
            f"{random_text:<26}{nsga_text:<26}{str(r['km_reach'] or '-'):>7}"
            f"{str(r['tpe_reach'] or '-'):>8}{r['seed_wins']:>5}/{r['seed_losses']:<4}"
        )

    ab = [rows[p.name] for p in probs if p.group in "ab"]
    b = [rows[p.name] for p in probs if p.group == "b"]
    c = [rows[p.name] for p in probs if p.group == "c"]
    a = [rows[p.name] for p in probs if p.group == "a"]
    summary = {
        "wins_vs_tpe": round(sum(r["better"] for r in ab) / len(ab), 3),
        "losses_vs_tpe": round(sum(r["worse"] for r in ab) / len(ab), 3),
        "flat_speedup_vs_tpe": round(float(np.median([r["speedup"] for r in b])), 3),
        "flat_speedup_vs_tpe_strict": round(float(np.median([r["speedup_strict"] for r in b])), 3),
        "mo_hv_ratio_vs_tpe": round(
            float(np.median([r["final_km"] / max(r["final_tpe"], 1e-12) for r in c])), 4
        ),
        "group_a_wins": sum(r["better"] for r in a),
        "group_a_losses": sum(r["worse"] for r in a),
        "seeds": seeds,
        "quick": args.quick,
    }
    summary["goal_a_losses_le_wins"] = summary["group_a_losses"] <= summary["group_a_wins"]
    summary["goal_flat_speedup_ge_1.5"] = summary["flat_speedup_vs_tpe"] >= 1.5
    summary["goal_mo_hv_ratio_ge_1"] = summary["mo_hv_ratio_vs_tpe"] >= 1.0
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
