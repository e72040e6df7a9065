"""Pure helpers of the known-objectives mode: candidate pools, losses, reference points.

In this mode the sampler draws many whole configs, computes the objectives that are known
before a trial exactly (a user function), forecasts the others with a calibrated predictor and
picks the candidate of largest expected hypervolume improvement (``_ehvi``). The candidate pool
mixes three sources, because each fails alone: l(x) of the k-means split (TPE's notion of a good
region), uniform draws over the space (exploration), and one-to-few-parameter mutations of the
good trials (local moves that an additive forecast ranks well).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import contextlib
import functools
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from threadpoolctl import ThreadpoolController


Samples = dict[str, np.ndarray]


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()  # inspects the loaded libraries once (about 2 ms)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one BLAS thread.

    The forecast and the expected improvement multiply small matrices (a few hundred rows),
    where a multi-threaded BLAS spends more time waking and spinning its threads than
    computing: with both cores busy (``n_jobs``, a second study) a known-objectives trial on
    100 finished trials took 91 ms of CPU instead of 32 (docs/sampler.md, "Digits, tenth
    round"; ``benchmarks/sampler_overhead.py`` pins one thread itself, so it does not show
    this).
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def uniform_samples(
    search_space: Mapping[str, BaseDistribution], rng: np.random.RandomState, size: int
) -> Samples:
    """Uniform samples of a space in Optuna's internal representation."""
    samples: Samples = {}
    for name, distribution in search_space.items():
        if isinstance(distribution, CategoricalDistribution):
            samples[name] = rng.randint(len(distribution.choices), size=size).astype(float)
            continue
        assert isinstance(distribution, (IntDistribution, FloatDistribution))
        low, high = float(distribution.low), float(distribution.high)
        if distribution.log:
            values = np.exp(rng.uniform(np.log(low), np.log(high), size=size))
            if isinstance(distribution, IntDistribution):
                values = np.clip(np.rint(values), low, high)
            samples[name] = values
        elif distribution.step is not None:
            count = int(round((high - low) / distribution.step)) + 1
            samples[name] = low + distribution.step * rng.randint(count, size=size)
        else:
            samples[name] = rng.uniform(low, high, size=size)
    return samples


def mutations(
    parents: Samples,
    search_space: Mapping[str, BaseDistribution],
    rng: np.random.RandomState,
    size: int,
) -> Samples:
    """Copies of random parents with each parameter redrawn uniformly with chance ``1/d``.

    At least one parameter of every copy is redrawn.
    """
    names = list(search_space)
    n_parents = len(next(iter(parents.values()))) if parents else 0
    if n_parents == 0 or size <= 0 or not names:
        return {name: np.zeros(0) for name in names}
    pick = rng.randint(n_parents, size=size)
    children = {name: np.asarray(parents[name], dtype=float)[pick].copy() for name in names}
    mask = rng.uniform(size=(size, len(names))) < 1.0 / len(names)
    mask[np.arange(size), rng.randint(len(names), size=size)] = True
    fresh = uniform_samples(search_space, rng, size)
    for j, name in enumerate(names):
        children[name] = np.where(mask[:, j], fresh[name], children[name])
    return children


def concatenate(parts: Sequence[Samples], search_space: Mapping[str, Any]) -> Samples:
    return {
        name: np.concatenate([np.asarray(p[name], float) for p in parts]) for name in search_space
    }


def to_internal(
    params: Sequence[Mapping[str, Any]], search_space: Mapping[str, BaseDistribution]
) -> Samples:
    return {
        name: np.array([dist.to_internal_repr(p[name]) for p in params], dtype=float)
        for name, dist in search_space.items()
    }


def to_external(samples: Samples, search_space: Mapping[str, BaseDistribution]) -> list[dict]:
    n = len(next(iter(samples.values()))) if samples else 0
    return [
        {
            name: dist.to_external_repr(float(samples[name][i]))
            for name, dist in search_space.items()
        }
        for i in range(n)
    ]


def default_reference(losses: np.ndarray) -> np.ndarray:
    """The worst observed loss of each objective plus 10% of its range."""
    losses = np.where(np.isfinite(losses), losses, np.nan)
    worst = np.nanmax(losses, axis=0)
    best = np.nanmin(losses, axis=0)
    span = worst - best
    span = np.where(span > 0, span, np.maximum(np.abs(worst) * 0.1, 1e-3))
    return np.nan_to_num(worst + 0.1 * span, nan=1.0)


def known_table(
    function: Callable[[dict[str, Any]], Sequence[float | None]],
    params: Sequence[Mapping[str, Any]],
    n_objectives: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Call ``known_objectives`` on each config and check what it returns.

    Returns:
        ``(mask, values)``: which objectives are known (``None`` or NaN: unknown; the same for
        every config) and the ``(len(params), n_known)`` known values.

    Raises:
        ValueError: a result is not one value per objective, a value is not a number, or an
            objective is known for some configs and not for others (the forecast would then
            cover it on some trials only): each message names the config.
    """
    rows = []
    for config in params:
        result = function(dict(config))
        if isinstance(result, (str, bytes, Mapping)) or not isinstance(
            result, (Sequence, np.ndarray)
        ):
            raise ValueError(
                "known_objectives must return a list with one value per objective (None for "
                f"those not known before the trial); got {type(result).__name__} "
                f"{result!r} for {dict(config)}."
            )
        values = list(result)
        if len(values) != n_objectives:
            raise ValueError(
                f"known_objectives returned {len(values)} values for a study with {n_objectives} "
                "objectives; return one per objective, None for those not known before the trial."
            )
        try:
            rows.append([np.nan if v is None else float(v) for v in values])
        except (TypeError, ValueError):
            raise ValueError(
                "known_objectives must return numbers (or None for an unknown objective); got "
                f"{values!r} for {dict(config)}."
            ) from None
    table = np.array(rows, dtype=float).reshape(len(rows), n_objectives)
    unknown = np.isnan(table)
    if len(table) == 0:
        return np.zeros(n_objectives, dtype=bool), table
    differs = np.flatnonzero(np.any(unknown != unknown[0], axis=1))
    if len(differs):
        row = int(differs[0])
        changed = int(np.flatnonzero(unknown[row] != unknown[0])[0])
        raise ValueError(
            f"known_objectives returned a number for objective {changed} for some configs and "
            f"None or NaN for others (e.g. {dict(params[row])}); return a number for every "
            "config, or None for every config if it is not known before the trial."
        )
    mask = ~unknown[0]
    return mask, table[:, mask]
