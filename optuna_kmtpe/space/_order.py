"""The sensitivity partial order, monotone projection, exact counting and enumeration.

Layers are indexed 0..n-1. ``below[i]`` is the set of layers that layer ``i`` must never get
fewer bits than (the layers it is *significantly* more sensitive than). Bit choices are indices
into one ascending list of candidates shared by all layers, and each layer ``i`` may use indices
``0..caps[i]``. A config (tuple of indices) is *monotone* when ``f[i] >= f[j]`` for every
``j in below[i]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
import functools
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from optuna_kmtpe.sensitivity import SensitivityReport


def sensitivity_order(
    traces: Sequence[float], stderrs: Sequence[float], *, sigma: float
) -> tuple[frozenset[int], ...]:
    """``below[i]``: layers whose trace interval lies entirely below layer ``i``'s.

    Layer ``i`` is ordered above ``j`` only when ``T_i - sigma*SE_i > T_j + sigma*SE_j``: their
    ``+-sigma`` standard-error intervals are disjoint. That implies the difference exceeds
    ``sigma`` standard errors of the difference, so Hutchinson noise cannot order two layers
    whose traces are statistically indistinguishable. The relation is an interval order: a
    strict partial order (irreflexive, transitive), so ``below[i]`` is already closed.

    Example:
        >>> sensitivity_order([3.0, 1.0, 1.1], [0.1, 0.1, 0.1], sigma=2.0)
        (frozenset({1, 2}), frozenset(), frozenset())
    """
    if sigma < 0:
        raise ValueError(f"order_sigma must be >= 0, got {sigma}.")
    lows = [t - sigma * s for t, s in zip(traces, stderrs)]
    highs = [t + sigma * s for t, s in zip(traces, stderrs)]
    return tuple(
        frozenset(j for j in range(len(traces)) if j != i and lows[i] > highs[j])
        for i in range(len(traces))
    )


def trace_order(
    report: SensitivityReport, names: Sequence[str], *, sigma: float, activations: bool = False
) -> tuple[frozenset[int], ...]:
    """:func:`sensitivity_order` of the named layers' weight traces (or activation traces)."""
    stats = [report[name] for name in names]
    if activations:
        return sensitivity_order(
            [float(s.act_trace) for s in stats],  # type: ignore[arg-type]
            [float(s.act_trace_stderr or 0.0) for s in stats],
            sigma=sigma,
        )
    return sensitivity_order(
        [s.trace for s in stats], [s.trace_stderr for s in stats], sigma=sigma
    )


def above_sets(below: Sequence[frozenset[int]]) -> tuple[frozenset[int], ...]:
    """The converse relation: ``above[j]`` holds every ``i`` with ``j in below[i]``."""
    above: list[set[int]] = [set() for _ in below]
    for i, lower in enumerate(below):
        for j in lower:
            above[j].add(i)
    return tuple(frozenset(a) for a in above)


def is_monotone(levels: Sequence[int], below: Sequence[frozenset[int]]) -> bool:
    return all(levels[i] >= levels[j] for i, lower in enumerate(below) for j in lower)


def project_monotone(raw: Sequence[int], below: Sequence[frozenset[int]]) -> tuple[int, ...]:
    """Map any levels onto a monotone config; the identity on monotone configs.

    ``lift[i] = max(raw[j] for j in below[i] | {i})`` is the smallest monotone config above
    ``raw`` and ``drop[i] = min(raw[j] for j in above[i] | {i})`` the largest one below it; the
    result is their midpoint, rounded down, which is monotone because both are and keeps each
    layer between them. Every monotone config is its own image, so every monotone config is
    reachable and ``params_for`` can return a config's own levels.

    Example:
        >>> below = (frozenset(), frozenset({0}))  # layer 1 is more sensitive than layer 0
        >>> project_monotone([3, 1], below), project_monotone([1, 3], below)
        ((2, 2), (1, 3))
    """
    above = above_sets(below)
    result = []
    for i, value in enumerate(raw):
        lift = max([value, *(raw[j] for j in below[i])])
        drop = min([value, *(raw[j] for j in above[i])])
        result.append((lift + drop) // 2)
    return tuple(result)


def topological_order(below: Sequence[frozenset[int]]) -> list[int]:
    """Layers sorted so that every layer comes after all layers below it."""
    return sorted(range(len(below)), key=lambda i: (len(below[i]), i))


def _components(below: Sequence[frozenset[int]]) -> list[list[int]]:
    parent = list(range(len(below)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, lower in enumerate(below):
        for j in lower:
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(below)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def count_monotone(caps: Sequence[int], below: Sequence[frozenset[int]]) -> int:
    """Exact number of monotone configs with ``0 <= f[i] <= caps[i]``.

    The count is the product over connected components of the order. Within a component it
    sweeps the levels ``t = 0, 1, ...``: the layers at level ``<= t`` form a down-set of the
    order, growing with ``t``, and each layer must have joined by level ``caps[i]``; a memoized
    recursion over (level, down-set) counts these chains of down-sets. The work grows with the
    number of down-sets, which is small when sensitivities are well separated (a chain of ``n``
    layers has ``n + 1``) and a product of independent choices when they are not.

    Example:
        >>> count_monotone([2, 2], (frozenset(), frozenset({0})))  # pairs 0 <= a <= b <= 2
        6
    """
    if any(c < 0 for c in caps):
        raise ValueError(f"caps must be >= 0, got {list(caps)}.")
    total = 1
    for component in _components(below):
        if len(component) == 1:
            total *= caps[component[0]] + 1
        else:
            total *= _count_component(component, caps, below)
    return total


def _count_component(
    component: list[int], caps: Sequence[int], below: Sequence[frozenset[int]]
) -> int:
    local = {layer: k for k, layer in enumerate(component)}
    order = [local[i] for i in topological_order(below) if i in local]
    below_mask = [0] * len(component)
    for layer, k in local.items():
        for j in below[layer]:
            below_mask[k] |= 1 << local[j]
    cap = [caps[layer] for layer in component]
    top = max(cap)

    @functools.lru_cache(maxsize=None)
    def ways(level: int, joined: int) -> int:
        # Layers in `joined` have level < `level`; choose which join at `level`.
        if level == top:
            return 1  # everyone left takes the top level (all caps allow it: cap == top)
        total = 0
        for grown in _grown_down_sets(joined, level, order, below_mask, cap):
            total += ways(level + 1, grown)
        return total

    return ways(0, 0)


def _grown_down_sets(
    joined: int, level: int, order: list[int], below_mask: list[int], cap: list[int]
) -> Iterator[int]:
    """Down-sets containing ``joined`` and every layer whose cap is ``level``."""

    def extend(position: int, current: int) -> Iterator[int]:
        if position == len(order):
            yield current
            return
        k = order[position]
        bit = 1 << k
        if current & bit:
            yield from extend(position + 1, current)
            return
        if below_mask[k] & ~current == 0:
            yield from extend(position + 1, current | bit)
        if cap[k] > level:
            yield from extend(position + 1, current)

    return extend(0, joined)


def iter_monotone(
    caps: Sequence[int], below: Sequence[frozenset[int]]
) -> Iterator[tuple[int, ...]]:
    """Every monotone config with ``0 <= f[i] <= caps[i]`` (for exact search on small spaces)."""
    order = topological_order(below)
    levels = [0] * len(caps)

    def assign(position: int) -> Iterator[tuple[int, ...]]:
        if position == len(order):
            yield tuple(levels)
            return
        i = order[position]
        low = max((levels[j] for j in below[i]), default=0)
        for value in range(low, caps[i] + 1):
            levels[i] = value
            yield from assign(position + 1)

    return assign(0)
