from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
import pickle
import pkgutil
import subprocess
import sys
from typing import Any

import numpy as np
import optuna
from optuna.samplers import TPESampler
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import TrialState
import pytest

from optuna_kmtpe import KMeansTPESampler
from optuna_kmtpe.sampler import SPLIT_ATTR_KEY
from optuna_kmtpe.sampler import _compat
from optuna_kmtpe.sampler import split_history


REPO_ROOT = Path(__file__).resolve().parents[2]


def _mixed_objective(trial: optuna.Trial) -> float:
    a = trial.suggest_float("a", -5, 5)
    b = trial.suggest_float("b", 1e-3, 10, log=True)
    c = trial.suggest_float("c", 0, 1, step=0.1)
    d = trial.suggest_int("d", 0, 10)
    e = trial.suggest_int("e", 1, 64, log=True)
    f = trial.suggest_int("f", 0, 10, step=2)
    g = trial.suggest_categorical("g", ["x", "y", "z"])
    return a**2 + math.log(b) ** 2 + c + d + math.log2(e) + f + (g == "z")


def _params(sampler: KMeansTPESampler, objective: Any = _mixed_objective, n: int = 15) -> list:
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n)
    return [t.params for t in study.trials]


# --- the private Optuna API canary ---------------------------------------------------------


@pytest.mark.parametrize(
    "dotted, expected",
    _compat.REQUIRED_PRIVATE_API,
    ids=[d for d, _ in _compat.REQUIRED_PRIVATE_API],
)
def test_canary_private_optuna_name(dotted: str, expected: tuple[str, ...]) -> None:
    obj = pkgutil.resolve_name(dotted)
    names = tuple(inspect.signature(obj).parameters)  # type: ignore[arg-type]
    assert names == expected, (
        f"Optuna changed the private name {dotted}: expected parameters {expected}, found {names}."
        " KMeansTPESampler relies on it; update optuna_kmtpe/sampler."
    )


def test_canary_tpe_attributes_and_full_check() -> None:
    tpe = TPESampler(seed=0)
    for attribute in _compat.REQUIRED_TPE_ATTRIBUTES:
        assert hasattr(tpe, attribute), (
            f"Optuna's TPESampler lost the private attribute {attribute}"
        )
    assert isinstance(tpe._rng, LazyRandomState), "TPESampler._rng is no longer a LazyRandomState"
    assert _compat.find_private_api_changes() == []


def test_changed_private_name_fails_loudly_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _compat.check_private_api.cache_clear()
    monkeypatch.delattr(TPESampler, "_compute_acquisition_func")
    try:
        with pytest.raises(RuntimeError, match="TPESampler._compute_acquisition_func is missing"):
            KMeansTPESampler()
    finally:
        monkeypatch.undo()
        _compat.check_private_api.cache_clear()
    KMeansTPESampler()


# --- construction ----------------------------------------------------------------------------


def test_options_pass_through_and_keyword_only() -> None:
    sampler = KMeansTPESampler(
        n_startup_trials=3,
        n_ei_candidates=7,
        seed=1,
        multivariate=True,
        group=True,
        constant_liar=False,
    )
    assert sampler._n_startup_trials == 3
    assert sampler._n_ei_candidates == 7
    assert sampler._multivariate is True and sampler._group is True
    assert sampler._constant_liar is False
    assert KMeansTPESampler()._constant_liar is True
    with pytest.raises(TypeError):
        KMeansTPESampler(3)  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_clusters": 0}, "n_clusters"),
        ({"n_clusters": 2.5}, "n_clusters"),
        ({"min_good_fraction": 0.0}, "min_good_fraction"),
        ({"min_good_fraction": 0.3, "max_good_fraction": 0.2}, "max_good_fraction"),
        ({"max_good_trials": 0}, "max_good_trials"),
        ({"window_factor": 0.5}, "window_factor"),
        ({"middle_weight": 1.5}, "middle_weight"),
        ({"n_startup_trials": -1}, "n_startup_trials"),
        ({"n_ei_candidates": 0}, "n_ei_candidates"),
        ({"multi_objective_tiebreak": "box"}, "multi_objective_tiebreak"),
    ],
)
def test_invalid_arguments_say_what_to_do(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KMeansTPESampler(**kwargs)


def test_the_tiebreak_is_a_name_or_an_injected_callable() -> None:
    from optuna_kmtpe.sampler._split import hssp_tiebreak
    from optuna_kmtpe.sampler._split import spread_tiebreak

    assert KMeansTPESampler()._mo_tiebreak is hssp_tiebreak
    assert KMeansTPESampler(multi_objective_tiebreak="spread")._mo_tiebreak is spread_tiebreak
    assert KMeansTPESampler(multi_objective_tiebreak=spread_tiebreak)._mo_tiebreak is (
        spread_tiebreak
    )
    with pytest.raises(TypeError, match="multi_objective_tiebreak"):
        KMeansTPESampler(multi_objective_tiebreak=3)  # type: ignore[arg-type]


# --- reproducibility and RNG -----------------------------------------------------------------


@pytest.mark.parametrize("objective", [_mixed_objective, lambda t: _mixed_objective(t) * 0.0])
def test_same_seed_same_sequence(objective: Any) -> None:
    first = _params(KMeansTPESampler(seed=7, n_startup_trials=5), objective)
    assert first == _params(KMeansTPESampler(seed=7, n_startup_trials=5), objective)
    assert first != _params(KMeansTPESampler(seed=8, n_startup_trials=5), objective)


_CHILD = """
import optuna, json
optuna.logging.set_verbosity(optuna.logging.WARNING)
from optuna_kmtpe import KMeansTPESampler
def f(t):
    return sum([t.suggest_float("a", -5, 5) ** 2, t.suggest_int("d", 0, 10),
                t.suggest_categorical("g", ["x", "y", "z"]) == "z"])
sampler = KMeansTPESampler(seed=3, n_startup_trials=4)
s = optuna.create_study(directions=["minimize"], sampler=sampler)
s.optimize(f, n_trials=15)
print(json.dumps([t.params for t in s.trials]))
"""


def test_reproducible_in_fresh_processes() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    outputs = [
        subprocess.run(
            [sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, check=True
        ).stdout
        for _ in range(2)
    ]
    assert outputs[0] == outputs[1] and outputs[0].startswith("[")


def test_pickle_keeps_rng_and_reseed_changes_it() -> None:
    sampler = KMeansTPESampler(seed=0)
    sampler._rng.rng.rand()  # advance so that the copied state is not the initial one
    restored = pickle.loads(pickle.dumps(sampler))
    assert restored._rng.rng.bytes(16) == sampler._rng.rng.bytes(16)
    before = sampler._rng.rng.get_state()[1].copy()
    sampler.reseed_rng()
    assert not np.array_equal(sampler._rng.rng.get_state()[1], before)
    # The pickled copy still samples.
    study = optuna.create_study(sampler=restored)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=12)


def test_reseed_changes_the_sequence() -> None:
    a = KMeansTPESampler(seed=5, n_startup_trials=3)
    b = KMeansTPESampler(seed=5, n_startup_trials=3)
    b.reseed_rng()
    assert _params(a) != _params(b)


# --- behaviour in studies --------------------------------------------------------------------


def test_default_good_share_is_tighter_for_several_objectives() -> None:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        return x, (1 - x) ** 2 + trial.suggest_float("y", 0, 1)

    mo = optuna.create_study(directions=["minimize"] * 2, sampler=KMeansTPESampler(seed=0))
    mo.optimize(objective, n_trials=60)
    assert all(h["n_below"] <= math.ceil(0.1 * h["number"]) for h in split_history(mo))
    so = optuna.create_study(sampler=KMeansTPESampler(seed=0, min_good_fraction=0.15))
    so.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=30)
    assert all(h["n_below"] >= math.ceil(0.15 * h["number"]) for h in split_history(so))


def test_diagnostics_and_split_history() -> None:
    study = optuna.create_study(
        direction="maximize", sampler=KMeansTPESampler(seed=0, n_startup_trials=10)
    )
    study.optimize(lambda t: -((t.suggest_float("x", -3, 3) - 1) ** 2), n_trials=40)
    history = split_history(study)
    assert [h["number"] for h in history] == list(range(10, 40))
    for h in history:
        assert h["k"] >= 1 and h["n_below"] >= 1
        assert h["n_below"] + h["n_above"] == h["number"]
        assert h["label"] in {"good", "middle", "bad"}
    last = history[-1]
    # Losses of a maximized study are negated values.
    assert last["threshold_good"] <= last["threshold_bad"]
    n_good = sum(h["label"] == "good" for h in history)
    assert 1 <= n_good < len(history)
    quiet = optuna.create_study(sampler=KMeansTPESampler(seed=0, diagnostics=False))
    quiet.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=15)
    assert split_history(quiet) == []
    assert all(SPLIT_ATTR_KEY not in t.user_attrs for t in quiet.trials)


def test_a_sampler_reused_for_another_study_splits_that_study() -> None:
    # Every in-memory study is study 0 with trials numbered from 0: the split cache once
    # handed study B's trial 10 study A's split (good trials near x = 0.95, not B's 0.05).
    def objective(target: float, bad: str) -> Any:
        def evaluate(trial: optuna.Trial) -> float:
            x = trial.suggest_float("x", 0, 1)
            return (x - target) ** 2 + (trial.suggest_categorical("c", ["p", "q"]) == bad)

        return evaluate

    sampler = KMeansTPESampler(seed=0, multivariate=False)
    optuna.create_study(sampler=sampler).optimize(objective(0.95, "q"), n_trials=11)
    fresh = pickle.loads(pickle.dumps(sampler))  # the same random state, nothing cached
    runs = []
    for each in (sampler, fresh):
        study = optuna.create_study(sampler=each)
        study.optimize(objective(0.05, "p"), n_trials=11)
        runs.append(study.trials)
    assert [t.params for t in runs[0]] == [t.params for t in runs[1]]
    assert SPLIT_ATTR_KEY in runs[0][-1].user_attrs


def test_multi_objective_with_constraints_pruned_and_inf() -> None:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 1)
        y = trial.suggest_float("y", 0, 1)
        trial.set_constraint("c", x + y - 1.5)
        if trial.number % 7 == 3:
            return math.inf, 0.0
        return x, (1 - x) ** 2 + y

    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=KMeansTPESampler(seed=0)
    )
    study.optimize(objective, n_trials=40)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    history = split_history(study)
    assert len(history) == 30 and all(h["n_below"] >= 1 for h in history)
    assert any(h["label"] == "infeasible" for h in history) or all(
        t.constraints["c"] <= 0 for t in study.trials[10:]
    )


def test_pruned_and_failed_trials_as_tpe() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1, 1)
        if trial.number % 3 == 0:
            trial.report(x, 1)
            raise optuna.TrialPruned()
        if trial.number % 5 == 0:
            raise ValueError("boom")
        return x**2

    study = optuna.create_study(sampler=KMeansTPESampler(seed=0, n_startup_trials=2))
    study.optimize(objective, n_trials=30, catch=(ValueError,))
    states = {t.state for t in study.trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}


def test_flat_objective_does_not_collapse() -> None:
    study = optuna.create_study(sampler=KMeansTPESampler(seed=0, n_startup_trials=5))
    study.optimize(lambda t: float(t.suggest_float("x", 0, 1) > 0.9), n_trials=40)
    xs = [t.params["x"] for t in study.trials]
    assert len(set(xs)) == 40
    assert split_history(study)[-1]["n_below"] >= 1


def test_constant_liar_puts_running_trials_in_bad_set() -> None:
    study = optuna.create_study(sampler=KMeansTPESampler(seed=0, n_startup_trials=5))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=10)
    running = study.ask()
    running.suggest_float("x", 0, 1)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    info = study._storage.get_trial(trial._trial_id).user_attrs[SPLIT_ATTR_KEY]
    assert info["n_running"] == 1
    assert info["n_below"] + info["n_above"] == 11


def test_import_leaves_torch_out_even_after_a_study() -> None:
    code = (
        "import sys, optuna\n"
        "optuna.logging.set_verbosity(optuna.logging.WARNING)\n"
        "import optuna_kmtpe\n"
        "from optuna_kmtpe import KMeansTPESampler\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        "s = optuna.create_study(sampler=KMeansTPESampler(seed=0))\n"
        "s.optimize(lambda t: t.suggest_float('x', 0, 1) ** 2, n_trials=50)\n"
        "from optuna_kmtpe.sampler import split_history; split_history(s)\n"
        "assert 'torch' not in sys.modules, 'study'\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
