"""KMeansTPESampler: Optuna's TPE with a k-means split of the trials."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import math
import threading
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
from optuna.samplers import TPESampler
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import TrialState

from optuna_kmtpe.sampler._compat import check_private_api
from optuna_kmtpe.sampler._dedupe import EVALUATED_STATES
from optuna_kmtpe.sampler._dedupe import exhausted_keys
from optuna_kmtpe.sampler._dedupe import is_discrete
from optuna_kmtpe.sampler._dedupe import new_sample_mask
from optuna_kmtpe.sampler._dedupe import space_size
from optuna_kmtpe.sampler._ehvi import expected_improvement
from optuna_kmtpe.sampler._known import concatenate
from optuna_kmtpe.sampler._known import default_reference
from optuna_kmtpe.sampler._known import known_table
from optuna_kmtpe.sampler._known import mutations
from optuna_kmtpe.sampler._known import single_threaded_blas
from optuna_kmtpe.sampler._known import to_external
from optuna_kmtpe.sampler._known import to_internal
from optuna_kmtpe.sampler._known import uniform_samples
from optuna_kmtpe.sampler._split import TIEBREAKS
from optuna_kmtpe.sampler._split import RankTieBreak
from optuna_kmtpe.sampler._split import SplitResult
from optuna_kmtpe.sampler._split import infeasible_score
from optuna_kmtpe.sampler._split import split_trials
from optuna_kmtpe.sampler._split import spread_tiebreak
from optuna_kmtpe.sampler._surrogate import AdditiveBayesianRegression
from optuna_kmtpe.sampler._surrogate import LatentPredictor
from optuna_kmtpe.sampler._surrogate import ObjectivePredictor


if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
    from optuna.study import Study
    from optuna.trial import FrozenTrial


#: Default bounds of the good share (both). One objective: TPE's 10%, because every k-means-chosen
#: size measured on the broad suite (shares 0.05-0.1, 0.05-0.2, 0.05-0.3) lost to it on
#: mixed-integer, noisy and conditional problems (docs/sampler.md); the k-means cut then only
#: decides at ties. Several objectives: MOTPE's 10% with its hypervolume subset selection,
#: because the cheaper k-means rank split reached 0.99 of MOTPE's hypervolume (7 of 10
#: problems lost); ``multi_objective_tiebreak="spread"`` keeps the cheap rule.
DEFAULT_GOOD_FRACTION = 0.1

#: Rounds of fresh candidates drawn when every candidate repeats an evaluated config (the first
#: half from l(x), the rest uniformly from the space).
_DEDUPE_ROUNDS = 8

#: User attribute written on every trial sampled by the k-means split (see ``docs/sampler.md``).
SPLIT_ATTR_KEY = "kmtpe:split"

#: User attribute with the forecast of the unknown objectives for trials chosen in the
#: known-objectives mode: ``{"objectives": [...], "mean": [...], "std": [...], "ehvi": x}``.
PREDICTION_ATTR_KEY = "kmtpe:predicted"

KnownObjectives = Callable[[dict[str, Any]], Sequence[Any]]


def default_n_clusters(n_finished: int) -> int:
    """The default k schedule: 3 clusters, whatever the number of finished trials.

    The benchmark (``benchmarks/sampler_quality.py``, see ``docs/sampler.md``) measured growing
    schedules; none beat a fixed k of 3.
    """
    del n_finished
    return 3


def _evaluated_keys(
    search_space: dict[str, BaseDistribution],
    history: list[FrozenTrial],
    fixed: dict[str, Any],
    exclude_number: int,
) -> set[tuple[float, ...]] | None:
    """The evaluated configs (``_dedupe`` keys); ``None`` when nothing is (or everything is)."""
    seen = exhausted_keys(history, search_space, fixed, exclude_number=exclude_number)
    return seen if seen and len(seen) < space_size(search_space) else None


def _is_nonnegative_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _nondomination_rank(losses: np.ndarray, n_head: int) -> np.ndarray:
    return _fast_non_domination_rank(losses, n_below=max(1, n_head))


class KMeansTPESampler(TPESampler):
    """TPE whose good/bad split is decided by exact 1-D k-means.

    Optuna's :class:`~optuna.samplers.TPESampler` puts a fixed quantile of the trials (10%, at
    most 25) in the "good" set that models l(x). This sampler instead clusters the best losses
    with exact one-dimensional k-means and takes the best cluster(s) as the good set, bounded
    by a minimum and a maximum share (the dual threshold). Equal values are never split
    between the two sets, which matters on flat, plateau-heavy landscapes such as bit-width
    search. For several objectives the clustered score is the non-domination rank and a rank
    that must be cut is thinned by an injected tie-break (default: MOTPE's hypervolume subset
    selection). Everything else (Parzen estimators, constant liar, relative/group sampling,
    startup trials, seeding) is Optuna's TPE. Based on
    `K-Means TPE <https://arxiv.org/abs/2308.06422>`__; see ``docs/sampler.md`` for what was
    measured.

    Example:

        .. testcode::

            import optuna
            from optuna_kmtpe import KMeansTPESampler


            def objective(trial):
                x = trial.suggest_float("x", -10, 10)
                n = trial.suggest_int("n", 1, 8)
                return (x - 2) ** 2 + n


            study = optuna.create_study(sampler=KMeansTPESampler(seed=0))
            study.optimize(objective, n_trials=30)

    Args:
        n_clusters: k, either an int or a schedule ``k(n_finished_trials) -> int``.
        min_good_fraction: The good set holds at least this share of finished trials (and at
            least one trial). ``None``: 0.1, TPE's and MOTPE's share (never above
            ``max_good_fraction``).
        max_good_fraction: The good set holds at most this share. ``None``: 0.1 (never below
            ``min_good_fraction``). Between the two bounds k-means chooses the cut; equal
            bounds leave it only the choice at tied values.
        max_good_trials: Cap of the good set size for single-objective studies (TPE's cap is
            25); ``None`` for no cap. Multi-objective studies are never capped.
        window_factor: The best ``window_factor * n_max`` losses are clustered; the tail is left
            out so that outliers and ``inf`` do not distort the clustering.
        middle_weight: Weight factor, in g(x), of the trials of the cluster just after the good
            set (``1`` treats them as every other bad trial, ``0`` drops them).
        n_startup_trials: Random trials before the model is used (as TPE).
        n_ei_candidates: Candidates drawn from l(x) per sample (as TPE).
        seed: Seed of the random number generator.
        multivariate: Multivariate TPE; ``None`` means True for one objective, False for
            several (as TPE in Optuna 5).
        group: Group-decomposed multivariate sampling (as TPE).
        constant_liar: Put RUNNING trials in the bad set (as TPE; on by default).
        constraints_func: Constraints of a finished trial, ``<= 0`` meaning satisfied (as
            TPE): infeasible trials rank after every feasible one, by total violation.
        multi_objective_tiebreak: How the members of a cut non-domination rank are chosen:
            ``"hssp"``, Optuna MOTPE's greedy hypervolume subset selection (default),
            ``"spread"``, farthest points in normalized objective space (0.4x MOTPE's time per
            trial at 3 objectives, about 1% less hypervolume on the broad suite), or any
            ``tiebreak(losses, members, n_select)`` (see ``RankTieBreak`` in ``_split``).
        diagnostics: Write the split of each sampled trial to the user attribute
            ``"kmtpe:split"`` (see :func:`split_history`).
        known_objectives: Opt-in. ``f(params) -> values``, one per objective, giving the
            objectives known exactly before a trial runs (model size, latency, energy: cheap
            functions of the config) and ``None`` for the others. With it the sampler draws
            ``n_candidates`` whole configs (from l(x), uniformly, and by mutating good trials),
            computes their known objectives, forecasts the others with ``predictor`` and picks
            the largest expected hypervolume improvement inside ``reference_point``. Sampling
            is then multivariate. It receives the parameters every finished trial has (the
            relative search space): in a conditional space a branch's own parameters are
            sampled after the pick and are not passed, so compute the known objectives from the
            shared ones. It must return the same objectives as known (a number, not
            ``None`` or NaN) for every config. Must be picklable (a module-level function) for
            process workers.
        predictor: Forecast of the unknown objectives (see :class:`ObjectivePredictor`),
            refitted on the finished trials at every sample; default an
            :class:`AdditiveBayesianRegression` without prior. Give it a prior mean (for
            example from Hessian sensitivities) to make it useful from the first trial.
        reference_point: The region of interest in the study's units and directions (for a
            maximized accuracy, the lowest accuracy that counts); improvements outside it count
            for nothing. ``None``: the worst observed value of each objective plus 10% of its
            range.
        n_candidates: Candidates scored per sample in the known-objectives mode.
        upside_limit: Known-objectives mode: how far past the best value measured so far an
            unknown objective's forecast may count, in the objective's own units (one number
            for every unknown objective, or one per objective with ``None`` for no limit).
            For metrics that saturate (an accuracy near its float model's), a Gaussian
            forecast's tail past the best measured value is mostly not there, and credit for it
            sends trials to configs that can only tie the best one. ``None`` (default): no
            limit.
    """

    def __init__(
        self,
        *,
        n_clusters: int | Callable[[int], int] = default_n_clusters,
        min_good_fraction: float | None = None,
        max_good_fraction: float | None = None,
        max_good_trials: int | None = 25,
        window_factor: float = 2.0,
        middle_weight: float = 1.0,
        n_startup_trials: int = 10,
        n_ei_candidates: int = 24,
        seed: int | None = None,
        multivariate: bool | None = None,
        group: bool = False,
        constant_liar: bool = True,
        constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
        multi_objective_tiebreak: str | RankTieBreak = "hssp",
        diagnostics: bool = True,
        known_objectives: KnownObjectives | None = None,
        predictor: ObjectivePredictor | None = None,
        reference_point: Sequence[float] | None = None,
        n_candidates: int = 128,
        upside_limit: float | Sequence[float | None] | None = None,
    ) -> None:
        check_private_api()
        if known_objectives is not None:
            if not callable(known_objectives):
                raise TypeError("known_objectives must be a callable f(params) -> values.")
            if multivariate is False or group:
                raise ValueError(
                    "known_objectives scores whole configs: leave multivariate=None (or True) "
                    "and group=False."
                )
            multivariate = True
        if predictor is not None and not isinstance(predictor, ObjectivePredictor):
            raise TypeError(
                "predictor needs fit(params, values, search_space) and predict(params)."
            )
        if isinstance(multi_objective_tiebreak, str):
            if multi_objective_tiebreak not in TIEBREAKS:
                raise ValueError(
                    "multi_objective_tiebreak must be 'hssp' (Optuna's hypervolume subset "
                    "selection), 'spread' (farthest points, cheaper) or a callable; got "
                    f"{multi_objective_tiebreak!r}."
                )
            multi_objective_tiebreak = TIEBREAKS[multi_objective_tiebreak]
        elif not callable(multi_objective_tiebreak):
            raise TypeError("multi_objective_tiebreak must be a name or a callable.")
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be >= 1; got {n_candidates}.")
        # One number for every objective, or a tuple (an iterator is read once, here).
        if upside_limit is not None and not isinstance(upside_limit, (int, float, str, bytes)):
            upside_limit = tuple(upside_limit)
        limits = upside_limit if isinstance(upside_limit, tuple) else (upside_limit,)
        if not all(v is None or _is_nonnegative_number(v) for v in limits):
            raise ValueError(
                "upside_limit must be a finite number >= 0, or a sequence of such numbers or "
                f"None (one per objective); got {upside_limit!r}."
            )
        if reference_point is not None:
            reference_point = tuple(reference_point)
            if not reference_point or not all(
                isinstance(v, (int, float, np.number))
                and not isinstance(v, bool)
                and math.isfinite(v)
                for v in reference_point
            ):
                raise ValueError(
                    "reference_point must be one finite number per objective (in the study's "
                    f"units); got {reference_point!r}."
                )
        if not callable(n_clusters) and (
            isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1
        ):
            raise ValueError(
                f"n_clusters must be an int >= 1 or a callable k(n) -> int; got {n_clusters!r}."
            )
        max_fraction = 1.0 if max_good_fraction is None else max_good_fraction
        min_fraction = 1e-9 if min_good_fraction is None else min_good_fraction
        if not 0.0 < min_fraction <= max_fraction <= 1.0:
            raise ValueError(
                "Need 0 < min_good_fraction <= max_good_fraction <= 1; got "
                f"min_good_fraction={min_good_fraction}, max_good_fraction={max_good_fraction}."
            )
        if max_good_trials is not None and max_good_trials < 1:
            raise ValueError(f"max_good_trials must be >= 1 or None; got {max_good_trials}.")
        if not (math.isfinite(window_factor) and window_factor >= 1.0):
            raise ValueError(f"window_factor must be a finite number >= 1; got {window_factor}.")
        if not (math.isfinite(middle_weight) and 0.0 <= middle_weight <= 1.0):
            raise ValueError(f"middle_weight must lie in [0, 1]; got {middle_weight}.")
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0; got {n_startup_trials}.")
        if n_ei_candidates < 1:
            raise ValueError(f"n_ei_candidates must be >= 1; got {n_ei_candidates}.")
        super().__init__(
            n_startup_trials=n_startup_trials,
            n_ei_candidates=n_ei_candidates,
            seed=seed,
            multivariate=multivariate,
            group=group,
            constant_liar=constant_liar,
            constraints_func=constraints_func,
        )
        self._n_clusters = n_clusters
        self._min_good_fraction = min_good_fraction
        self._max_good_fraction = max_good_fraction
        self._max_good_trials = max_good_trials
        self._window_factor = window_factor
        self._middle_weight = middle_weight
        self._diagnostics = diagnostics
        self._mo_tiebreak: RankTieBreak = multi_objective_tiebreak
        self._known_objectives = known_objectives
        self._predictor = predictor if predictor is not None else AdditiveBayesianRegression()
        self._reference_point = reference_point
        self._n_candidates = n_candidates
        self._upside_limit = upside_limit
        # Threads of study.optimize(n_jobs>1) share this instance: cache per thread.
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_upside_limit", None)  # pickled before it existed
        self._local = threading.local()

    def _split(
        self,
        study: Study,
        trial: FrozenTrial,
        trials: list[FrozenTrial],
        mo_tiebreak: RankTieBreak | None = None,
    ) -> SplitResult:
        # Independent and group sampling call _sample once per parameter or group of the same
        # trial: the split only changes when the list of trials does. The storage object and
        # the trial's id name the trial: study and trial numbers repeat across storages (every
        # in-memory study is study 0), and a sampler reused for a second study had taken the
        # first one's split.
        key = (
            study._storage,
            trial._trial_id,
            len(trials),
            sum(t.state == TrialState.RUNNING for t in trials),
            mo_tiebreak,
        )
        cached = getattr(self._local, "split", None)
        if cached is not None and cached[0] == key:
            cached_result: SplitResult = cached[1]
            return cached_result
        min_good_fraction, max_good_fraction = self._resolved_good_fractions()
        result = split_trials(
            trials,
            study.directions,
            n_clusters=self._n_clusters,
            min_good_fraction=min_good_fraction,
            max_good_fraction=max_good_fraction,
            max_good_trials=self._max_good_trials,
            window_factor=self._window_factor,
            middle_weight=self._middle_weight,
            mo_tiebreak=mo_tiebreak or self._mo_tiebreak,
            nondomination_rank=_nondomination_rank,
        )
        self._local.split = (key, result)
        if self._diagnostics:
            study._storage.set_trial_user_attr(trial._trial_id, SPLIT_ATTR_KEY, result.info)
        return result

    def _split_inputs(self, history: list[FrozenTrial], trial: FrozenTrial) -> list[FrozenTrial]:
        """The trials the split sees: never WAITING ones, RUNNING ones with the constant liar."""
        return [
            t
            for t in history
            if t.number != trial.number
            and t.state != TrialState.WAITING
            and (self._constant_liar or t.state != TrialState.RUNNING)
        ]

    def _resolved_good_fractions(self) -> tuple[float, float]:
        low, high = self._min_good_fraction, self._max_good_fraction
        if low is None:
            low = DEFAULT_GOOD_FRACTION if high is None else min(DEFAULT_GOOD_FRACTION, high)
        return low, max(DEFAULT_GOOD_FRACTION, low) if high is None else high

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # Mirror of TPESampler._sample with the quantile split replaced by the k-means split,
        # and with evaluated configs of a discrete space never proposed again.
        discrete = all(is_discrete(d) for d in search_space.values())
        states: tuple[TrialState, ...] = (TrialState.COMPLETE, TrialState.PRUNED)
        if self._constant_liar or discrete:
            states += (TrialState.RUNNING, TrialState.WAITING)
        history = study._get_trials(
            deepcopy=False, states=states, use_cache=not (self._constant_liar or discrete)
        )
        split = self._split(study, trial, self._split_inputs(history, trial))
        mpe_below = self._build_parzen_estimator(
            study, search_space, split.below, handle_below=True
        )
        mpe_above = self._build_weighted_above(study, search_space, split)
        samples = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acquisition = self._compute_acquisition_func(samples, mpe_below, mpe_above)
        if discrete:
            samples, acquisition = self._drop_evaluated(
                trial, search_space, history, samples, acquisition, mpe_below, mpe_above
            )
        chosen = TPESampler._compare(samples, acquisition)
        return {name: dist.to_external_repr(chosen[name]) for name, dist in search_space.items()}

    def _drop_evaluated(
        self,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
        history: list[FrozenTrial],
        samples: dict[str, np.ndarray],
        acquisition: np.ndarray,
        mpe_below: _ParzenEstimator,
        mpe_above: _ParzenEstimator,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Keep only candidates whose config was not evaluated yet (see ``_dedupe``).

        When every candidate repeats an evaluated config, more are drawn from l(x), then from
        the prior (uniform over the space); a duplicate is returned only when the space is
        exhausted or none of those draws finds a new config.
        """
        fixed = {k: v for k, v in trial.params.items() if k not in search_space}
        seen = _evaluated_keys(search_space, history, fixed, trial.number)
        if seen is None:
            return samples, acquisition
        for attempt in range(_DEDUPE_ROUNDS):
            fresh = new_sample_mask(samples, search_space, seen)
            if fresh.any():
                return {k: v[fresh] for k, v in samples.items()}, acquisition[fresh]
            if attempt < _DEDUPE_ROUNDS // 2:
                samples = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
            else:
                samples = uniform_samples(search_space, self._rng.rng, self._n_ei_candidates)
            acquisition = self._compute_acquisition_func(samples, mpe_below, mpe_above)
        return samples, acquisition

    def _sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self._known_objectives is None or not search_space:
            return super()._sample_relative(study, trial, search_space)
        finished = study._get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True
        )
        if len(finished) < self._n_startup_trials:
            return {}
        with single_threaded_blas():
            return self._sample_known(study, trial, search_space)

    def _sample_known(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Pick the candidate of largest expected hypervolume improvement (module ``_ehvi``)."""
        assert self._known_objectives is not None
        rng = self._rng.rng
        signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        history = [
            t
            for t in study._get_trials(deepcopy=False, states=EVALUATED_STATES, use_cache=False)
            if t.number != trial.number
        ]
        # l(x) only proposes half of the candidates here and EHVI picks among them, so the
        # cheap spread rule replaces the hypervolume subset selection at the cut rank.
        split = self._split(
            study, trial, self._split_inputs(history, trial), mo_tiebreak=spread_tiebreak
        )
        mpe_below = self._build_parzen_estimator(study, search_space, split.below, True)
        mpe_above = self._build_weighted_above(study, search_space, split)

        # Candidates: l(x), uniform, and mutations of the good trials; evaluated ones dropped.
        parents = [self._get_params(t, study) for t in split.below]
        parents = [p for p in parents if search_space.keys() <= p.keys()]
        n_half, n_quarter = self._n_candidates // 2, self._n_candidates // 4
        samples = concatenate(
            [
                mpe_below.sample(rng, max(1, n_half)),
                uniform_samples(search_space, rng, self._n_candidates - n_half - n_quarter),
                mutations(to_internal(parents, search_space), search_space, rng, n_quarter),
            ],
            search_space,
        )
        if all(is_discrete(d) for d in search_space.values()):
            seen = _evaluated_keys(search_space, history, {}, trial.number)
            fresh = None if seen is None else new_sample_mask(samples, search_space, seen)
            if fresh is not None and fresh.any():
                samples = {k: v[fresh] for k, v in samples.items()}
        candidates = to_external(samples, search_space)

        mask, known = known_table(self._known_objectives, candidates, len(signs))
        known_idx, unknown_idx = np.flatnonzero(mask), np.flatnonzero(~mask)
        known = known * signs[known_idx]

        complete = [
            t
            for t in history
            if t.state == TrialState.COMPLETE
            and not (t.system_attrs and infeasible_score(t) > 0)
            and search_space.keys() <= t.params.keys()
        ]
        observed = np.array([t.values for t in complete], dtype=float).reshape(-1, len(signs))
        losses = observed * signs
        if self._reference_point is not None:
            if len(self._reference_point) != len(signs):
                raise ValueError(
                    f"reference_point has {len(self._reference_point)} entries for a study with "
                    f"{len(signs)} objectives; give one per objective."
                )
            reference = np.asarray(self._reference_point, dtype=float) * signs
        else:  # the candidates' known losses count, their unknown ones (NaN) do not
            padded = np.full((len(known), len(signs)), np.nan)
            padded[:, known_idx] = known
            reference = default_reference(np.vstack([losses, padded]))

        mean = np.zeros((len(candidates), unknown_idx.size))
        std = np.zeros_like(mean)
        running_losses = np.zeros((0, len(signs)))
        if unknown_idx.size:
            # The values as measured, crashes included: a crash says how far a config falls,
            # and the default predictor's t likelihood keeps one crash from distorting the
            # rest (clipping them at the region of interest hid, on digits, that configs
            # forecast at 91% crashed to 80%; docs/sampler.md, "Digits, eighth round").
            self._predictor.fit(
                [t.params for t in complete], observed[:, unknown_idx], search_space
            )
            # The acquisition integrates over the uncertainty about each config's objective,
            # not over the noise of one measurement (where the predictor tells them apart):
            # with the noise in it, EHVI kept drawing near-copies of one cheap config for a
            # lucky draw (docs/sampler.md, "Digits, seventh round").
            predict = (
                self._predictor.predict_latent
                if isinstance(self._predictor, LatentPredictor)
                else self._predictor.predict
            )
            mean, std = predict(candidates)
            mean = np.asarray(mean, dtype=float).reshape(len(candidates), -1) * signs[unknown_idx]
            std = np.asarray(std, dtype=float).reshape(len(candidates), -1)
            running = [
                p
                for p in (
                    self._get_params(t, study)
                    for t in history
                    if t.state in (TrialState.RUNNING, TrialState.WAITING)
                )
                if search_space.keys() <= p.keys()
            ]
            if running and self._constant_liar:
                # Believe the forecast for configs other workers are evaluating right now.
                r_mean, _ = self._predictor.predict(running)
                r_mean = np.asarray(r_mean, float).reshape(len(running), -1) * signs[unknown_idx]
                running_losses = np.zeros((len(running), len(signs)))
                running_mask, running_known = known_table(
                    self._known_objectives, running, len(signs)
                )
                if not np.array_equal(running_mask, mask):
                    raise ValueError(
                        "known_objectives must know the same objectives for every config; it "
                        "knew others for a running trial's config than for the candidates."
                    )
                running_losses[:, known_idx] = running_known * signs[known_idx]
                running_losses[:, unknown_idx] = r_mean

        order = np.concatenate([unknown_idx, known_idx])
        front = np.vstack([losses, running_losses])[:, order]
        ehvi = expected_improvement(
            known,
            mean,
            std,
            front,
            reference[order],
            best_possible=self._best_possible(losses, unknown_idx),
        )
        if ehvi.max() > 0:
            best_index = int(np.argmax(ehvi))
        else:
            # Nothing is expected to improve the front: fall back to TPE's density ratio.
            best_index = int(
                np.argmax(self._compute_acquisition_func(samples, mpe_below, mpe_above))
            )
        if unknown_idx.size:
            # The recorded std is the predictive one (noise included): what a measured value
            # is compared with.
            _, predictive_std = self._predictor.predict([candidates[best_index]])
            study._storage.set_trial_user_attr(
                trial._trial_id,
                PREDICTION_ATTR_KEY,
                {
                    "objectives": [int(i) for i in unknown_idx],
                    "mean": [float(v) for v in mean[best_index] * signs[unknown_idx]],
                    "std": [float(v) for v in np.ravel(predictive_std)],
                    "ehvi": float(ehvi[best_index]),
                    "n_candidates": len(candidates),
                },
            )
        return candidates[best_index]

    def _best_possible(self, losses: np.ndarray, unknown_idx: np.ndarray) -> np.ndarray | None:
        """Lowest loss each unknown objective is credited with: best measured minus its
        ``upside_limit`` (``-inf`` where there is none)."""
        limit = self._upside_limit
        if limit is None or unknown_idx.size == 0 or len(losses) == 0:
            return None
        per_objective = limit if isinstance(limit, tuple) else (limit,) * losses.shape[1]
        if len(per_objective) != losses.shape[1]:
            raise ValueError(
                f"upside_limit has {len(per_objective)} entries for a study with "
                f"{losses.shape[1]} objectives; give one per objective (None: no limit)."
            )
        margin = np.array(
            [np.inf if per_objective[i] is None else float(per_objective[i]) for i in unknown_idx]
        )
        with np.errstate(all="ignore"):
            best = np.nanmin(np.where(np.isfinite(losses), losses, np.nan)[:, unknown_idx], axis=0)
        return np.where(np.isfinite(best), best - margin, -np.inf)

    def _build_weighted_above(
        self, study: Study, search_space: dict[str, BaseDistribution], split: SplitResult
    ) -> _ParzenEstimator:
        if np.all(split.above_weight_factors == 1.0):
            return self._build_parzen_estimator(
                study, search_space, split.above, handle_below=False
            )
        # Same filtering as TPESampler._get_internal_repr: trials lacking a parameter drop out.
        keep = np.array(
            [search_space.keys() <= self._get_params(t, study).keys() for t in split.above],
            dtype=bool,
        )
        kept = [t for t, k in zip(split.above, keep) if k]
        observations = self._get_internal_repr(kept, search_space, study)
        weights = np.asarray(self._parzen_estimator_parameters.weights(len(kept)), dtype=float)
        weights = weights * split.above_weight_factors[keep]
        if len(kept) and weights.sum() <= 0:
            weights = np.ones(len(kept))
        return self._parzen_estimator_cls(
            observations, search_space, self._parzen_estimator_parameters, weights
        )
