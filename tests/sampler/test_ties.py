"""Flat, tie-heavy landscapes: the sampler keeps exploring like TPE and never repeats a config.

The problems are the collapse cases reported on the first product version (one config proposed
66 times in 80 trials): integer bit-widths on a 95% plateau, per-layer categorical bits with a
saturating accuracy rounded to two decimals, rounded floats and a rounded two-objective problem.
"""

from __future__ import annotations

from collections.abc import Callable
import itertools
from typing import Any

import optuna
from optuna.trial import TrialState
import pytest

from optuna_kmtpe import KMeansTPESampler


def plateau_ints(trial: optuna.Trial) -> float:
    b = [trial.suggest_int(f"b{i}", 2, 8) for i in range(8)]
    return 1.0 if sum(b) > 20 else 1.0 + 0.001 * sum(b)


def saturating_categoricals(trial: optuna.Trial) -> float:
    bits = [trial.suggest_categorical(f"l{i}", [2, 3, 4, 6, 8]) for i in range(10)]
    return -round(0.99 - sum(0.3 * 4.0 ** (-b) for b in bits), 2)


def rounded_floats(trial: optuna.Trial) -> float:
    x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(5)]
    return round(max(0.0, sum(x) - 1.0), 1)


def rounded_two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    b = [trial.suggest_int(f"b{i}", 2, 8) for i in range(6)]
    loss = round(sum(4.0 ** (-v) for v in b), 2)
    return loss, float(sum(b) >= 24)


PROBLEMS: dict[str, tuple[Callable[[optuna.Trial], Any], int]] = {
    "plateau_ints": (plateau_ints, 1),
    "saturating_categoricals": (saturating_categoricals, 1),
    "rounded_floats": (rounded_floats, 1),
    "rounded_two_objectives": (rounded_two_objectives, 2),
}


def _config(trial: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    # Rounded floats count as the same config when they agree to 3 decimals: a collapsed
    # sampler re-proposes l(x)'s mode with tiny jitter.
    return tuple(
        round(v, 3) if isinstance(v, float) else v for _, v in sorted(trial.params.items())
    )


def _run(problem: str, sampler: optuna.samplers.BaseSampler, n_trials: int = 60) -> optuna.Study:
    objective, n_objectives = PROBLEMS[problem]
    study = optuna.create_study(directions=["minimize"] * n_objectives, sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("multivariate", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_distinct_configs_match_tpe(problem: str, multivariate: bool, seed: int) -> None:
    km = _run(problem, KMeansTPESampler(seed=seed, multivariate=multivariate))
    tpe = _run(problem, optuna.samplers.TPESampler(seed=seed, multivariate=multivariate))
    km_distinct = len({_config(t) for t in km.trials})
    tpe_distinct = len({_config(t) for t in tpe.trials})
    assert km_distinct >= 0.9 * tpe_distinct, (km_distinct, tpe_distinct)
    if PROBLEMS[problem][1] == 1:
        assert km.best_value <= tpe.best_value


def test_discrete_configs_are_never_repeated_until_the_space_is_exhausted() -> None:
    # 12 configs; the startup trials are random, then every proposal must be new.
    def objective(trial: optuna.Trial) -> float:
        a = trial.suggest_categorical("a", ["x", "y", "z"])
        b = trial.suggest_int("b", 0, 3)
        return 0.0 if a == "x" else 1.0 + 0 * b

    for multivariate in (True, False):
        sampler = KMeansTPESampler(seed=3, n_startup_trials=0, multivariate=multivariate)
        study = optuna.create_study(sampler=sampler)
        study.optimize(objective, n_trials=12)
        configs = [tuple(sorted(t.params.items())) for t in study.trials]
        assert len(set(configs)) == 12
        study.optimize(objective, n_trials=3)  # exhausted: repeats are allowed, no error
        assert len(study.trials) == 15


def test_running_configs_are_not_proposed_again_by_another_worker() -> None:
    # Four configs, three already taken (two complete, one running on another worker): the
    # next worker's trial must get the remaining one.
    sampler = KMeansTPESampler(seed=0, n_startup_trials=0)
    study = optuna.create_study(sampler=sampler)
    space = {
        "p": optuna.distributions.CategoricalDistribution([0, 1]),
        "q": optuna.distributions.CategoricalDistribution([0, 1]),
    }
    for p, q in ((0, 0), (0, 1)):
        study.add_trial(
            optuna.trial.create_trial(params={"p": p, "q": q}, distributions=space, value=p + q)
        )
    running = study.ask(space)
    taken = {(0, 0), (0, 1), (running.params["p"], running.params["q"])}
    following = study.ask(space)
    assert (following.params["p"], following.params["q"]) not in taken
    assert study.trials[running.number].state == TrialState.RUNNING


def test_parallel_workers_on_a_plateau_keep_configs_distinct() -> None:
    sampler = KMeansTPESampler(seed=0, constant_liar=True)
    study = optuna.create_study(sampler=sampler)
    study.optimize(plateau_ints, n_trials=60, n_jobs=2)
    assert len({_config(t) for t in study.trials}) >= 58  # two threads may race once


def test_exhausted_prefixes_are_excluded_in_independent_sampling() -> None:
    from optuna_kmtpe.sampler._dedupe import exhausted_keys

    space = {n: optuna.distributions.IntDistribution(0, 1) for n in ("a", "b", "c")}
    trials = [
        optuna.trial.create_trial(params=dict(zip("abc", v)), distributions=space, value=0.0)
        for v in itertools.product((0, 1), repeat=3)
        if v != (1, 1, 1)
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    # Prefix a=1: b=0 has both completions evaluated, b=1 misses (1, 1, 1).
    assert exhausted_keys(trials, {"b": space["b"]}, {"a": 1}, exclude_number=-1) == {(0.0,)}
    # Nothing fixed, whole config sampled: the seven evaluated configs.
    assert len(exhausted_keys(trials, space, {}, exclude_number=-1)) == 7
