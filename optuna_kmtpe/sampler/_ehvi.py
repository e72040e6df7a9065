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


def pareto_front(losses: np.ndarray) -> np.ndarray:
    """Rows of ``losses`` not dominated by another row (duplicates kept once)."""
    losses = np.unique(np.asarray(losses, dtype=float), axis=0)
    keep = np.ones(len(losses), dtype=bool)
    for i in range(len(losses)):
        if keep[i]:
            dominated = np.all(losses[i] <= losses, axis=1) & np.any(losses[i] < losses, axis=1)
            keep &= ~dominated
    return losses[keep]


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
    clipped = np.minimum(np.maximum(points[None, :, :], corners[:, None, :]), reference)
    if d == 1:
        return box - (reference[0] - clipped[:, :, 0].min(axis=1))
    if d == 2:
        order = np.argsort(clipped[:, :, 0], axis=1, kind="stable")
        x = np.take_along_axis(clipped[:, :, 0], order, axis=1)
        y = np.take_along_axis(clipped[:, :, 1], order, axis=1)
        running_min = np.minimum.accumulate(y, axis=1)
        widths = np.diff(np.concatenate([x, np.full((n_candidates, 1), reference[0])], 1), axis=1)
        dominated = np.sum(widths * (reference[1] - running_min), axis=1)
        return np.clip(box - dominated, 0.0, None)
    out = np.empty(n_candidates)
    for c in range(n_candidates):
        inside = clipped[c][np.all(clipped[c] < reference, axis=1)]
        dominated = float(compute_hypervolume(inside, reference)) if len(inside) else 0.0
        out[c] = max(box[c] - dominated, 0.0)
    return out


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
) -> np.ndarray:
    """Expected hypervolume improvement of candidates (see the module docstring).

    Args:
        known: ``(C, d_k)`` exact losses of the known objectives.
        mean: ``(C, d_u)`` forecast means of the unknown objectives' losses.
        std: ``(C, d_u)`` forecast standard deviations.
        front: ``(m, d_u + d_k)`` current points, unknown objectives first.
        reference: ``(d_u + d_k,)`` reference point, unknown objectives first.

    Returns:
        ``(C,)`` expected improvements (``>= 0``).
    """
    known = np.asarray(known, dtype=float)
    mean = np.asarray(mean, dtype=float).reshape(len(known), -1)
    std = np.maximum(np.asarray(std, dtype=float).reshape(len(known), -1), 1e-12)
    front = np.asarray(front, dtype=float).reshape(-1, len(reference))
    d_u = mean.shape[1]
    front = front[np.all(front < reference, axis=1)]
    if len(front):
        front = pareto_front(front)
    if d_u == 0:
        return free_volume(known, front, reference)
    if d_u > 1:
        optimistic = np.column_stack([mean - std, known])
        return free_volume(optimistic, front, reference)
    r_y = reference[0]
    order = np.argsort(front[:, 0], kind="stable")
    front = front[order]
    thresholds = np.concatenate(([-np.inf], front[:, 0], [r_y]))
    mu, sigma = mean[:, 0], std[:, 0]
    g = _integrated_cdf(thresholds[None, :], mu[:, None], sigma[:, None])  # (C, m + 2)
    total = np.zeros(len(known))
    for j in range(len(front) + 1):
        area = free_volume(known, front[:j, 1:], reference[1:])
        total += area * (g[:, j + 1] - g[:, j])
    return np.clip(total, 0.0, None)
