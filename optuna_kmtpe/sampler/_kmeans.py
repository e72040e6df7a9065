"""Exact, deterministic one-dimensional k-means.

One-dimensional k-means has an exact solution: in an optimal clustering of sorted values every
cluster is a contiguous run, so the problem is a dynamic program over split points
(`Ckmeans.1d.dp <https://journal.r-project.org/archive/2011-2/RJournal_2011-2_Wang+Song.pdf>`__).
The within-cluster sum of squares satisfies the quadrangle inequality, so the optimal split
point of each DP row is monotone and divide-and-conquer optimization solves a row in
``O(m log m)``: ``O(k m log m)`` in all for ``m`` distinct values. Each recursion level of the
divide and conquer is evaluated as one vectorized numpy pass, so the Python overhead is
``O(k log m)`` calls. Small inputs use the dense ``O(k m^2)`` vectorized DP, which has the
same leftmost-argmin tie rule and is faster below a few hundred distinct values.

Equal values are merged into one weighted point before clustering, so they always share a
cluster. No randomness is involved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


# Below this many distinct values the dense O(k m^2) DP is faster than the O(k m log m) one,
# because it makes k numpy calls instead of about 15 k log2(m).
_DENSE_MAX_DISTINCT = 128


class KMeans1DResult(NamedTuple):
    """Result of :func:`kmeans_1d`.

    Attributes:
        labels: Cluster index of each input value, ``0`` for the cluster of smallest values.
        centers: Weighted mean of each cluster, increasing.
        boundaries: For cluster ``c``, the largest value it holds; ``boundaries[-1]`` is the
            maximum. The cluster of a value ``v`` is the first ``c`` with ``v <= boundaries[c]``.
        sse: Within-cluster sum of squared deviations (in the units of the input).
    """

    labels: np.ndarray
    centers: np.ndarray
    boundaries: np.ndarray
    sse: float


def kmeans_1d(
    values: np.ndarray, n_clusters: int, weights: np.ndarray | None = None
) -> KMeans1DResult:
    """Cluster finite scalar values exactly into at most ``n_clusters`` contiguous groups.

    The number of clusters returned is ``min(n_clusters, number of distinct values)``: a group of
    equal values is never cut, and an empty cluster is never produced.

    Args:
        values: Finite values, any order, any length >= 1.
        n_clusters: Requested number of clusters, >= 1.
        weights: Optional positive weight per value (defaults to ones).

    Returns:
        A :class:`KMeans1DResult`; ``labels`` follow the input order.

    Example:

        .. testcode::

            import numpy as np
            from optuna_kmtpe.sampler import kmeans_1d

            result = kmeans_1d(np.array([1.0, 1.1, 5.0, 5.2, 9.0]), 3)
            assert result.labels.tolist() == [0, 0, 1, 1, 2]
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("kmeans_1d needs at least one value; got an empty array.")
    if not np.all(np.isfinite(x)):
        raise ValueError(
            "kmeans_1d needs finite values; replace or clip inf/nan before clustering."
        )
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}.")
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != x.shape or np.any(~(w > 0)):
        raise ValueError("weights must be positive and have the same length as values.")

    distinct, inverse = np.unique(x, return_inverse=True)
    mult = np.bincount(inverse, weights=w)
    m = distinct.size
    k = min(n_clusters, m)

    # Centre and scale so that the prefix-sum formula keeps its precision.
    shift = float(np.dot(mult, distinct) / mult.sum())
    scale = float(np.max(np.abs(distinct - shift))) or 1.0
    z = (distinct - shift) / scale

    starts = _optimal_cluster_starts(z, mult, k)
    ends = np.append(starts[1:], m)
    cluster_of_distinct = np.repeat(np.arange(k), ends - starts)
    labels = cluster_of_distinct[inverse]

    s0 = np.add.reduceat(mult, starts)
    s1 = np.add.reduceat(mult * distinct, starts)
    centers = s1 / s0
    boundaries = distinct[ends - 1]
    sse = float(np.dot(mult, (distinct - centers[cluster_of_distinct]) ** 2))
    return KMeans1DResult(labels=labels, centers=centers, boundaries=boundaries, sse=sse)


def _optimal_cluster_starts(z: np.ndarray, mult: np.ndarray, k: int) -> np.ndarray:
    """Return the start index (into sorted distinct ``z``) of each of the ``k`` clusters."""
    m = z.size
    if k == 1:
        return np.zeros(1, dtype=int)
    if k == m:
        return np.arange(m)

    s0 = np.concatenate(([0.0], np.cumsum(mult)))
    s1 = np.concatenate(([0.0], np.cumsum(mult * z)))
    s2 = np.concatenate(([0.0], np.cumsum(mult * z * z)))

    def cost(j: np.ndarray, i: np.ndarray) -> np.ndarray:
        # SSE of distinct points j..i-1 (j < i).
        w = s0[i] - s0[j]
        s = s1[i] - s1[j]
        sse: np.ndarray = np.maximum(s2[i] - s2[j] - s * s / w, 0.0)
        return sse

    # previous[i]: best SSE of the first i points with c clusters.
    previous = np.full(m + 1, np.inf)
    previous[1:] = cost(np.zeros(m, dtype=int), np.arange(1, m + 1))
    argmins = np.zeros((k, m + 1), dtype=int)
    dense = m <= _DENSE_MAX_DISTINCT
    if dense:
        jj, ii = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
        valid = jj < ii
        cost_matrix = np.full((m + 1, m + 1), np.inf)
        cost_matrix[valid] = cost(jj[valid], ii[valid])
    for c in range(1, k):
        if dense:
            total = previous[:, None] + cost_matrix
            # Row c of the DP only needs i >= c + 1 and j >= c.
            total[:c, :] = np.inf
            current_arg = np.argmin(total, axis=0)
            current = total[current_arg, np.arange(m + 1)]
        else:
            current, current_arg = _dp_row_divide_and_conquer(previous, cost, c, m)
        argmins[c] = current_arg
        previous = current

    starts = np.zeros(k, dtype=int)
    i = m
    for c in range(k - 1, 0, -1):
        starts[c] = i = int(argmins[c][i])
    return starts


def _dp_row_divide_and_conquer(
    previous: np.ndarray,
    cost: Callable[[np.ndarray, np.ndarray], np.ndarray],
    c: int,
    m: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One DP row by divide-and-conquer optimization, one numpy pass per recursion level.

    ``current[i] = min_{c <= j < i} previous[j] + cost(j, i)`` for ``i`` in ``[c + 1, m]``; the
    leftmost minimizing ``j`` is monotone in ``i``, so each midpoint's optimum bounds the search
    range of the two halves.
    """
    current = np.full(m + 1, np.inf)
    current_arg = np.zeros(m + 1, dtype=int)
    lo = np.array([c + 1])
    hi = np.array([m])
    opt_lo = np.array([c])
    opt_hi = np.array([m - 1])
    while lo.size:
        mid = (lo + hi) // 2
        upper = np.minimum(opt_hi, mid - 1)
        counts = upper - opt_lo + 1
        offsets = np.cumsum(counts) - counts
        segment = np.repeat(np.arange(mid.size), counts)
        j = opt_lo[segment] + np.arange(counts.sum()) - offsets[segment]
        i = mid[segment]
        candidates = previous[j] + cost(j, i)
        best = np.minimum.reduceat(candidates, offsets)
        is_best = np.flatnonzero(candidates <= best[segment])
        _, first = np.unique(segment[is_best], return_index=True)
        best_j = j[is_best[first]]
        current[mid] = best
        current_arg[mid] = best_j
        left = lo <= mid - 1
        right = mid + 1 <= hi
        lo = np.concatenate((lo[left], mid[right] + 1))
        hi = np.concatenate((mid[left] - 1, hi[right]))
        opt_lo, opt_hi = (
            np.concatenate((opt_lo[left], best_j[right])),
            np.concatenate((best_j[left], opt_hi[right])),
        )
    return current, current_arg
