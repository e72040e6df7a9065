"""Time per suggested trial: KMeansTPESampler / Optuna's TPESampler, side by side.

A study of ``n`` finished trials (5 float parameters; one objective, or three objectives) is
built once with ``study.add_trials``; each sampler then gets a fresh in-memory copy and the
time of ``ask`` + ``tell`` for the next ``--next`` trials is measured. Samplers alternate within
each repetition and the median over repetitions is reported; times are CPU times of the
process (``time.process_time``), so other processes sharing the cores do not distort them.

Usage::

    PYTHONPATH=. python benchmarks/sampler_overhead.py [--quick]

The last line is a JSON object with ``ratio_so_1000`` and ``ratio_mo3_1000`` (in ``--quick``,
the ratios at the largest size run) and ``ratio_mo3_known_1000``: K-Means TPE in the
known-objectives mode (two of the three DTLZ2 objectives given by ``known_objectives``, the
forecast refitted and 256 candidates scored by expected hypervolume improvement every trial)
against Optuna's multi-objective TPE.
"""

# ruff: noqa: E402
from __future__ import annotations

import os


# One BLAS thread, as the project runs small models: on 2 shared cores a multi-threaded BLAS
# spins and bills its CPU time to whichever sampler happens to call it.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import json
import math
import sys
import time
import warnings

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from optuna_kmtpe import KMeansTPESampler  # noqa: E402


N_PARAMS = 5
DISTRIBUTIONS = {f"x{i}": FloatDistribution(0.0, 1.0) for i in range(N_PARAMS)}


def _values(x: np.ndarray, n_objectives: int) -> list[float]:
    if n_objectives == 1:
        return [float(np.sum((x - 0.3) ** 2))]
    # DTLZ2 with 3 objectives.
    g = float(np.sum((x[2:] - 0.5) ** 2))
    a, b = x[0] * math.pi / 2, x[1] * math.pi / 2
    return [
        (1 + g) * math.cos(a) * math.cos(b),
        (1 + g) * math.cos(a) * math.sin(b),
        (1 + g) * math.sin(a),
    ]


def _known_dtlz2(params: dict[str, float]) -> list[float | None]:
    """The last two DTLZ2 objectives as known before the trial (the first stays unknown)."""
    x = np.array([params[f"x{i}"] for i in range(N_PARAMS)])
    return [None, *_values(x, 3)[1:]]


def _history(n: int, n_objectives: int) -> list[optuna.trial.FrozenTrial]:
    rng = np.random.default_rng(0)
    trials = []
    for _ in range(n):
        x = rng.uniform(0, 1, N_PARAMS)
        trials.append(
            create_trial(
                params={f"x{i}": float(v) for i, v in enumerate(x)},
                distributions=DISTRIBUTIONS,
                values=_values(x, n_objectives),
            )
        )
    return trials


def _time_per_trial(
    sampler: optuna.samplers.BaseSampler,
    history: list[optuna.trial.FrozenTrial],
    n_objectives: int,
    n_next: int,
) -> float:
    study = optuna.create_study(directions=["minimize"] * n_objectives, sampler=sampler)
    study.add_trials(history)
    # CPU time of this process: robust to other processes sharing the cores.
    start = time.process_time()
    for _ in range(n_next):
        trial = study.ask()
        x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(N_PARAMS)])
        study.tell(trial, _values(x, n_objectives))
    return (time.process_time() - start) / n_next


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute on 2 cores")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")

    if args.quick:
        sizes_so, sizes_mo, n_next, repeats = (100, 500, 1000), (100, 500), 20, 3
    else:
        sizes_so, sizes_mo, n_next, repeats = (100, 500, 1000), (100, 500, 1000), 30, 5
    repeats = args.repeats or repeats

    rows = []
    ratios: dict[str, float] = {}
    for n_objectives, sizes, known in (
        (1, sizes_so, False),
        (3, sizes_mo, False),
        (3, sizes_mo, True),
    ):
        for n in sizes:
            history = _history(n, n_objectives)
            times: dict[str, list[float]] = {"kmtpe": [], "tpe": []}
            for r in range(repeats):
                # Alternate the order so that neither sampler always runs first.
                order = ("kmtpe", "tpe") if r % 2 == 0 else ("tpe", "kmtpe")
                for name in order:
                    if name == "tpe":
                        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=r)
                    elif known:
                        sampler = KMeansTPESampler(seed=r, known_objectives=_known_dtlz2)
                    else:
                        sampler = KMeansTPESampler(seed=r)
                    times[name].append(_time_per_trial(sampler, history, n_objectives, n_next))
            km, tpe = float(np.median(times["kmtpe"])), float(np.median(times["tpe"]))
            label = "so" if n_objectives == 1 else ("mo3_known" if known else "mo3")
            ratios[f"ratio_{label}_{n}"] = km / tpe
            rows.append((label, n, km * 1e3, tpe * 1e3, km / tpe))

    print(f"{'objectives':<11}{'trials':>7}{'KMeansTPE ms':>14}{'TPE ms':>9}{'ratio':>8}")
    for label, n, km, tpe, ratio in rows:
        print(f"{label:<11}{n:>7}{km:>14.2f}{tpe:>9.2f}{ratio:>8.2f}")
    mo_sizes = [int(k.rsplit("_", 1)[1]) for k in ratios if k.startswith("ratio_mo3_known_")]
    so_sizes = [int(k.rsplit("_", 1)[1]) for k in ratios if k.startswith("ratio_so_")]
    summary = {
        "ratio_so_1000": round(ratios[f"ratio_so_{max(so_sizes)}"], 3),
        "ratio_mo3_1000": round(ratios[f"ratio_mo3_{max(mo_sizes)}"], 3),
        "largest_so": max(so_sizes),
        "largest_mo3": max(mo_sizes),
        "ms_per_trial_kmtpe_so": round(rows[len(sizes_so) - 1][2], 2),
        "ms_per_trial_tpe_so": round(rows[len(sizes_so) - 1][3], 2),
        "ratio_mo3_known_1000": round(ratios[f"ratio_mo3_known_{max(mo_sizes)}"], 3),
        "ms_per_trial_kmtpe_mo3": round(rows[-1 - len(sizes_mo)][2], 2),
        "ms_per_trial_tpe_mo3": round(rows[-1 - len(sizes_mo)][3], 2),
        "ms_per_trial_kmtpe_mo3_known": round(rows[-1][2], 2),
        "goal_so_le_1.2": ratios[f"ratio_so_{max(so_sizes)}"] <= 1.2,
        "goal_mo3_le_1.0": ratios[f"ratio_mo3_{max(mo_sizes)}"] <= 1.0,
        "goal_mo3_known_le_1.0": ratios[f"ratio_mo3_known_{max(mo_sizes)}"] <= 1.0,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
