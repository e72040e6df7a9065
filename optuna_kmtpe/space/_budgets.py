"""Budgets: the choices that can fit, how many configs do, and the nearest config that does.

Pure functions over *levels*: a config of the space as three rows of indices (weight bits,
activation bits, width), each into its operand's ascending choices. Costs come in as callables,
so one rule serves the weight-size budget and any cost that never falls when a layer gets more
bits or more width (every cost of the FPGA model).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from optuna_kmtpe import geometry
from optuna_kmtpe.space._order import above_sets
from optuna_kmtpe.space._order import is_monotone


Levels = Sequence[Sequence[int]]  # weight, activation and width levels of every layer
Caps = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
Order = Sequence[frozenset[int]]
Config = TypeVar("Config")


def kept_weights(
    layout: geometry.ChannelLayout, n_params: Sequence[int], widths: Sequence[float]
) -> list[float]:
    """Weights left in each layer at ``widths``: ``n_params`` x the fractions of its output
    channels and of its producer's (:meth:`~optuna_kmtpe.geometry.ChannelLayout.pruned`)."""
    pruned = layout.pruned(list(widths))
    ratios = (pruned.out_channels[0] / layout.out_channels) * (
        pruned.in_channels[0] / layout.in_channels
    )
    return [n * ratio for n, ratio in zip(n_params, ratios.tolist())]


def size_caps(
    weights: Sequence[float], weight_bits: Sequence[int], below: Order, budget: float
) -> tuple[int, ...]:
    """The largest weight level of each layer that some monotone config within ``budget``
    bits uses: that layer and every layer above it in ``below`` at the level, the rest at the
    smallest choice, every layer at the ``weights`` it keeps at its smallest width.

    Raises:
        ValueError: If even the smallest config exceeds the budget.
    """
    bits = [geometry.float32_bits(b) for b in weight_bits]
    floor = bits[0] * sum(weights)
    if floor > budget:
        raise ValueError(
            f"size_budget_bits={budget:g} is below the smallest model this space can build "
            f"({floor:g} bits, every layer at {weight_bits[0]} bits and minimal width); raise "
            "the budget or add smaller weight_bits."
        )
    above = above_sets(below)
    caps = []
    for i in range(len(weights)):
        forced = above[i] | {i}
        cap = 0
        for level, level_bits in enumerate(bits):
            size = sum(
                (level_bits if j in forced else bits[0]) * kept for j, kept in enumerate(weights)
            )
            if size <= budget:
                cap = level
        caps.append(cap)
    return tuple(caps)


def budget_caps(
    caps: Caps,
    orders: Sequence[Order],
    excess: Callable[[Levels], Mapping[str, float]],
    budgets: Mapping[str, float],
) -> Caps:
    """Each layer's weight, activation and width caps (below ``caps``) under the budgets
    ``excess`` (levels -> the costs over ``budgets``, empty when they fit) checks.

    A level stays when the cheapest config using it fits: that layer (and, for bits, every
    layer its operand's order in ``orders`` forces up with it) at the level, everything else
    at its smallest choice. With costs that never fall as bits or widths grow, a level pruned
    here is in no config that fits.

    Raises:
        ValueError: If even the cheapest config exceeds a budget.
    """
    n = len(caps[0])
    zeros = [0] * n
    floor = excess((zeros, zeros, zeros))
    if floor:
        over = ", ".join(f"{m}={value:g} > {budgets[m]:g}" for m, value in floor.items())
        raise ValueError(
            f"The budgets are below the cheapest config this space can build ({over}, every "
            "layer at its smallest bits and width); raise them or add smaller choices."
        )
    result = []
    for kind, (kind_caps, order) in enumerate(zip(caps, orders)):
        forced = above_sets(order)
        pruned = []
        for i in range(n):
            cap = 0
            for level in range(1, kind_caps[i] + 1):
                levels = [zeros, zeros, zeros]
                levels[kind] = [level if j in forced[i] or j == i else 0 for j in range(n)]
                if not excess(levels):
                    cap = level
            pruned.append(cap)
        result.append(tuple(pruned))
    return result[0], result[1], result[2]


def estimate_fitting(
    caps: Caps,
    orders: Sequence[Order],
    excess: Callable[[Levels], Mapping[str, float]],
    total: int,
    *,
    samples: int = 2000,
    seed: int = 0,
) -> int:
    """How many of the ``total`` configs within ``caps`` fit, from uniform samples.

    Per-choice pruning is exact for single choices but not for their combinations; the joint
    count is the fraction of ``samples`` uniform draws of the levels that respect the weight
    and activation ``orders`` and have no ``excess`` (deterministic: a fixed ``seed``).
    """
    rng = np.random.default_rng(seed)
    inside = fitting = 0
    for _ in range(samples):
        levels = [[int(rng.integers(0, cap + 1)) for cap in kind_caps] for kind_caps in caps]
        if not (is_monotone(levels[0], orders[0]) and is_monotone(levels[1], orders[1])):
            continue
        inside += 1
        fitting += not excess(levels)
    return round(total * fitting / inside) if inside else total


def nearest_feasible(
    levels: Levels,
    caps: Caps,
    *,
    build: Callable[[Levels], Config],
    excess: Callable[[Config], float],
    sensitivity: Sequence[float],
    paired_act_level: Callable[[int], int] | None,
) -> Config | None:
    """:meth:`~optuna_kmtpe.space.MonotoneSearchSpace.nearest_feasible` over levels: ``build``
    makes a config, ``excess`` is how far it is over the budgets (0: fits), and a weight step
    lowers the activation level to ``paired_act_level`` of the new weight level (if given)."""
    levels = [
        [min(v, cap) for v, cap in zip(row, kind_caps)] for row, kind_caps in zip(levels, caps)
    ]
    current = build(levels)
    remaining = excess(current)
    while remaining > 0:
        best: tuple[tuple[float, bool, float], list[list[int]], Config] | None = None
        for i, layer_sensitivity in enumerate(sensitivity):
            for kind in range(3):
                if levels[kind][i] == 0:
                    continue
                state = [list(row) for row in levels]
                state[kind][i] -= 1
                if kind == 0 and paired_act_level is not None:
                    state[1][i] = min(state[1][i], paired_act_level(state[0][i]))
                candidate = build(state)
                if candidate == current:
                    continue
                key = (excess(candidate), kind == 2, layer_sensitivity)
                if best is None or key < best[0]:
                    best = (key, state, candidate)
        if best is None:
            return None
        (remaining, _, _), levels, current = best
    return current
