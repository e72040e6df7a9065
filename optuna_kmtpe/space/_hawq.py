"""HAWQ-V2 automatic bit selection: minimize Omega = sum_i Tr_i/n_i * ||Q(W_i) - W_i||^2.

:func:`hawq_v2_frontier` and :func:`hawq_v2_select` read the report into per-layer tables
``sizes[i][b]`` (bits of layer ``i`` at choice ``b``) and ``omegas[i][b]`` (its Omega term); the
algorithms below them are pure functions over those tables, optionally under the monotone
order ``below`` and caps.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import functools
import os
import sys
from typing import TYPE_CHECKING
from typing import NamedTuple

import numpy as np

from optuna_kmtpe import geometry
from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.config import check_bit_choices
from optuna_kmtpe.sampler import pareto_mask
from optuna_kmtpe.space._order import count_monotone
from optuna_kmtpe.space._order import iter_monotone
from optuna_kmtpe.space._order import trace_order


if TYPE_CHECKING:
    from optuna_kmtpe.sensitivity import SensitivityReport


# Beyond this many monotone configs, exact enumeration gives way to the integer program.
MAX_ENUMERATE = 200_000


class LevelPoint(NamedTuple):
    size: float
    omega: float
    levels: tuple[int, ...]


class FrontierPoint(NamedTuple):
    """One point of a HAWQ-V2 frontier: model size in bits, Omega, and the config."""

    size_bits: float
    omega: float
    config: QuantConfig


def hawq_v2_frontier(
    report: SensitivityReport,
    *,
    weight_bits: Sequence[int] = (2, 3, 4, 6, 8),
    order_sigma: float | None = None,
    act_bits: int = 8,
    layers: Sequence[str] | None = None,
    method: str = "auto",
    omega: str = "trace",
) -> list[FrontierPoint]:
    """Pareto frontier of Omega against model size (HAWQ-V2), ordered by size.

    ``Omega(config) = sum_i Tr(H_i)/n_i * ||Q_{b_i}(W_i) - W_i||^2`` and size
    ``= sum_i b_i * n_i`` (weights only). Without ``order_sigma`` (HAWQ-V2 proper) layers choose
    independently and the frontier comes from an exact dynamic program merging per-layer
    choices with dominance pruning. With ``order_sigma`` the configs must also respect the
    sensitivity order of :class:`~optuna_kmtpe.space.MonotoneSearchSpace`; the frontier is then
    exact by enumeration for small spaces, else by a sweep of integer programs
    (``scipy.optimize.milp``, HiGHS, gap 0), one per frontier point. ``omega="quadratic"``
    replaces each layer's ``trace * ||dW||^2`` by the exact ``0.5 * dW^T H dW`` stored in the
    report.

    Example:
        >>> from optuna_kmtpe.sensitivity import LayerSensitivity, SensitivityReport
        >>> def layer(name, trace):
        ...     return LayerSensitivity(name, "Linear", 100, 10, 10, trace, 0.0, 64,
        ...                             {b: 1.0 / 4**b for b in (2, 4, 8)})
        >>> report = SensitivityReport(layers=(layer("a", 1.0), layer("b", 0.1)))
        >>> [p.size_bits for p in hawq_v2_frontier(report, weight_bits=(2, 4, 8))]
        [400.0, 600.0, 800.0, 1200.0, 1600.0]
    """
    names = list(report.names if layers is None else layers)
    below = None if order_sigma is None else trace_order(report, names, sigma=order_sigma)
    return frontier(report, names, weight_bits, None, below, act_bits, method, omega)


def hawq_v2_select(
    report: SensitivityReport,
    size_budget_bits: float,
    *,
    weight_bits: Sequence[int] = (2, 3, 4, 6, 8),
    order_sigma: float | None = None,
    act_bits: int = 8,
    layers: Sequence[str] | None = None,
    method: str = "auto",
    omega: str = "trace",
) -> QuantConfig:
    """The config of minimal Omega whose weights fit ``size_budget_bits`` (HAWQ-V2 selection).

    Ties in Omega go to the smaller model. See :func:`hawq_v2_frontier` for the method.

    Raises:
        ValueError: If even the smallest config exceeds the budget.
    """
    names = list(report.names if layers is None else layers)
    bits, sizes, omegas = tables(report, names, weight_bits, omega)
    below = None if order_sigma is None else trace_order(report, names, sigma=order_sigma)
    caps = [len(bits) - 1] * len(names)
    point = select(sizes, omegas, caps, below, size_budget_bits, method=method)
    if point is None:
        smallest = sum(row[0] for row in sizes)
        raise ValueError(
            f"size_budget_bits={size_budget_bits:g} is below the smallest config "
            f"({smallest:g} bits at {bits[0]} bits everywhere); raise the budget."
        )
    return _config(names, bits, point.levels, act_bits)


def frontier(
    report: SensitivityReport,
    names: Sequence[str],
    weight_bits: Sequence[int],
    caps: Sequence[int] | None,
    below: Sequence[frozenset[int]] | None,
    act_bits: int,
    method: str,
    omega: str,
) -> list[FrontierPoint]:
    """The frontier of the named layers within ``caps`` (default: every choice), independent
    when ``below`` is None, else monotone; every config has activations at ``act_bits``."""
    bits, sizes, omegas = tables(report, names, weight_bits, omega)
    caps = [len(bits) - 1] * len(names) if caps is None else caps
    if below is None:
        points = pareto_independent(sizes, omegas, caps)
    else:
        points = pareto_monotone(sizes, omegas, caps, below, method=method)
    return [
        FrontierPoint(p.size, p.omega, _config(names, bits, p.levels, act_bits)) for p in points
    ]


def tables(
    report: SensitivityReport, names: Sequence[str], weight_bits: Sequence[int], omega: str
) -> tuple[tuple[int, ...], list[list[float]], list[list[float]]]:
    """The ascending weight choices and each layer's size (bits, float as 32) and Omega at
    each choice."""
    bits = check_bit_choices(weight_bits, field="weight_bits")
    sizes = [[geometry.budget_size_bits(report[n].n_params, b) for b in bits] for n in names]
    omegas = [[report[n].omega(b, kind=omega) for b in bits] for n in names]
    return bits, sizes, omegas


def _config(
    names: Sequence[str], bits: Sequence[int], levels: Sequence[int], act_bits: int
) -> QuantConfig:
    return QuantConfig(
        {
            name: LayerConfig(weight_bits=bits[level], act_bits=act_bits, width=1.0)
            for name, level in zip(names, levels)
        }
    )


def pareto_independent(
    sizes: Sequence[Sequence[float]], omegas: Sequence[Sequence[float]], caps: Sequence[int]
) -> list[LevelPoint]:
    """Exact Pareto frontier (min size, min Omega) when layers choose independently.

    Costs are additive, so a partial assignment dominated on the first ``k`` layers can never
    complete to a non-dominated config: merging layer by layer and dropping dominated partial
    points is exact (the grouped dynamic program of HAWQ-V2's appendix, without grouping).
    """
    frontier = [LevelPoint(0.0, 0.0, ())]
    for size_row, omega_row, cap in zip(sizes, omegas, caps):
        merged = [
            LevelPoint(p.size + size_row[b], p.omega + omega_row[b], p.levels + (b,))
            for p in frontier
            for b in range(cap + 1)
        ]
        frontier = _non_dominated(merged)
    return frontier


def _non_dominated(points: list[LevelPoint]) -> list[LevelPoint]:
    """The Pareto points of (size, Omega) by size, each cost pair once (its smallest levels)."""
    points.sort(key=lambda p: (p.size, p.omega, p.levels))
    costs = np.array([(p.size, p.omega) for p in points], dtype=float).reshape(-1, 2)
    first = np.ones(len(points), dtype=bool)
    first[1:] = np.any(costs[1:] != costs[:-1], axis=1)
    return [p for p, keep in zip(points, pareto_mask(costs) & first) if keep]


def pareto_monotone(
    sizes: Sequence[Sequence[float]],
    omegas: Sequence[Sequence[float]],
    caps: Sequence[int],
    below: Sequence[frozenset[int]],
    *,
    method: str = "auto",
    max_points: int = 1000,
) -> list[LevelPoint]:
    """Exact Pareto frontier over monotone configs (enumeration or a sweep of integer programs)."""
    if method == "auto":
        method = "enumerate" if count_monotone(caps, below) <= MAX_ENUMERATE else "milp"
    if method == "enumerate":
        return _non_dominated([_point(sizes, omegas, v) for v in iter_monotone(caps, below)])
    if method != "milp":
        raise ValueError(f"method must be 'auto', 'enumerate' or 'milp', got {method!r}.")
    frontier: list[LevelPoint] = []
    budget = float("inf")
    while len(frontier) < max_points:
        point = select_milp(sizes, omegas, caps, below, budget)
        if point is None:
            break
        frontier.append(point)
        budget = point.size - 0.5
    frontier.reverse()
    return frontier


def select(
    sizes: Sequence[Sequence[float]],
    omegas: Sequence[Sequence[float]],
    caps: Sequence[int],
    below: Sequence[frozenset[int]] | None,
    budget: float,
    *,
    method: str = "auto",
) -> LevelPoint | None:
    """The config of minimal Omega (then minimal size) with size <= budget, or ``None``."""
    if below is None or not any(below):
        points = pareto_independent(sizes, omegas, caps)
    elif method == "enumerate" or (
        method == "auto" and count_monotone(caps, below) <= MAX_ENUMERATE
    ):
        points = pareto_monotone(sizes, omegas, caps, below, method="enumerate")
    else:
        return select_milp(sizes, omegas, caps, below, budget)
    candidates = [p for p in points if p.size <= budget]
    return min(candidates, key=lambda p: (p.omega, p.size)) if candidates else None


@contextlib.contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 1 to the null device for the block.

    HiGHS, the solver behind ``scipy.optimize.milp``, prints debugging lines such as
    ``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();`` straight from
    C++ to the process's standard output, whatever ``disp`` says (scipy 1.17 here; HiGHS.jl
    issues 312 and 318 report the same line): ``kmtpe search --data mnist1d`` showed 13 of them
    in its output. Python's own ``sys.stdout`` is flushed first, so nothing printed before the
    block is lost. Where descriptor 1 cannot be duplicated (closed), the block runs as is.
    """
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def select_milp(
    sizes: Sequence[Sequence[float]],
    omegas: Sequence[Sequence[float]],
    caps: Sequence[int],
    below: Sequence[frozenset[int]],
    budget: float,
) -> LevelPoint | None:
    """Minimal Omega, then minimal size, under budget and order (``scipy.optimize.milp``).

    One binary ``x[i, b]`` per layer and choice; each layer picks one choice; a monotone pair
    ``j in below[i]`` needs ``sum_b b x[i, b] >= sum_b b x[j, b]``.
    """
    from scipy.optimize import Bounds
    from scipy.optimize import LinearConstraint
    from scipy.optimize import milp

    n_layers = len(sizes)
    columns = [(i, b) for i in range(n_layers) for b in range(len(sizes[i]))]
    size_vec = np.array([sizes[i][b] for i, b in columns], dtype=float)
    omega_vec = np.array([omegas[i][b] for i, b in columns], dtype=float)
    size_scale = max(float(size_vec.max()), 1.0)
    omega_scale = max(float(np.abs(omega_vec).max()), 1e-300)
    size_vec /= size_scale
    omega_vec /= omega_scale

    layer = np.array([i for i, _ in columns])
    level = np.array([b for _, b in columns], dtype=float)
    rows = [(layer == i).astype(float) for i in range(n_layers)]
    lower, upper = [1.0] * n_layers, [1.0] * n_layers
    for i, lower_set in enumerate(below):
        for j in lower_set:
            rows.append(level * (layer == i) - level * (layer == j))
            lower.append(0.0)
            upper.append(np.inf)
    if np.isfinite(budget):
        rows.append(size_vec)
        lower.append(-np.inf)
        upper.append(budget / size_scale)
    col_upper = np.array([1.0 if b <= caps[i] else 0.0 for i, b in columns])
    solve = functools.partial(
        milp,
        integrality=np.ones(len(columns)),
        bounds=Bounds(np.zeros(len(columns)), col_upper),
        options={"mip_rel_gap": 0.0},
    )
    constraints = [LinearConstraint(np.array(rows), np.array(lower), np.array(upper))]
    with native_stdout_silenced():
        first = solve(omega_vec, constraints=constraints)
    if first.status != 0 or first.x is None:
        return None
    best_omega = float(omega_vec @ np.round(first.x))
    tie = LinearConstraint(omega_vec[None, :], -np.inf, best_omega + 1e-9)
    with native_stdout_silenced():
        second = solve(size_vec, constraints=constraints + [tie])
    solution = second.x if second.status == 0 and second.x is not None else first.x
    levels = [0] * n_layers
    for k in np.flatnonzero(np.round(solution).astype(int)):
        levels[columns[k][0]] = columns[k][1]
    return _point(sizes, omegas, tuple(levels))


def _point(
    sizes: Sequence[Sequence[float]], omegas: Sequence[Sequence[float]], levels: tuple[int, ...]
) -> LevelPoint:
    return LevelPoint(
        sum(sizes[i][b] for i, b in enumerate(levels)),
        sum(omegas[i][b] for i, b in enumerate(levels)),
        levels,
    )
