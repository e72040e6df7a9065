from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.samplers._tpe.sampler import _split_trials as tpe_split_trials
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
from optuna.trial import create_trial
import pytest

from optuna_kmtpe.sampler._split import good_set_bounds
from optuna_kmtpe.sampler._split import kmeans_cut
from optuna_kmtpe.sampler._split import split_trials


MIN = StudyDirection.MINIMIZE
MAX = StudyDirection.MAXIMIZE
DIST = {"x": FloatDistribution(0, 1)}


def _trials(
    values: list[Any], states: list[TrialState] | None = None, **kw: Any
) -> list[FrozenTrial]:
    states = states or [TrialState.COMPLETE] * len(values)
    out = []
    for number, (v, s) in enumerate(zip(values, states)):
        kwargs: dict[str, Any] = {"state": s, "params": {"x": 0.5}, "distributions": DIST}
        if s == TrialState.COMPLETE:
            kwargs["values" if isinstance(v, (list, tuple)) else "value"] = v
        if "constraints" in kw:
            kwargs["constraints"] = kw["constraints"][number]
        if "intermediate" in kw:
            kwargs["intermediate_values"] = kw["intermediate"][number]
        t = create_trial(**kwargs)
        t.number = number
        out.append(t)
    return out


def _split(trials: list[FrozenTrial], directions: list[StudyDirection], **kw: Any):  # type: ignore[no-untyped-def]
    params: dict[str, Any] = dict(
        n_clusters=3,
        min_good_fraction=0.05,
        max_good_fraction=0.2,
        max_good_trials=25,
        window_factor=2.0,
        middle_weight=1.0,
        nondomination_rank=lambda losses, n: _fast_non_domination_rank(losses, n_below=n),
    )
    params.update(kw)
    return split_trials(trials, directions, **params)


def _numbers(trials: list[FrozenTrial]) -> list[int]:
    return [t.number for t in trials]


def test_empty_and_single() -> None:
    empty = _split([], [MIN])
    assert empty.below == [] and empty.above == [] and empty.info["n_below"] == 0
    single = _split(_trials([3.0]), [MIN])
    assert _numbers(single.below) == [0] and single.above == []


@pytest.mark.parametrize("direction", [MIN, MAX])
def test_direction_and_sorted_lists(direction: StudyDirection) -> None:
    rng = np.random.default_rng(0)
    values = rng.permutation(40).astype(float).tolist()
    result = _split(_trials(values), [direction])
    below_values = [values[n] for n in _numbers(result.below)]
    above_values = [values[n] for n in _numbers(result.above)]
    if direction == MIN:
        assert max(below_values) < min(above_values)
    else:
        assert min(below_values) > max(above_values)
    assert _numbers(result.below) == sorted(_numbers(result.below))
    assert _numbers(result.above) == sorted(_numbers(result.above))
    assert 2 <= len(result.below) <= 8  # bounds 5% .. 20% of 40
    assert len(result.below) + len(result.above) == 40


def test_running_trials_only_in_above() -> None:
    states = [TrialState.COMPLETE] * 5 + [TrialState.RUNNING] * 3
    result = _split(_trials([1.0, 2.0, 3.0, 4.0, 5.0, None, None, None], states), [MIN])
    assert set(_numbers(result.above)) >= {5, 6, 7}
    assert not set(_numbers(result.below)) & {5, 6, 7}
    assert result.info["n_running"] == 3
    # Running trials do not count toward n: 5 finished trials -> exactly one good trial.
    assert _numbers(result.below) == [0]


def test_failed_and_waiting_trials_are_ignored() -> None:
    states = [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING, TrialState.COMPLETE]
    result = _split(_trials([1.0, None, None, 2.0], states), [MIN])
    assert sorted(_numbers(result.below) + _numbers(result.above)) == [0, 3]


def test_infeasible_ranked_last() -> None:
    values = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    constraints = [{"c": 1.0}] + [{"c": -1.0}] * 9  # the best value is infeasible
    result = _split(_trials(values, constraints=constraints), [MIN])
    assert 0 not in _numbers(result.below) and 0 in _numbers(result.above)
    only_infeasible = _trials([1.0, 2.0, 3.0], constraints=[{"c": 3.0}, {"c": 0.5}, {"c": 2.0}])
    result = _split(only_infeasible, [MIN])
    assert _numbers(result.below) == [1]


def test_pruned_ranked_by_last_step_after_complete() -> None:
    states = [TrialState.PRUNED] * 3 + [TrialState.COMPLETE]
    intermediate = [{1: 0.5}, {3: 9.0}, {3: 1.0}, {}]
    trials = _trials([None, None, None, 7.0], states, intermediate=intermediate)
    result = _split(trials, [MIN], min_good_fraction=0.5, max_good_fraction=0.5)
    # Complete first, then the deepest pruned trial with the better value.
    assert _numbers(result.below) == [2, 3]


def test_ties_straddling_the_cut_stay_together() -> None:
    # 15 trials tied at the best value 0 fit the bounds (n_max = 20): a 10% quantile split
    # would cut the group, the k-means split keeps it whole.
    values = [0.0] * 15 + list(np.linspace(1, 10, 85))
    result = _split(_trials(values), [MIN])
    assert _numbers(result.below) == list(range(15))
    tpe_below, _ = tpe_split_trials(_study([MIN]), _trials(values), 10)
    assert len(tpe_below) == 10  # TPE cuts the tie group
    # A tie group straddling the upper bound is excluded instead of cut.
    values = [-1.0] * 6 + [0.0] * 30 + list(np.linspace(1, 10, 64))
    result = _split(_trials(values), [MIN])
    assert _numbers(result.below) == list(range(6))


def test_a_best_plateau_larger_than_the_bound_is_cut_like_tpe() -> None:
    # 30 trials tied at the best value: keeping all of them good would leave g(x) almost empty
    # (the sampler then re-proposes l(x)'s mode); the earliest n_max are good, as in TPE.
    values = [0.0] * 30 + list(np.linspace(1, 10, 70))
    result = _split(_trials(values), [MIN])
    assert _numbers(result.below) == list(range(20))
    assert set(range(20, 30)) <= set(_numbers(result.above))


def test_all_equal_values_keep_a_bad_set() -> None:
    result = _split(_trials([2.0] * 20), [MIN])
    assert _numbers(result.below) == [0, 1, 2, 3]
    assert len(result.above) == 16


def test_infinities() -> None:
    values = [math.inf, 1.0, 2.0, -math.inf, 3.0, 4.0, math.inf, 5.0, 6.0, 7.0, 8.0, 9.0]
    result = _split(_trials(values), [MIN], min_good_fraction=0.1, max_good_fraction=0.2)
    assert 3 in _numbers(result.below)
    assert {0, 6}.isdisjoint(_numbers(result.below))
    only_inf = _split(_trials([math.inf] * 5 + [-math.inf]), [MIN])
    assert _numbers(only_inf.below) == [5]
    json_ready = _split(_trials([math.inf] * 3), [MIN]).info
    assert json_ready["threshold_good"] is None


def test_heavy_outliers_do_not_collapse_the_good_set() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, 100).tolist()
    values[5] = 1e12
    values[50] = 1e15
    result = _split(_trials(values), [MIN])
    n_min, n_max = good_set_bounds(100, 0.05, 0.2, 25)
    assert n_min <= len(result.below) <= n_max
    assert {5, 50}.isdisjoint(_numbers(result.below))


def test_differs_from_tpe_quantile_on_gapped_values() -> None:
    # 15 trials near 0, then a wide gap: k-means takes exactly the 15; TPE's quantile takes 10.
    rng = np.random.default_rng(1)
    values = np.concatenate((rng.uniform(0, 0.1, 15), rng.uniform(10, 20, 85)))
    values = values[rng.permutation(100)].tolist()
    result = _split(_trials(values), [MIN])
    near_zero = sorted(i for i, v in enumerate(values) if v < 1)
    assert _numbers(result.below) == near_zero
    tpe_below, _ = tpe_split_trials(_study([MIN]), _trials(values), 10)
    assert len(tpe_below) == 10 and _numbers(tpe_below) != near_zero


def test_k_schedule_is_called_with_finished_count() -> None:
    seen: list[int] = []

    def schedule(n: int) -> int:
        seen.append(n)
        return 1 if n < 10 else 4

    states = [TrialState.COMPLETE] * 12 + [TrialState.RUNNING]
    values = list(np.arange(12.0) ** 2) + [None]
    result = _split(_trials(values, states), [MIN], n_clusters=schedule)
    assert seen == [12] and result.info["k"] == 4
    result = _split(_trials(list(np.arange(5.0))), [MIN], n_clusters=schedule)
    assert result.info["k"] == 1
    with pytest.raises(ValueError, match="n_clusters"):
        _split(_trials([1.0, 2.0]), [MIN], n_clusters=lambda n: 0)


def test_middle_band_and_weights() -> None:
    values = [0.0, 0.1, 0.2, 5.0, 5.1, 5.2, 5.3, 50.0, 51.0, 52.0] + [100.0] * 10
    result = _split(_trials(values), [MIN], middle_weight=0.25, min_good_fraction=0.1)
    assert _numbers(result.below) == [0, 1, 2]
    middle = {3, 4, 5, 6}
    factors = dict(zip(_numbers(result.above), result.above_weight_factors))
    assert all(factors[n] == 0.25 for n in middle)
    assert all(f == 1.0 for n, f in factors.items() if n not in middle)
    assert result.info["threshold_good"] == 0.2 and result.info["threshold_bad"] == 5.3


def test_kmeans_cut_bounds() -> None:
    y = np.arange(100.0)
    cut = kmeans_cut(y, 5, 20, 3)
    assert 5 <= cut.n_below <= 20 and cut.n_below <= cut.n_middle_end <= 100
    assert kmeans_cut(np.zeros(0), 1, 1, 3).n_below == 0


@pytest.mark.parametrize("directions", [[MIN, MIN], [MIN, MAX], [MAX, MAX, MIN]])
def test_multi_objective_prefers_front_and_thins_it(directions: list[StudyDirection]) -> None:
    rng = np.random.default_rng(0)
    signs = np.array([1 if d == MIN else -1 for d in directions])
    points = rng.uniform(0, 1, (60, len(directions)))
    trials = _trials([list(p * signs) for p in points])
    result = _split(trials, directions)
    ranks = _fast_non_domination_rank(points)
    below = _numbers(result.below)
    n_min, n_max = good_set_bounds(60, 0.05, 0.2, None)
    assert n_min <= len(below) <= n_max
    worst_below = max(ranks[below])
    assert all(ranks[n] >= worst_below for n in _numbers(result.above) if n < 60)
    # Deterministic.
    assert _numbers(_split(trials, directions).below) == below


def test_multi_objective_constant_liar_and_constraints() -> None:
    states = [TrialState.COMPLETE] * 10 + [TrialState.RUNNING] * 2
    values = [[float(i), float(10 - i)] for i in range(10)] + [None, None]
    constraints = [{"c": 1.0}] * 2 + [{"c": 0.0}] * 10
    result = _split(_trials(values, states, constraints=constraints), [MIN, MIN])
    assert {10, 11} <= set(_numbers(result.above))
    assert {0, 1}.isdisjoint(_numbers(result.below))


def _study(directions: list[StudyDirection]) -> optuna.Study:
    return optuna.create_study(directions=directions)


def test_spread_tiebreak_picks_both_extremes_then_the_middle() -> None:
    from optuna_kmtpe.sampler._split import spread_tiebreak

    a = np.linspace(0, 1, 11)
    front = np.stack([a, 1 - a], axis=1)
    picked = spread_tiebreak(front, np.arange(11), 3)
    assert sorted(picked.tolist()) == [0, 5, 10]


def test_an_injected_tiebreak_chooses_the_members_of_the_cut_rank() -> None:
    # One rank of 20 mutually non-dominated trials, good set bounded to 2: the tie-break picks.
    values = [[float(i), float(19 - i)] for i in range(20)]
    calls: list[tuple[int, int]] = []

    def last_members(losses: np.ndarray, members: np.ndarray, n_select: int) -> np.ndarray:
        calls.append((members.size, n_select))
        return np.arange(members.size)[::-1][:n_select]

    result = _split(
        _trials(values), [MIN, MIN], min_good_fraction=0.1, max_good_fraction=0.1,
        mo_tiebreak=last_members,
    )  # fmt: skip
    assert calls == [(20, 2)]
    assert _numbers(result.below) == [18, 19]
