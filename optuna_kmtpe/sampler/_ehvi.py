"""Expected hypervolume improvement when some objectives are known exactly before a trial.

All objectives are losses (minimized). A candidate has exact values ``k`` for the known
objectives and a Gaussian forecast ``N(mu, sigma^2)`` for one unknown objective ``y``. With the
current front ``P`` and the reference point ``r``, the improvement for a given ``y`` is

    HVI(y) = integral from y to r_y of A(t) dt,

where ``A(t)`` is the volume, in the known objectives, of the box ``[k, r_k]`` not dominated by
the front points whose unknown value is ``<= t``. ``A`` is a step function that changes at the
front's unknown values, so the expectation is exact and closed-form:

    EHVI = sum_j A_j * (G(t_{j+1}) - G(t_j)),   G(t) = sigma * (u Phi(u) + phi(u)),
    u = (t - mu) / sigma.

With no unknown objective, the improvement is exact; with several, each unknown objective is
taken at its optimistic value ``mu - sigma`` (a documented approximation). Numpy only; the
dominated volume is vectorized over candidates for up to two known objectives and uses
Optuna's hypervolume for more.
"""

from __future__ import annotations

import math

import numpy as np
from optuna._hypervolume import compute_hypervolume
from optuna.samplers._tpe._erf import erf

from optuna_kmtpe.sampler._pareto import pareto_mask


def free_volume(corners: np.ndarray, points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Volume of each box ``[corners[c], reference]`` not dominated by any of ``points``.

    Args:
        corners: ``(C, d)`` lower corners (one per candidate).
        points: ``(m, d)`` dominating points (a front).
        reference: ``(d,)`` upper corner.

    Returns:
        ``(C,)`` volumes (0 where a corner lies outside the reference box).
    """
    corners = np.asarray(corners, dtype=float)
    n_candidates, d = corners.shape
    box = np.prod(np.clip(reference - corners, 0.0, None), axis=1) if d else np.ones(len(corners))
    if len(points) == 0 or n_candidates == 0:
        return box
    if d == 0:
        return np.zeros(n_candidates)
    if d == 2:
        return _free_area(corners, points, reference, np.asarray(len(points)))
    clipped = np.minimum(np.maximum(points[None, :, :], corners[:, None, :]), reference)
    if d == 1:
        return box - (reference[0] - clipped[:, :, 0].min(axis=1))
    out = np.empty(n_candidates)
    for c in range(n_candidates):
        inside = clipped[c][np.all(clipped[c] < reference, axis=1)]
        dominated = float(compute_hypervolume(inside, reference)) if len(inside) else 0.0
        out[c] = max(box[c] - dominated, 0.0)
    return out


def _free_area(
    corners: np.ndarray, points: np.ndarray, reference: np.ndarray, prefix: np.ndarray
) -> np.ndarray:
    """:func:`free_volume` in two dimensions of the first ``prefix`` points (an integer array
    that broadcasts against ``(C,)``: one prefix for all, per candidate, or ``(J, 1)``).

    The dominated area is a sweep over the points sorted by their first coordinate (an order
    clipping to a corner does not change), where the points outside the prefix are lifted to
    the reference and add nothing.
    """
    box = np.prod(np.clip(reference - corners, 0.0, None), axis=1)
    by_x = np.argsort(points[:, 0], kind="stable")
    x = np.minimum(np.maximum(points[by_x, 0][None, :], corners[:, :1]), reference[0])  # (C, m)
    y = np.minimum(np.maximum(points[by_x, 1][None, :], corners[:, 1:2]), reference[1])
    widths = np.diff(np.concatenate([x, np.full((len(corners), 1), reference[0])], 1), axis=1)
    member = by_x < np.asarray(prefix)[..., None]  # each sorted point in the prefix?
    running = np.minimum.accumulate(np.where(member, y, reference[1]), axis=-1)
    return np.clip(box - np.sum(widths * (reference[1] - running), axis=-1), 0.0, None)


def _integrated_cdf(t: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``G(t) = integral from -inf to t of P(y <= s) ds`` for ``y ~ N(mean, std^2)``."""
    finite = np.where(np.isneginf(t), 0.0, t)
    u = (finite - mean) / std
    value = std * (
        u * 0.5 * (1.0 + erf(u / math.sqrt(2.0))) + np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    )
    return np.where(np.isneginf(t), 0.0, value)


def expected_improvement(
    known: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    front: np.ndarray,
    reference: np.ndarray,
    best_possible: np.ndarray | None = None,
) -> np.ndarray:
    """Expected hypervolume improvement of candidates (see the module docstring).

    Args:
        known: ``(C, d_k)`` exact losses of the known objectives.
        mean: ``(C, d_u)`` forecast means of the unknown objectives' losses.
        std: ``(C, d_u)`` forecast standard deviations.
        front: ``(m, d_u + d_k)`` current points, unknown objectives first.
        reference: ``(d_u + d_k,)`` reference point, unknown objectives first.
        best_possible: ``(d_u,)`` lowest loss each unknown objective can reach (``-inf``:
            unbounded). The forecast is censored there: the chance of a value beyond it counts
            as that value, so a Gaussian tail past a metric's ceiling earns no credit.

    Returns:
        ``(C,)`` expected improvements (``>= 0``). With one unknown objective, candidates
        that provably cannot have the largest value (their bound ``box * G(r_y)`` is below the
        best exact value found) are left at 0.
    """
    known = np.asarray(known, dtype=float)
    mean = np.asarray(mean, dtype=float).reshape(len(known), -1)
    std = np.maximum(np.asarray(std, dtype=float).reshape(len(known), -1), 1e-12)
    front = np.asarray(front, dtype=float).reshape(-1, len(reference))
    d_u = mean.shape[1]
    floor = np.full(d_u, -np.inf) if best_possible is None else np.asarray(best_possible, float)
    front = front[np.all(front < reference, axis=1)]
    if len(front):
        front = np.unique(front, axis=0)  # the front's points, each once
        front = front[pareto_mask(front)]
    if d_u == 0:
        return free_volume(known, front, reference)
    if d_u > 1:
        optimistic = np.column_stack([np.maximum(mean - std, floor), known])
        return free_volume(optimistic, front, reference)
    r_y = reference[0]
    order = np.argsort(front[:, 0], kind="stable")
    front = front[order]
    # Censored at the floor: P(max(y, floor) <= t) is 0 below it, so the sum starts there.
    thresholds = np.maximum(np.concatenate(([-np.inf], front[:, 0], [r_y])), floor[0])
    mu, sigma = mean[:, 0], std[:, 0]
    g = _integrated_cdf(thresholds[None, :], mu[:, None], sigma[:, None])  # (C, m + 2)
    weights = np.diff(g, axis=1)  # (C, m + 1)
    # Branch and bound. A_j shrinks as j grows, so for any split s:
    #   EHVI <= box * G(t_s) + A_s * (G(r_y) - G(t_s)),
    # with s the front points below mu - 2 sigma (G(t_s) is then small). Exact values are
    # computed best bound first, in chunks, until no remaining bound can win.
    box = np.prod(np.clip(reference[1:] - known, 0.0, None), axis=1)
    split = np.searchsorted(front[:, 0], mu - 2.0 * sigma, side="left")
    at_split = np.take_along_axis(g, split[:, None], axis=1)[:, 0]
    area_at_split = own_prefix_free_volumes(known, front[:, 1:], reference[1:], split)
    bound = box * at_split + area_at_split * (g[:, -1] - at_split)
    total = np.zeros(len(known))
    best = 0.0
    for chunk in np.array_split(np.argsort(-bound, kind="stable"), max(1, len(known) // 32)):
        if len(chunk) == 0 or (best > 0 and bound[chunk[0]] <= best):
            break
        areas = prefix_free_volumes(known[chunk], front[:, 1:], reference[1:])  # (m + 1, c)
        total[chunk] = np.clip(np.sum(areas.T * weights[chunk], axis=1), 0.0, None)
        best = max(best, float(total[chunk].max()))
    return total


def own_prefix_free_volumes(
    corners: np.ndarray, points: np.ndarray, reference: np.ndarray, prefix: np.ndarray
) -> np.ndarray:
    """``free_volume(corners[c], points[:prefix[c]], reference)`` for each candidate ``c``."""
    if points.shape[1] != 2:
        return np.array(
            [
                free_volume(corners[c : c + 1], points[:j], reference)[0]
                for c, j in enumerate(prefix)
            ]
        )
    return _free_area(corners, points, reference, prefix)


def prefix_free_volumes(
    corners: np.ndarray, points: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """``free_volume(corners, points[:j], reference)`` for every ``j = 0..m`` at once.

    Returns an ``(m + 1, C)`` array. For one and two dimensions this is vectorized over ``j``
    too (in two, one sweep of :func:`_free_area` per prefix, chunked).
    """
    m, d = points.shape
    n_candidates = len(corners)
    box = np.prod(np.clip(reference - corners, 0.0, None), axis=1)
    if d == 0:
        return np.ones((m + 1, n_candidates))
    if d == 1:
        clipped = np.minimum(np.maximum(points[None, :, 0], corners[:, :1]), reference[0])
        lowest = np.minimum.accumulate(clipped, axis=1)  # (C, m): prefix minima
        free = np.column_stack([box, box[:, None] - (reference[0] - lowest)])
        return np.clip(free.T, 0.0, None)
    if d > 2:
        return np.stack([free_volume(corners, points[:j], reference) for j in range(m + 1)])
    out = np.empty((m + 1, n_candidates))
    # Chunks of prefixes bound the memory to about 4M floats.
    step = max(1, int(4_000_000 // max(1, n_candidates * m)))
    for start in range(0, m + 1, step):
        prefixes = np.arange(start, min(m + 1, start + step))
        out[prefixes] = _free_area(corners, points, reference, prefixes[:, None])
    return out
