"""The k-means split of trials into a "good" set (l(x)) and a "bad" set (g(x)).

Pure functions; the sampler only orchestrates them. The rule, for ``n`` finished trials:

1. Rank like TPE: feasible COMPLETE trials by their loss (single objective: the value, negated
   when maximizing; multi-objective: the non-domination rank), then PRUNED trials by (last
   step, last intermediate value), then infeasible trials by total violation. RUNNING trials
   always go to the bad set (constant liar).
2. Bounds of the good set (the dual threshold on its size):
   ``n_min = max(1, ceil(min_good_fraction * n))`` and
   ``n_max = max(n_min, ceil(max_good_fraction * n))``, capped at ``max_good_trials``.
3. Cluster the best ``window_factor * n_max`` losses (ties extended) with exact 1-D k-means,
   ``k = n_clusters(n)``. Clustering only the head of the ranking is the robust transform:
   heavy outliers and ``+inf`` in the tail cannot capture a cluster of their own and swallow
   the good set. ``-inf``/``+inf`` in the head are mapped just outside the finite range.
4. The good set is the smallest union of best clusters holding at least ``n_min`` trials,
   clamped to ``n_max``. When the clamp lands inside a group of equal single-objective values,
   the cut moves to the group's edge that stays within the bounds; when neither edge does, it
   is cut like TPE (earliest trials good): keeping a best plateau whole would leave g(x)
   nearly empty and make the sampler re-propose l(x)'s mode, and shrinking to the group's
   start stalls on step functions. Multi-objective ranks are not value ties: there the cut
   may fall inside a rank and its members are chosen by hypervolume subset selection (as
   Optuna's MOTPE, the default) or by farthest-point spread in normalized objective space.
5. The next cluster after the good set is the "middle" band. Its trials stay in the bad set with
   weight ``middle_weight`` in g(x).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import math
from typing import TYPE_CHECKING
from typing import NamedTuple
from typing import Protocol

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import TrialState

from optuna_kmtpe.sampler._kmeans import kmeans_1d


if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


class CutResult(NamedTuple):
    """Where the good set ends in an ascending ranking of losses.

    Attributes:
        n_below: Number of best-ranked trials in the good set.
        n_middle_end: End (exclusive) of the middle band; ``n_below <= n_middle_end``.
        n_clusters: Number of clusters actually used (``<=`` requested).
    """

    n_below: int
    n_middle_end: int
    n_clusters: int


class SplitResult(NamedTuple):
    """A split of trials, both lists sorted by trial number.

    Attributes:
        below: The good trials (model l(x)).
        above: The other trials (model g(x)), including RUNNING ones.
        above_weight_factors: Multiplier of each ``above`` trial's kernel weight in g(x).
        info: Diagnostics: k, sizes and thresholds (JSON-serializable).
    """

    below: list[FrozenTrial]
    above: list[FrozenTrial]
    above_weight_factors: np.ndarray
    info: dict[str, float | int | None]


def good_set_bounds(
    n: int, min_good_fraction: float, max_good_fraction: float, max_good_trials: int | None
) -> tuple[int, int]:
    """Return ``(n_min, n_max)``, the size bounds of the good set among ``n`` finished trials."""
    if n <= 0:
        return 0, 0
    n_min = min(n, max(1, math.ceil(min_good_fraction * n)))
    n_max = max(n_min, math.ceil(max_good_fraction * n))
    if max_good_trials is not None:
        n_max = max(n_min, min(n_max, max_good_trials))
    return n_min, min(n_max, n)


def kmeans_cut(
    sorted_losses: np.ndarray,
    n_min: int,
    n_max: int,
    n_clusters: int,
    *,
    window_factor: float = 2.0,
    split_ties: bool = False,
) -> CutResult:
    """Choose the size of the good set from ascending losses by k-means.

    Args:
        sorted_losses: Ascending losses (``-inf``/``+inf`` allowed, no NaN).
        n_min: Minimum size of the good set (if that many losses exist).
        n_max: Maximum size of the good set. A tie group straddling the cut is kept whole
            when one of its edges lies inside ``[n_min, n_max]``; otherwise it is cut like
            TPE's split (earliest trials good).
        n_clusters: Requested k (>= 1).
        window_factor: The best ``ceil(window_factor * n_max)`` losses are clustered.
        split_ties: Allow the cut inside a group of equal losses (used for non-domination
            ranks, which are not true ties).

    Returns:
        A :class:`CutResult`.
    """
    y = np.asarray(sorted_losses, dtype=float)
    c = y.size
    if c == 0:
        return CutResult(0, 0, 0)
    n_min = min(max(n_min, 1), c)
    n_max = min(max(n_max, n_min), c)
    window = min(c, max(n_max + 1, math.ceil(window_factor * n_max)))
    # Never cut a tie group at the window's edge.
    window = int(np.searchsorted(y, y[window - 1], side="right"))
    head = _finite_surrogate(y[:window])

    result = kmeans_1d(head, n_clusters)
    ends = np.searchsorted(head, result.boundaries, side="right")
    reaching = ends[ends >= n_min]
    cut = int(min(reaching[0] if reaching.size else ends[-1], n_max))
    if not split_ties and cut < c and y[cut - 1] == y[cut]:
        start = int(np.searchsorted(y, y[cut], side="left"))
        end = int(np.searchsorted(y, y[cut], side="right"))
        if n_min <= start:
            cut = start
        elif end <= n_max:
            cut = end
        # Otherwise neither edge of the tie group fits the bounds: cut inside it like TPE
        # (earliest trials good). Keeping a best plateau whole left g(x) almost empty (one
        # config re-proposed 66 times in 80 trials); shrinking to the group's start left a
        # good set of one or two trials that stalled on step functions (step_sphere6 stuck
        # at 1 where TPE reaches 0, 8 of 10 seeds).
    middle_end_candidates = ends[ends > cut]
    middle_end = int(middle_end_candidates[0]) if middle_end_candidates.size else max(cut, window)
    return CutResult(cut, middle_end, int(result.centers.size))


def _finite_surrogate(values: np.ndarray) -> np.ndarray:
    """Map -inf/+inf just outside the finite range, keeping order and ties."""
    finite = np.isfinite(values)
    if finite.all():
        return values
    if not finite.any():
        # Only infinities: order-preserving codes (-inf -> 0, +inf -> 1).
        return (values > 0).astype(float)
    low = float(values[finite].min())
    high = float(values[finite].max())
    span = max(high - low, 1.0)
    return np.where(values == -np.inf, low - span, np.where(values == np.inf, high + span, values))


def pruned_trial_score(trial: FrozenTrial, direction: StudyDirection) -> tuple[float, float]:
    """TPE's ranking key of a pruned trial: deeper first, then better last intermediate value."""
    if len(trial.intermediate_values) > 0:
        step, value = max(trial.intermediate_values.items())
        if math.isnan(value):
            return -step, math.inf
        return -step, value if direction == StudyDirection.MINIMIZE else -value
    return 1, 0.0


def infeasible_score(trial: FrozenTrial) -> float:
    """Total constraint violation (``> 0`` means infeasible)."""
    return sum(v for v in trial.constraints.values() if v > 0)


def farthest_point_order(
    points: np.ndarray, n_select: int, start: int | None = None
) -> np.ndarray:
    """Pick ``n_select`` row indices spread out in the (already normalized) space.

    Deterministic greedy max-min selection, started from the point with the smallest first
    coordinate (an extreme of the front); ties go to the lowest index.
    """
    n = points.shape[0]
    n_select = min(n_select, n)
    if n_select <= 0:
        return np.zeros(0, dtype=int)
    chosen = [int(np.lexsort(points.T[::-1])[0]) if start is None else start]
    distance = np.sum((points - points[chosen[0]]) ** 2, axis=1)
    for _ in range(n_select - 1):
        distance[chosen[-1]] = -1.0
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.sum((points - points[nxt]) ** 2, axis=1))
    return np.asarray(chosen, dtype=int)


class RankTieBreak(Protocol):
    """Chooses the members of the non-domination rank that the good set's bound cuts.

    Injected into :func:`split_trials` (and ``KMeansTPESampler(multi_objective_tiebreak=...)``);
    the rules measured and rejected are in ``benchmarks/_split_variants.py``.
    """

    def __call__(self, losses: np.ndarray, members: np.ndarray, n_select: int) -> np.ndarray:
        """Return ``n_select`` distinct positions into ``members``, chosen first.

        Args:
            losses: ``(n, d)`` minimized losses of every feasible COMPLETE trial.
            members: Row indices of ``losses`` forming the rank to thin.
            n_select: How many members join the good set (``< members.size``).
        """
        ...


def hssp_tiebreak(losses: np.ndarray, members: np.ndarray, n_select: int) -> np.ndarray:
    """Optuna MOTPE's greedy hypervolume subset selection (same reference point and cache)."""
    from optuna.samplers._tpe.sampler import _get_reference_point
    from optuna.samplers._tpe.sampler import _solve_hssp_with_cache

    rank = losses[members]
    n_select = max(0, min(n_select, len(rank)))
    if n_select == 0:
        return np.zeros(0, dtype=int)
    if n_select == len(rank):
        return np.arange(len(rank))
    chosen = _solve_hssp_with_cache(
        tuple(rank.ravel()),
        tuple(range(len(rank))),
        n_select,
        tuple(_get_reference_point(rank)),
    )
    return np.asarray(chosen, dtype=int)


def spread_tiebreak(losses: np.ndarray, members: np.ndarray, n_select: int) -> np.ndarray:
    """Farthest points of the rank, in objective space normalized over all ``losses``."""
    return farthest_point_order(normalized_losses(losses)[members], n_select)


#: The tie-breaks ``KMeansTPESampler(multi_objective_tiebreak=...)`` accepts by name.
TIEBREAKS: dict[str, RankTieBreak] = {"hssp": hssp_tiebreak, "spread": spread_tiebreak}


def normalized_losses(losses: np.ndarray) -> np.ndarray:
    """Each objective scaled to [0, 1] over the finite values; non-finite ones at 2."""
    clipped = np.where(np.isfinite(losses), losses, np.nan)
    any_finite = np.isfinite(clipped).any()
    low = np.nan_to_num(np.nanmin(clipped, axis=0), nan=0.0) if any_finite else 0.0
    high = np.nan_to_num(np.nanmax(clipped, axis=0), nan=1.0) if any_finite else 1.0
    span = np.where(high > low, high - low, 1.0)
    z = (losses - low) / span
    normalized: np.ndarray = np.nan_to_num(np.clip(z, -1.0, 2.0), nan=2.0)
    return normalized


def split_trials(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    *,
    n_clusters: int | Callable[[int], int],
    min_good_fraction: float,
    max_good_fraction: float,
    max_good_trials: int | None,
    window_factor: float,
    middle_weight: float,
    mo_tiebreak: RankTieBreak = hssp_tiebreak,
    nondomination_rank: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> SplitResult:
    """Split trials into good and bad sets by k-means (see the module docstring).

    Args:
        trials: COMPLETE, PRUNED and RUNNING trials (others are ignored), any order.
        directions: The study's directions.
        n_clusters: k, or a schedule ``k(n)`` of the number of finished trials.
        min_good_fraction: Lower bound of the good share.
        max_good_fraction: Upper bound of the good share.
        max_good_trials: Cap of the good set size (single objective), or ``None``.
        window_factor: How many times ``n_max`` best losses are clustered.
        middle_weight: Kernel weight factor in g(x) of the band just after the good set.
        mo_tiebreak: Chooses the members of a non-domination rank that the cut falls inside.
        nondomination_rank: ``rank(losses, n_head)``: non-domination ranks of the rows of
            ``losses``, exact for (at least) the best ``n_head`` rows and larger for the rest.

    Returns:
        A :class:`SplitResult`.
    """
    trials = list(trials)
    numbers = np.fromiter((t.number for t in trials), dtype=np.int64, count=len(trials))
    if numbers.size > 1 and np.any(np.diff(numbers) < 0):
        order_by_number = np.argsort(numbers, kind="stable")
        trials = [trials[i] for i in order_by_number]
    # Indices into `trials` (sorted by number), so that every list built from them stays sorted.
    running: list[int] = []
    complete: list[int] = []
    pruned: list[int] = []
    infeasible: list[int] = []
    for i, trial in enumerate(trials):
        state = trial.state
        if state == TrialState.RUNNING:
            # Before the feasibility check: a running trial's constraints are not set yet.
            running.append(i)
        elif state != TrialState.COMPLETE and state != TrialState.PRUNED:
            continue
        elif trial.system_attrs and infeasible_score(trial) > 0:
            infeasible.append(i)
        elif state == TrialState.COMPLETE:
            complete.append(i)
        else:
            pruned.append(i)

    n_finished = len(complete) + len(pruned) + len(infeasible)
    k = n_clusters(n_finished) if callable(n_clusters) else n_clusters
    if k < 1:
        raise ValueError(
            f"The n_clusters schedule returned {k} for n={n_finished}; it must be >= 1."
        )
    multi_objective = len(directions) > 1
    cap = None if multi_objective else max_good_trials
    n_min, n_max = good_set_bounds(n_finished, min_good_fraction, max_good_fraction, cap)

    # role: 0 good, 1 middle band, 2 bad; ignored trials (FAIL, WAITING) stay at -1.
    role = np.full(len(trials), -1, dtype=np.int8)
    role[running] = 2
    cut, sorted_scores = CutResult(0, 0, 0), np.zeros(0)
    if complete:
        complete_idx = np.asarray(complete)
        signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
        losses = np.array([trials[i].values for i in complete], dtype=float) * signs
        if multi_objective:
            if nondomination_rank is None:
                raise ValueError("A multi-objective split needs a nondomination_rank function.")
            # Ranks are only needed for the clustered head of the ranking.
            n_head = min(len(complete), max(n_max + 1, math.ceil(window_factor * n_max)))
            scores = nondomination_rank(losses, n_head).astype(float)
        else:
            scores = losses[:, 0]
        # Best first; within ties by trial number (stable sort): deterministic.
        order = np.argsort(scores, kind="stable")
        sorted_scores = scores[order]
        cut = kmeans_cut(
            sorted_scores,
            n_min,
            n_max,
            k,
            window_factor=window_factor,
            split_ties=multi_objective,
        )
        if multi_objective and 0 < cut.n_below < sorted_scores.size:
            boundary_rank = sorted_scores[cut.n_below - 1]
            start = int(np.searchsorted(sorted_scores, boundary_rank, side="left"))
            end = int(np.searchsorted(sorted_scores, boundary_rank, side="right"))
            if end > cut.n_below:
                members = order[start:end]
                picked = np.asarray(mo_tiebreak(losses, members, cut.n_below - start), dtype=int)
                rest = np.setdiff1d(np.arange(members.size), picked, assume_unique=True)
                order = order.copy()
                order[start:end] = members[np.concatenate((picked, rest))]
        ranked = complete_idx[order]
        role[ranked[: cut.n_below]] = 0
        role[ranked[cut.n_below : cut.n_middle_end]] = 1
        role[ranked[cut.n_middle_end :]] = 2

    # Too few complete trials: fill the good set up to n_min like TPE, pruned then infeasible.
    shortfall = max(0, n_min - cut.n_below)
    direction = directions[0]
    pruned.sort(key=lambda i: pruned_trial_score(trials[i], direction))
    infeasible.sort(key=lambda i: infeasible_score(trials[i]))
    for group in (pruned, infeasible):
        take = min(shortfall, len(group))
        role[group[:take]] = 0
        role[group[take:]] = 2
        shortfall -= take

    below = [trials[i] for i in np.flatnonzero(role == 0)]
    above_idx = np.flatnonzero(role >= 1)
    above = [trials[i] for i in above_idx]
    factors = np.where(role[above_idx] == 1, middle_weight, 1.0)
    info: dict[str, float | int | None] = {
        "k": cut.n_clusters,
        "n_below": len(below),
        "n_middle": int(np.sum(role == 1)),
        "n_above": len(above),
        "n_running": len(running),
        "threshold_good": _threshold(sorted_scores, cut.n_below),
        "threshold_bad": _threshold(sorted_scores, cut.n_middle_end),
    }
    return SplitResult(below, above, factors, info)


def _threshold(sorted_scores: np.ndarray, end: int) -> float | None:
    """The worst of the first ``end`` scores; ``None`` when there are none or it is infinite."""
    value = float(sorted_scores[end - 1]) if end else math.inf
    return value if math.isfinite(value) else None
