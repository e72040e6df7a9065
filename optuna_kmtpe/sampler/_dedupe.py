"""Never re-propose an evaluated config while a discrete space still has unevaluated ones.

Pure functions over Optuna distributions and trials. A config is identified by a key per
parameter: the choice index of a categorical, the grid index of an int or stepped float, the
value itself for a continuous float (where repeats have probability zero anyway).

Which trials count as evaluated: COMPLETE, PRUNED, RUNNING and WAITING ones (a running trial
is being evaluated by another worker, a waiting one is enqueued), except the trial being
sampled. In multivariate sampling the whole config is excluded; in independent sampling (one
parameter at a time, the earlier ones fixed) a value is excluded once every completion of the
prefix it makes was evaluated, so a config is never repeated either.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState


Key = tuple[float, ...]

EVALUATED_STATES: tuple[TrialState, ...] = (
    TrialState.COMPLETE,
    TrialState.PRUNED,
    TrialState.RUNNING,
    TrialState.WAITING,
)


def is_discrete(distribution: BaseDistribution) -> bool:
    """Whether the distribution has finitely many values (categorical, int, stepped float)."""
    if isinstance(distribution, (CategoricalDistribution, IntDistribution)):
        return True
    return isinstance(distribution, FloatDistribution) and distribution.step is not None


def n_choices(distribution: BaseDistribution) -> float:
    """Number of values of a distribution (``inf`` for a continuous float)."""
    if isinstance(distribution, CategoricalDistribution):
        return float(len(distribution.choices))
    if isinstance(distribution, IntDistribution):  # (a log scale has step 1)
        return float((distribution.high - distribution.low) // distribution.step + 1)
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        return float(round((distribution.high - distribution.low) / distribution.step) + 1)
    return math.inf


def space_size(search_space: Mapping[str, BaseDistribution]) -> float:
    """Number of configs of a search space (``inf`` when any parameter is continuous)."""
    size = 1.0
    for distribution in search_space.values():
        size *= n_choices(distribution)
    return size


def internal_key(distribution: BaseDistribution, internal_value: float) -> float:
    """The identity of one internal-representation value (index of a grid point)."""
    if isinstance(distribution, CategoricalDistribution):
        return float(round(internal_value))
    if isinstance(distribution, (IntDistribution, FloatDistribution)):
        step = distribution.step
        if step is not None and not distribution.log:
            return float(round((internal_value - distribution.low) / step))
        if isinstance(distribution, IntDistribution):
            return float(round(internal_value))
    return float(internal_value)


def external_key(distribution: BaseDistribution, external_value: Any) -> float:
    """The identity of one parameter value as stored in a trial."""
    return internal_key(distribution, distribution.to_internal_repr(external_value))


def exhausted_keys(
    trials: Iterable[FrozenTrial],
    search_space: Mapping[str, BaseDistribution],
    fixed_params: Mapping[str, Any],
    exclude_number: int,
) -> set[Key]:
    """Keys (over ``search_space``, sorted by name) whose every completion was evaluated.

    A trial matches when it agrees with ``fixed_params`` and has every parameter of
    ``search_space``. Its value over ``search_space`` is exhausted when the distinct configs of
    the matching trials with that value cover all completions of the parameters they have
    beyond ``fixed_params`` and ``search_space``: one completion when there are none (the
    whole config is being sampled), the product of the remaining choices otherwise (independent
    sampling, where a prefix of the config is fixed and one parameter is sampled).
    """
    names = sorted(search_space)
    configs: dict[Key, set[tuple[Any, ...]]] = {}
    completions: dict[Key, float] = {}
    for trial in trials:
        if trial.number == exclude_number or trial.state not in EVALUATED_STATES:
            continue
        params = trial.params
        if any(n not in params for n in names):
            continue
        if any(params.get(name, _MISSING) != value for name, value in fixed_params.items()):
            continue
        try:
            key = tuple(external_key(search_space[n], params[n]) for n in names)
        except (ValueError, TypeError):
            continue  # a value outside this distribution: a different config
        rest = sorted(set(params) - set(names) - set(fixed_params))
        if key not in completions:
            completions[key] = space_size({n: trial.distributions[n] for n in rest})
        configs.setdefault(key, set()).add(tuple(params[n] for n in rest))
    return {key for key, seen in configs.items() if len(seen) >= completions[key]}


_MISSING = object()


def new_sample_mask(
    samples: Mapping[str, np.ndarray],
    search_space: Mapping[str, BaseDistribution],
    seen: set[Key],
) -> np.ndarray:
    """True for each sample (internal representation, one array per parameter) whose config
    is not in ``seen``."""
    columns = [
        [internal_key(search_space[n], float(v)) for v in np.asarray(samples[n])]
        for n in sorted(search_space)
    ]
    return np.array([key not in seen for key in zip(*columns)], dtype=bool)
