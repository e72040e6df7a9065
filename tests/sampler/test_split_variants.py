"""The rejected multi-objective split variants still run (benchmarks/_split_variants.py)."""

from __future__ import annotations

import os
import sys

import numpy as np
import optuna
import pytest

from optuna_kmtpe import KMeansTPESampler


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import _split_variants as variants  # noqa: E402


def test_greedy_hypervolume_2d_matches_optunas_greedy_hssp() -> None:
    from optuna._hypervolume import _solve_hssp

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 15))
        a = np.sort(rng.uniform(0, 1, n))
        points = np.stack([a, 1 - np.sqrt(a)], axis=1)[rng.permutation(n)]
        k = int(rng.integers(1, n))
        mine = sorted(variants.greedy_hypervolume_order_2d(points, k).tolist())
        reference = _solve_hssp(points, np.arange(n), k, np.array([1.1, 1.1]))
        assert mine == sorted(reference.tolist())


def test_rank_thinning_rules() -> None:
    rules = variants.TIEBREAKS
    a = np.linspace(0, 1, 11)
    front = np.stack([a, 1 - a], axis=1)
    every = np.arange(11)
    assert rules["box"](front, every, 1).tolist() == [5]  # the knee has the largest own box
    knee = rules["knee-spread"](front, every, 3)
    assert knee[0] == 5 and set(knee[1:].tolist()) == {0, 10}
    assert len(set(rules["hv2d+spread"](front, every, 4).tolist())) == 4
    approx = rules["approx-hv"](front, every, 3)
    assert approx[0] == 5 and len(set(approx.tolist())) == 3  # the knee first, then spread
    three = np.random.default_rng(0).uniform(0, 1, (8, 3))
    first = rules["approx-hv"](three, np.arange(8), 1)[0]
    assert first == rules["box"](three, np.arange(8), 1)[0]
    assert len(rules["hv2d+spread"](three, np.arange(8), 3)) == 3


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, 1 - x**0.5


@pytest.mark.parametrize("variant", ["box", "hv2d+knee-spread", "whole-rank"])
def test_a_variant_runs_a_multi_objective_study(variant: str) -> None:
    sampler = (
        variants.WholeRankSampler(seed=0)
        if variant == "whole-rank"
        else KMeansTPESampler(seed=0, multi_objective_tiebreak=variants.TIEBREAKS[variant])
    )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=25)
    assert len(study.trials) == 25
