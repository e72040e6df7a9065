"""Search quality of KMeansTPESampler against Optuna's samplers, per problem family, paired seeds.

Problems (see ``_sampler_problems_suite.py``): 89 problems in nine families - continuous test
functions in 2, 5 and 10 dimensions, bbob-mixint-like mixed-integer functions in 5 and 10
dimensions, categorical, conditional (a categorical decides which parameters exist), noisy,
real scikit-learn studies, flat / tie-heavy, 2- and 3-objective (ZDT, DTLZ2, DTLZ7, WFG4, bit
widths) and constrained problems. Samplers: KMeansTPE (defaults, or ``--sampler-kwargs``), TPE
(Optuna 5 defaults; for several objectives that is Optuna's MOTPE), Random, and for several
objectives also NSGA-II. Paired seeds: every sampler gets the same seed for a (problem, seed)
pair, so K-Means TPE and TPE share their random startup trials and, on noisy problems, the noise
sequence. Constrained problems pass ``constraints_func`` to TPE and NSGA-II, and to K-Means TPE
only if its constructor accepts it (a note is printed otherwise).

Values: single objective, the best value so far (lower is better); only feasible trials count
on constrained problems (a run that never finds a feasible trial counts as the worst feasible
value seen on that problem); on noisy problems the best trial is chosen by its observed (noisy)
value and the curve reports that trial's NOISE-FREE value. Several objectives: hypervolume of
the feasible trials (higher is better).

Regret: ``value - optimum`` where the optimum is known, otherwise ``value - best`` with ``best``
the best final value of any sampler and seed in this run; for several objectives ``best HV -
HV`` with the best hypervolume of any sampler and seed. ``eps`` = 1e-6 x Random's median final
regret (1e-12 if that is 0) is added to every regret so that the log ratio stays finite.
``log10`` per problem = ``log10(regret of K-Means TPE's final median / regret of TPE's)``:
negative = K-Means TPE better. A problem is a win (loss) when K-Means TPE's final median is
strictly better (worse) than TPE's; ``seeds W/L`` counts paired seeds.

Usage::

    PYTHONPATH=. python benchmarks/sampler_quality.py [--quick] [--seeds N]
        [--families mixed_int,flat] [--problems sphere5,zdt1]
        [--sampler-kwargs '{"n_clusters": 2}'] [--details out.json]

Run time on 2 cores: ``--quick`` (24 problems, 3 seeds) about 85 s; the full suite (89 problems,
10 seeds, 2770 studies) about 15 minutes.

The last line is a JSON object: ``wins_vs_tpe`` / ``losses_vs_tpe`` (fractions of the
single-objective problems won / lost), ``flat_speedup_vs_tpe`` (median over the flat family of
``budget / km@tpe``), ``mo_hv_ratio_vs_tpe`` (median over the multi-objective family of K-Means
TPE's final median hypervolume / TPE's), ``median_log10_regret_ratio`` (over all problems),
``family_<name>_wins`` / ``_losses`` / ``_median_log10_ratio``, ``distinct_ratio_min`` (min over
flat problems and seeds of K-Means TPE's distinct configurations / TPE's), ``flat_km_worse``
(K-Means TPE's final median worse than TPE's on some flat problem), and ``goal_*`` booleans.
"""

from __future__ import annotations

import os


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # two worker processes on two cores

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _sampler_problems import Problem  # noqa: E402
from _sampler_problems_suite import FAMILIES  # noqa: E402
from _sampler_problems_suite import all_problems  # noqa: E402
from _sampler_runner import compare  # noqa: E402
from _sampler_runner import kmtpe_takes_constraints  # noqa: E402
from _sampler_runner import run_jobs  # noqa: E402
from _sampler_runner import stack  # noqa: E402


# Two to four problems per family, full budgets (about 90 s on 2 cores).
QUICK_PROBLEMS = (
    "sphere5",
    "rastrigin10",
    "rosenbrock10",
    "mixed_int7",
    "mi_ellipsoid5",
    "mi_rastrigin10",
    "mi_levy5",
    "categorical7",
    "cat_chain8",
    "cond_model",
    "cond_layers",
    "noisy_sphere5",
    "noisy_hpo6",
    "sk_svc_digits",
    "sk_tree_wine",
    "bits12_round",
    "int8_sum_flat",
    "bits10_saturating",
    "step_sphere6",
    "zdt1",
    "dtlz7_2obj",
    "dtlz2_2obj",
    "c_sphere5_halfspace",
    "c_knapsack10",
)


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 4) if values else None


def _evaluate_problem(
    p: Problem,
    curves: dict[str, np.ndarray],
    distinct: dict[str, dict[int, int]],
) -> dict[str, Any]:
    """Per-problem row: finals, paired W/L, log10 regret ratio, flat distinct ratios."""
    mo = len(p.directions) > 1
    finite = np.concatenate([c[np.isfinite(c)] for c in curves.values()])
    worst = float(finite.max()) if finite.size else 0.0
    curves = {k: np.where(np.isfinite(c), c, worst) for k, c in curves.items()}
    km, tpe = curves["kmtpe"], curves["tpe"]
    row = compare(p, km, tpe)
    finals = {k: c[:, -1] for k, c in curves.items()}
    if mo:
        ref = max(float(f.max()) for f in finals.values())

        def regret(v: float) -> float:
            return max(ref - v, 0.0)
    else:
        ref = p.optimum if p.optimum is not None else min(float(f.min()) for f in finals.values())

        def regret(v: float) -> float:
            return max(v - ref, 0.0)

    random_regret = regret(float(np.median(finals["random"])))
    eps = 1e-6 * random_regret if random_regret > 0 else 1e-12
    km_med, tpe_med = float(np.median(finals["kmtpe"])), float(np.median(finals["tpe"]))
    row["log10"] = math.log10((regret(km_med) + eps) / (regret(tpe_med) + eps))
    row["hv_ratio"] = km_med / max(tpe_med, 1e-12) if mo else None
    row["finals"] = {k: [float(x) for x in f] for k, f in finals.items()}
    if p.family == "flat":
        ratios = [distinct["kmtpe"][s] / distinct["tpe"][s] for s in sorted(distinct["kmtpe"])]
        row["distinct_ratio_min"] = min(ratios)
        row["distinct"] = {k: [distinct[k][s] for s in sorted(distinct[k])] for k in distinct}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24 problems, 3 seeds: 90 s")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--processes", type=int, default=2, choices=(1, 2))
    parser.add_argument("--families", default="", help="comma-separated families")
    parser.add_argument("--problems", default="", help="comma-separated problem names")
    parser.add_argument("--sampler-kwargs", default="{}", help="JSON kwargs of KMeansTPESampler")
    parser.add_argument("--details", default="", help="write per-problem results (JSON) here")
    args = parser.parse_args()

    seeds = args.seeds or (3 if args.quick else 10)
    kmtpe_kwargs = json.loads(args.sampler_kwargs)
    probs = all_problems()
    if args.families:
        wanted = set(args.families.split(","))
        unknown = wanted - set(FAMILIES)
        if unknown:
            parser.error(f"unknown families {sorted(unknown)}; choose from {FAMILIES}")
        probs = [p for p in probs if p.family in wanted]
    if args.problems:
        names = set(args.problems.split(","))
        unknown = names - {p.name for p in all_problems()}
        if unknown:
            parser.error(f"unknown problems {sorted(unknown)}")
        probs = [p for p in probs if p.name in names]
    elif args.quick:
        probs = [p for p in probs if p.name in QUICK_PROBLEMS]
    if not probs:
        parser.error("no problem selected")
    if any(p.constraints is not None for p in probs) and not kmtpe_takes_constraints():
        print(
            "note: KMeansTPESampler does not accept constraints_func; on constrained problems "
            "it runs without it (TPE and NSGA-II get it)"
        )

    samplers_so = ("kmtpe", "tpe", "random")
    samplers_mo = ("kmtpe", "tpe", "nsga2", "random")
    jobs = []
    for seed in range(seeds):
        for p in probs:
            for kind in samplers_mo if len(p.directions) > 1 else samplers_so:
                kwargs = kmtpe_kwargs if kind == "kmtpe" else {}
                jobs.append((p.name, kind, kind, kwargs, seed, p.n_trials))
    # The slow studies (several objectives, scikit-learn) first, for an even end on 2 processes.
    slow = {p.name for p in probs if len(p.directions) > 1 or p.family == "sklearn"}
    jobs.sort(key=lambda j: (j[0] not in slow, j[4]))
    start = time.perf_counter()
    info: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    curves = run_jobs(jobs, processes=args.processes, info=info)
    elapsed = time.perf_counter() - start

    def q(values: np.ndarray) -> str:
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        return f"{med:.4g} [{q1:.3g},{q3:.3g}]"[:25]

    print(f"{len(jobs)} studies, {seeds} paired seeds, {elapsed:.0f} s wall")
    if kmtpe_kwargs:
        print(f"KMeansTPESampler kwargs: {json.dumps(kmtpe_kwargs)}")
    print(
        "single objective: best value (noisy: its noise-free value), median [q1,q3], lower is "
        "better; multi-objective: hypervolume, higher is better; log10: regret ratio km/tpe"
    )
    print(
        f"{'family':<16}{'problem':<21}{'N':>4}  {'KMeansTPE':<26}{'TPE':<26}{'Random':<26}"
        f"{'NSGA-II':<26}{'km@tpe':>7}{'tpe@tpe':>8}{'seeds W/L':>10}{'log10':>7}"
    )
    rows: dict[str, dict[str, Any]] = {}
    for p in probs:
        labels = ("kmtpe", "tpe", "random") + (("nsga2",) if len(p.directions) > 1 else ())
        stacked = {k: stack(curves[(p.name, k)]) for k in labels}
        distinct = {k: {s: d["distinct"] for s, d in info[(p.name, k)].items()} for k in labels}
        r = rows[p.name] = _evaluate_problem(p, stacked, distinct)
        nsga = q(np.array(r["finals"]["nsga2"])) if "nsga2" in r["finals"] else "-"
        print(
            f"{p.family:<16}{p.name:<21}{p.n_trials:>4}  {q(np.array(r['finals']['kmtpe'])):<26}"
            f"{q(np.array(r['finals']['tpe'])):<26}{q(np.array(r['finals']['random'])):<26}"
            f"{nsga:<26}{str(r['km_reach'] or '-'):>7}{str(r['tpe_reach'] or '-'):>8}"
            f"{r['seed_wins']:>5}/{r['seed_losses']:<4}{r['log10']:>7.2f}"
        )

    flat = [p for p in probs if p.family == "flat"]
    if flat:
        print("\nflat problems: distinct configurations per study, median [min] over seeds")
        print(f"{'problem':<21}{'KMeansTPE':>14}{'TPE':>14}{'min km/tpe':>12}")
        for p in flat:
            d = rows[p.name]["distinct"]
            km_text = f"{np.median(d['kmtpe']):.0f} [{min(d['kmtpe'])}]"
            tpe_text = f"{np.median(d['tpe']):.0f} [{min(d['tpe'])}]"
            print(
                f"{p.name:<21}{km_text:>14}{tpe_text:>14}"
                f"{rows[p.name]['distinct_ratio_min']:>12.3f}"
            )

    print("\nper family (wins/losses: final medians vs TPE; seeds W/L: paired seeds)")
    print(
        f"{'family':<16}{'problems':>9}{'wins':>6}{'losses':>7}{'seeds W/L':>11}"
        f"{'med log10':>10}{'hv ratio':>9}"
    )
    summary: dict[str, Any] = {}
    per_family: dict[str, dict[str, Any]] = {}
    for fam in FAMILIES:
        fam_rows = [rows[p.name] for p in probs if p.family == fam]
        if not fam_rows:
            continue
        hv = [r["hv_ratio"] for r in fam_rows if r["hv_ratio"] is not None]
        per_family[fam] = {
            "problems": len(fam_rows),
            "wins": sum(r["better"] for r in fam_rows),
            "losses": sum(r["worse"] for r in fam_rows),
            "seed_wins": sum(r["seed_wins"] for r in fam_rows),
            "seed_losses": sum(r["seed_losses"] for r in fam_rows),
            "median_log10_ratio": _median([r["log10"] for r in fam_rows]),
            "hv_ratio": _median(hv),
        }
        f = per_family[fam]
        print(
            f"{fam:<16}{f['problems']:>9}{f['wins']:>6}{f['losses']:>7}"
            f"{f['seed_wins']:>6}/{f['seed_losses']:<4}{f['median_log10_ratio']:>10.3f}"
            f"{'-' if f['hv_ratio'] is None else format(f['hv_ratio'], '.4f'):>9}"
        )

    so = [rows[p.name] for p in probs if len(p.directions) == 1]
    mo = [rows[p.name] for p in probs if len(p.directions) > 1]
    flat_rows = [rows[p.name] for p in flat]
    group_a = [rows[p.name] for p in probs if p.group == "a"]
    summary["wins_vs_tpe"] = round(sum(r["better"] for r in so) / len(so), 3) if so else None
    summary["losses_vs_tpe"] = round(sum(r["worse"] for r in so) / len(so), 3) if so else None
    summary["flat_speedup_vs_tpe"] = _median([r["speedup"] for r in flat_rows])
    summary["flat_speedup_vs_tpe_strict"] = _median([r["speedup_strict"] for r in flat_rows])
    summary["mo_hv_ratio_vs_tpe"] = _median([r["hv_ratio"] for r in mo])
    summary["median_log10_regret_ratio"] = _median([r["log10"] for r in rows.values()])
    summary["seed_wins"] = sum(r["seed_wins"] for r in rows.values())
    summary["seed_losses"] = sum(r["seed_losses"] for r in rows.values())
    for fam, f in per_family.items():
        summary[f"family_{fam}_wins"] = f["wins"]
        summary[f"family_{fam}_losses"] = f["losses"]
        summary[f"family_{fam}_median_log10_ratio"] = f["median_log10_ratio"]
    summary["distinct_ratio_min"] = (
        round(min(r["distinct_ratio_min"] for r in flat_rows), 4) if flat_rows else None
    )
    summary["flat_km_worse"] = any(r["worse"] for r in flat_rows) if flat_rows else None
    summary["flat_seed_losses"] = sum(r["seed_losses"] for r in flat_rows)
    summary["group_a_wins"] = sum(r["better"] for r in group_a)
    summary["group_a_losses"] = sum(r["worse"] for r in group_a)
    summary["problems"] = len(probs)
    summary["seeds"] = seeds
    summary["quick"] = args.quick
    summary["sampler_kwargs"] = kmtpe_kwargs
    summary["kmtpe_constraints_func"] = kmtpe_takes_constraints()
    summary["goal_wins_ge_losses_every_family"] = all(
        f["wins"] >= f["losses"] for f in per_family.values()
    )
    med = summary["median_log10_regret_ratio"]
    summary["goal_median_log10_ratio_le_0"] = med <= 0 if med is not None else None
    hv = summary["mo_hv_ratio_vs_tpe"]
    summary["goal_mo_hv_ratio_ge_1"] = hv >= 1.0 if hv is not None else None
    dr = summary["distinct_ratio_min"]
    summary["goal_distinct_ratio_ge_0.9"] = dr >= 0.9 if dr is not None else None
    summary["goal_a_losses_le_wins"] = summary["group_a_losses"] <= summary["group_a_wins"]
    fs = summary["flat_speedup_vs_tpe"]
    summary["goal_flat_speedup_ge_1.5"] = fs >= 1.5 if fs is not None else None
    if args.details:
        with open(args.details, "w") as fh:
            json.dump(
                {"summary": summary, "families": per_family, "problems": rows},
                fh,
                indent=1,
                default=lambda o: o.item() if hasattr(o, "item") else str(o),
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
