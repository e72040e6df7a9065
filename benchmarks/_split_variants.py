"""Multi-objective split variants measured and rejected (``docs/sampler.md``).

The package keeps the tie-breaks ``"hssp"`` (the default) and ``"spread"``
(``optuna_kmtpe.sampler._split``). The rules below thin a cut non-domination rank in other
ways; ``WholeRankSampler`` never cuts a rank when one of its edges fits the good set's
bounds. ``benchmarks/sampler_variants.py`` runs them (variants ``mo-*``).
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import Any
from unittest import mock

import numpy as np

from optuna_kmtpe import KMeansTPESampler
from optuna_kmtpe.sampler import _split
from optuna_kmtpe.sampler._split import farthest_point_order
from optuna_kmtpe.sampler._split import normalized_losses


Order = Callable[[np.ndarray, int], np.ndarray]


def box_volume_order(points: np.ndarray, n_select: int) -> np.ndarray:
    """Pick the ``n_select`` rows with the largest dominated box up to the reference ``1.1``.

    The box ``prod(1.1 - z)`` is each point's own hypervolume in normalized space: the first
    choice of a greedy hypervolume subset selection, at ``O(m d)`` cost.
    """
    volume = np.prod(np.clip(1.1 - points, 0.0, None), axis=1)
    return np.argsort(-volume, kind="stable")[: max(0, min(n_select, points.shape[0]))]


def greedy_hypervolume_order_2d(points: np.ndarray, n_select: int) -> np.ndarray:
    """Greedy hypervolume subset selection for two objectives, reference point ``1.1``.

    Each step adds the point whose exclusive rectangle (bounded by its selected neighbours
    or the reference point) is largest: ``O(n_select * m log m)`` with numpy, no hypervolume
    library. The points of one non-domination rank are mutually non-dominated, so sorted by
    the first objective they are sorted decreasingly by the second.
    """
    m = points.shape[0]
    n_select = max(0, min(n_select, m))
    order = np.lexsort((points[:, 1], points[:, 0]))
    x = points[order, 0]
    y = points[order, 1]
    selected = np.zeros(m, dtype=bool)
    chosen: list[int] = []
    reference = 1.1
    for _ in range(n_select):
        sel_pos = np.flatnonzero(selected)
        # Nearest selected neighbour on the right (bounds x) and on the left (bounds y).
        right = np.searchsorted(sel_pos, np.arange(m), side="right")
        x_bound = np.append(x[sel_pos], reference)[right]
        y_bound = np.concatenate(([reference], y[sel_pos]))[right]
        gain = np.clip(x_bound - x, 0.0, None) * np.clip(y_bound - y, 0.0, None)
        gain[selected] = -1.0
        best = int(np.argmax(gain))
        selected[best] = True
        chosen.append(int(order[best]))
    return np.asarray(chosen, dtype=int)


def approximate_hypervolume_order(points: np.ndarray, n_select: int) -> np.ndarray:
    """Greedy hypervolume subset selection with pairwise-overlap contributions, any dimension.

    A candidate's contribution is its own box up to the reference ``1.1`` minus its overlap with
    each selected point's box (a Bonferroni lower bound of the exact exclusive hypervolume):
    ``O(n_select * m * d)``, no hypervolume computation.
    """
    m = points.shape[0]
    n_select = max(0, min(n_select, m))
    reach = np.clip(1.1 - points, 0.0, None)
    own = np.prod(reach, axis=1)
    overlap = np.zeros(m)
    chosen: list[int] = []
    available = np.ones(m, dtype=bool)
    for _ in range(n_select):
        gain = np.where(available, own - overlap, -np.inf)
        best = int(np.argmax(gain))
        chosen.append(best)
        available[best] = False
        overlap += np.prod(np.minimum(reach, reach[best]), axis=1)
    return np.asarray(chosen, dtype=int)


def knee_spread_order(points: np.ndarray, n_select: int) -> np.ndarray:
    """Farthest-point selection started from the largest-box (knee) point."""
    return farthest_point_order(points, n_select, start=int(box_volume_order(points, 1)[0]))


@dataclasses.dataclass(frozen=True)
class NormalizedTieBreak:
    """A :class:`~optuna_kmtpe.sampler._split.RankTieBreak` applying ``order`` to the rank's
    points in normalized objective space; with ``exact_2d``, two objectives use the greedy 2-D
    hypervolume selection instead. Picklable, for the benchmark's worker processes."""

    order: Order
    exact_2d: bool = False

    def __call__(self, losses: np.ndarray, members: np.ndarray, n_select: int) -> np.ndarray:
        points = normalized_losses(losses)[members]
        if self.exact_2d and points.shape[1] == 2:
            return greedy_hypervolume_order_2d(points, n_select)
        return self.order(points, n_select)


#: The rejected tie-breaks under their names in ``sampler_variants.py``.
TIEBREAKS: dict[str, NormalizedTieBreak] = {
    "box": NormalizedTieBreak(box_volume_order),
    "approx-hv": NormalizedTieBreak(approximate_hypervolume_order),
    "knee-spread": NormalizedTieBreak(knee_spread_order),
    "hv2d+spread": NormalizedTieBreak(farthest_point_order, exact_2d=True),
    "hv2d+approx-hv": NormalizedTieBreak(approximate_hypervolume_order, exact_2d=True),
    "hv2d+knee-spread": NormalizedTieBreak(knee_spread_order, exact_2d=True),
}


_kmeans_cut = _split.kmeans_cut


def _whole_rank_cut(*args: Any, **kwargs: Any) -> _split.CutResult:
    return _kmeans_cut(*args, **{**kwargs, "split_ties": False})


class WholeRankSampler(KMeansTPESampler):
    """K-Means TPE whose cut moves to a rank's edge, as at tied values ("whole-rank").

    When neither edge fits the bounds, the rank is cut and thinned by the sampler's
    tie-break (the package's variant used to raise there).
    """

    def _split(self, *args: Any, **kwargs: Any) -> _split.SplitResult:
        with mock.patch.object(_split, "kmeans_cut", _whole_rank_cut):
            return super()._split(*args, **kwargs)
