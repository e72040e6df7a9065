"""An additive Bayesian surrogate of the objectives that are not known before a trial runs.

Bayesian linear regression on additive per-parameter features (one-hot levels of categorical
and small discrete parameters; a few smooth basis functions of wide and continuous ones), with
an optional prior mean function. With a prior mean ``p(x)`` the model is

    y(x) = mean p + s * (p(x) - mean p) + b + sum_j w_j phi_j(x) + noise,

so before any data the prediction is the prior itself, and trained trials correct its offset
(``b``), its scale (``s > 0``) and each parameter's levels (``w``). The scale ``s`` and the
prior scales of ``w`` and of the noise range over a small grid (a positive grid for ``s``: a
fit on a few trials must not invert the prior's ranking, which a free linear coefficient did),
and the forecast averages the posteriors of all settings weighted by their marginal likelihood
(Bayesian model averaging) instead of taking the best one: on the first few trials the best
setting was often a near-constant model that called every measured effect noise (digits,
docs/sampler.md, "Digits, seventh round"). Besides one prior scale shared by all weights, the
average holds one hypothesis per parameter whose levels get a ten times wider prior: one
parameter often matters far more than the rest, and under a shared scale a few trials could
not tell that effect from noise (docs/sampler.md, "Digits, ninth round").

The noise is Student-t rather than Gaussian (iteratively reweighted least squares, the EM
algorithm of the t likelihood): a config that collapses (10% accuracy where its neighbours
score 95%) is an outlier of an additive model, and under Gaussian noise it drags every level it
shares toward itself. Under the t likelihood a value far from the fit gets a small weight, so
one crash does not distort the rest, while a level that crashes every time it is tried is
fitted as a large effect (its residuals are small once the level's weight explains them).
The reweighting stops after a few steps, short of the t mode, on purpose (run to
convergence it discounted repeated crashes too far and searched worse), and each setting's
evidence is the Laplace approximation at that fit. This replaced clipping the values past
the region of interest (docs/sampler.md, "Digits, eighth round").
Numpy only.

Measured on a synthetic 12-layer bit-width problem before this module was written (issue
notes): this calibrated additive form was the only accuracy forecast that helped a search;
TPE's density ratio was not a forecast at all in 10+ dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
from typing import Any
from typing import Protocol
from typing import runtime_checkable

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution


#: Discrete numeric parameters with at most this many values get one-hot levels.
MAX_ONE_HOT_LEVELS = 16
_RBF_CENTERS = np.linspace(0.0, 1.0, 5)
_RBF_WIDTH = 0.2


@runtime_checkable
class ObjectivePredictor(Protocol):
    """What :class:`~optuna_kmtpe.KMeansTPESampler` needs of a predictor.

    ``fit`` receives the parameters of finished trials and their values of the objectives
    that are not known before a trial (one column each, in the study's own units and
    directions), as measured: configs that collapse are included at their collapsed value, so
    a predictor should not let one outlier distort its fit (the default uses a Student-t
    likelihood); ``predict`` returns the predictive mean and standard deviation of those
    columns for new parameters.

    A predictor that separates its observation noise from its uncertainty about the
    objective itself may also define ``predict_latent(params)`` (:class:`LatentPredictor`):
    the same mean, and the standard deviation without the noise. The sampler's expected
    improvement then integrates over that uncertainty alone, so it does not keep drawing
    configs whose only promise is a lucky draw of the noise (docs/sampler.md, "Digits,
    seventh round").
    """

    def fit(
        self,
        params: Sequence[Mapping[str, Any]],
        values: np.ndarray,
        search_space: Mapping[str, BaseDistribution],
    ) -> None: ...

    def predict(self, params: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class LatentPredictor(ObjectivePredictor, Protocol):
    """An :class:`ObjectivePredictor` that also forecasts the noise-free objective."""

    def predict_latent(
        self, params: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray]: ...


def encode(
    params: Sequence[Mapping[str, Any]], search_space: Mapping[str, BaseDistribution]
) -> np.ndarray:
    """Additive features of each parameter dict (a parameter that is absent encodes as 0).

    The columns of each parameter, in ``sorted(search_space)`` order, are
    :func:`feature_blocks`.
    """
    blocks = [
        _encode_parameter([p.get(name) for p in params], search_space[name])
        for name in sorted(search_space)
    ]
    if not blocks:
        return np.zeros((len(params), 0))
    return np.hstack(blocks)


def feature_blocks(search_space: Mapping[str, BaseDistribution]) -> list[slice]:
    """The columns :func:`encode` gives each parameter, in ``sorted(search_space)`` order."""
    blocks, start = [], 0
    for name in sorted(search_space):
        width = _block_width(search_space[name])
        blocks.append(slice(start, start + width))
        start += width
    return blocks


def _block_width(distribution: BaseDistribution) -> int:
    if isinstance(distribution, CategoricalDistribution):
        return len(distribution.choices)
    assert isinstance(distribution, (IntDistribution, FloatDistribution))
    levels = _levels(distribution)
    return levels if levels is not None else 2 + len(_RBF_CENTERS)


def _encode_parameter(values: list[Any], distribution: BaseDistribution) -> np.ndarray:
    """One parameter's block: one-hot levels, or a smooth basis (``_block_width`` columns)."""
    present = np.array([v is not None for v in values], dtype=bool)
    block = np.zeros((len(values), _block_width(distribution)))
    if isinstance(distribution, CategoricalDistribution):
        for row, value in enumerate(values):
            if value is not None:
                block[row, int(distribution.to_internal_repr(value))] = 1.0
        return block
    assert isinstance(distribution, (IntDistribution, FloatDistribution))
    x = np.array(
        [distribution.to_internal_repr(v) if v is not None else math.nan for v in values],
        dtype=float,
    )
    levels = _levels(distribution)
    if levels is not None:
        index = np.rint((x - distribution.low) / (distribution.step or 1)).astype(float)
        rows = np.flatnonzero(present)
        block[rows, np.clip(index[rows], 0, levels - 1).astype(int)] = 1.0
        return block
    low, high = float(distribution.low), float(distribution.high)
    if distribution.log:
        x, low, high = np.log(x), math.log(low), math.log(high)
    u = np.where(present, (x - low) / max(high - low, 1e-12), 0.0)
    rbf = np.exp(-0.5 * ((u[:, None] - _RBF_CENTERS[None, :]) / _RBF_WIDTH) ** 2)
    return np.column_stack([u, u**2, rbf]) * present[:, None]


def _levels(distribution: IntDistribution | FloatDistribution) -> int | None:
    if distribution.log or distribution.step is None:
        return None
    count = int(round((distribution.high - distribution.low) / distribution.step)) + 1
    return count if count <= MAX_ONE_HOT_LEVELS else None


class AdditiveBayesianRegression:
    """Additive Bayesian linear regression with an optional prior mean (see the module doc).

    Example:

        .. testcode::

            import numpy as np
            from optuna.distributions import IntDistribution
            from optuna_kmtpe.sampler import AdditiveBayesianRegression

            space = {"a": IntDistribution(0, 3), "b": IntDistribution(0, 3)}
            params = [{"a": a, "b": b} for a in range(4) for b in range(4)]
            values = np.array([[a + 2.0 * b] for a in range(4) for b in range(4)])
            model = AdditiveBayesianRegression()
            model.fit(params, values, space)
            mean, std = model.predict([{"a": 3, "b": 3}])
            assert abs(mean[0, 0] - 9.0) < 0.5

    Args:
        prior_mean: ``p(params) -> sequence of values`` (one per unknown objective, in the
            study's units), or ``None`` for a zero-mean prior with a fitted intercept.
        prior_std: Prior standard deviation of the residual ``y - p(x)`` before enough data
            exist to estimate it (fewer than 3 trials), in the units of the values.
    """

    def __init__(
        self,
        *,
        prior_mean: Callable[[Mapping[str, Any]], Sequence[float]] | None = None,
        prior_std: float = 1.0,
    ) -> None:
        if not (math.isfinite(prior_std) and prior_std > 0):
            raise ValueError(f"prior_std must be a positive finite number; got {prior_std}.")
        self.prior_mean = prior_mean
        self.prior_std = prior_std
        self._space: Mapping[str, BaseDistribution] = {}
        self._columns: list[_Average] = []
        self._n_outputs = 0

    def _prior(self, params: Sequence[Mapping[str, Any]], n_outputs: int) -> np.ndarray:
        if self.prior_mean is None:
            return np.zeros((len(params), n_outputs))
        prior = np.array([list(self.prior_mean(p)) for p in params], dtype=float)
        return prior.reshape(len(params), n_outputs)

    def fit(
        self,
        params: Sequence[Mapping[str, Any]],
        values: np.ndarray,
        search_space: Mapping[str, BaseDistribution],
    ) -> None:
        """Fit one posterior per column of ``values`` (shape ``(n, n_outputs)``)."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[0] != len(params):
            raise ValueError(
                f"values must have shape (len(params), n_outputs); got {values.shape} for "
                f"{len(params)} parameter dicts."
            )
        self._space = dict(search_space)
        self._n_outputs = values.shape[1]
        features = encode(params, self._space)
        prior = self._prior(params, self._n_outputs)
        blocks = feature_blocks(self._space)
        self._columns = [
            _fit_column(
                features,
                values[:, j],
                prior[:, j],
                self.prior_std,
                has_prior=self.prior_mean is not None,
                blocks=blocks,
            )
            for j in range(self._n_outputs)
        ]

    def predict(self, params: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and standard deviation, each of shape ``(len(params), n_outputs)``."""
        return self._predict(params, noise=True)

    def predict_latent(self, params: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """The same mean, and the standard deviation of the noise-free objective (the model's
        uncertainty about the additive function alone)."""
        return self._predict(params, noise=False)

    def _predict(
        self, params: Sequence[Mapping[str, Any]], *, noise: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self._columns:
            raise RuntimeError("Call fit() before predict().")
        features = encode(params, self._space)
        prior = self._prior(params, self._n_outputs)
        means, stds = zip(
            *(c.predict(features, prior[:, j], noise=noise) for j, c in enumerate(self._columns))
        )
        return np.column_stack(means), np.column_stack(stds)


#: Scales of the prior's variation tried by marginal likelihood (never negative: a fit on a few
#: trials must not invert the prior's ranking).
PRIOR_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


#: Settings of the prior scales whose evidence is this many nats below the best one's are left
#: out of the average (their weight would be under 1/1000).
EVIDENCE_CUTOFF = math.log(1000.0)

#: Prior scales of the weights and of the noise, as multiples of the residual's spread; with too
#: little data to choose (fewer than 3 trials), the first (weakest) of each. (A floor at
#: prior_std and wider weight/noise grids were measured: digits full method 0.0352 vs 0.0379
#: median hypervolume over seeds 0-2; weights up to 3x changed nothing with the t noise.)
WEIGHT_FACTORS = (0.1, 0.3, 1.0)
MAX_WEIGHT_FACTOR = 3.0
NOISE_FACTORS = (0.03, 0.1, 0.3, 1.0)

#: Degrees of freedom of the Student-t noise: a residual of 3 noise scales keeps 27% of its
#: weight, one of 10 keeps 3% (digits, four draws: 2 beat 4 and 1; docs/sampler.md, "Digits,
#: eighth round").
NOISE_DOF = 2.0

#: Reweighting steps of the t likelihood's EM. Not run to convergence on purpose: on digits the
#: EM run 10 steps down-weighted repeated crashes further and searched worse (reach of TPE's
#: hv@60 on task seeds 0/3: 35/49 trials against 30/28 with 4; 2 steps: 30/26), so the step
#: count is a measured setting of how far crashes are discounted (docs/sampler.md, "Digits,
#: eighth round").
ROBUST_ITERATIONS = 4

#: One parameter often matters far more than all others (a learning rate; on digits, halving the
#: first conv: -10 points where every bit choice moves accuracy by about one). A single prior
#: scale for every weight then either calls that effect noise (a wide scale for all weights
#: costs too much evidence) or believes every bit's noise; with 12 trials the forecast gave the
#: crashing width a 2-point penalty instead of 10. So the average also holds one hypothesis per
#: parameter in which that parameter's levels have this many times the prior std of the others
#: (a one-dimensional sparse prior, in the spirit of SAASBO's sparse axis-aligned priors).
DOMINANT_EFFECT_FACTOR = 10.0

#: The hypotheses above are fitted while there are fewer than this many finished trials per
#: parameter: with more, the shared scale fits a dominant effect about as well (a synthetic
#: 11-parameter problem with one 10-point effect, 6 seeds: forecast rmse at 12/60/110/200
#: trials 0.95/0.97/0.65/0.49 points with them, 3.7/1.4/0.76/0.52 without), and the refit on
#: every trial of a long study stays cheap.
DOMINANT_EFFECT_TRIALS_PER_PARAMETER = 20

#: At most this many parameters get that hypothesis, those that alone explain most of the
#: values: each costs a solve on every trial (MNIST-1D's space, 49 parameters, 60 trials: a
#: refit takes 0.03 s without the hypotheses, 0.25 s with 16, 0.9 s with all 49). Three were
#: measured too few: on digits (11 parameters, all kept) the search ended lower on one draw of
#: four (task seed 1, 9 seeds of 10).
DOMINANT_EFFECT_CANDIDATES = 16

#: Prior probability that one parameter dominates (shared evenly among the parameters); the
#: shared-scale hypothesis keeps the rest. 0 leaves the shared scale alone.
DOMINANT_EFFECT_PRIOR = 0.2


@dataclasses.dataclass(frozen=True)
class _Average:
    """Posteriors under several settings of the prior scales, weighted by their evidence."""

    weights: np.ndarray
    members: tuple[_Posterior, ...]

    def predict(
        self, features: np.ndarray, prior: np.ndarray, *, noise: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        design = _design(features)  # once for all members
        means, stds = zip(*(m.predict(design, prior, noise=noise) for m in self.members))
        mean_stack, std_stack = np.vstack(means), np.vstack(stds)
        mean = self.weights @ mean_stack
        # Law of total variance: the members' own variance plus their disagreement.
        second_moment = self.weights @ (std_stack**2 + mean_stack**2)
        return mean, np.sqrt(np.maximum(second_moment - mean**2, 1e-300))


@dataclasses.dataclass(frozen=True)
class _LowRankCovariance:
    """``diag(prior_var) - factor.T @ factor``: the weights' posterior covariance from a fit
    with fewer trials than weights (``factor`` has one row per trial), kept factored."""

    prior_var: np.ndarray
    factor: np.ndarray

    def dense(self) -> np.ndarray:
        return np.diag(self.prior_var) - self.factor.T @ self.factor


def _quadratic_form(covariance: np.ndarray | _LowRankCovariance, design: np.ndarray) -> np.ndarray:
    """``z^T covariance z`` for every row ``z`` of ``design``."""
    if isinstance(covariance, _LowRankCovariance):
        projected = design @ covariance.factor.T
        return design**2 @ covariance.prior_var - np.sum(projected**2, axis=1)
    return np.einsum("ij,jk,ik->i", design, covariance, design)


@dataclasses.dataclass(frozen=True)
class _Posterior:
    mean: np.ndarray
    covariance: np.ndarray | _LowRankCovariance
    noise: float
    prior_center: float
    prior_scale: float

    def predict(
        self, design: np.ndarray, prior: np.ndarray, *, noise: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std at the rows of ``design`` (:func:`_design` of the features)."""
        base = self.prior_center + self.prior_scale * (prior - self.prior_center)
        mean = base + design @ self.mean
        variance = _quadratic_form(self.covariance, design)
        if noise:
            variance = variance + self.noise**2
        return mean, np.sqrt(np.maximum(variance, 1e-300))


def _design(features: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(features)), features])


def _weight_profiles(
    blocks: Sequence[slice], features: np.ndarray, target: np.ndarray
) -> list[tuple[float, np.ndarray]]:
    """Hypotheses on the weights' prior: ``(log prior probability, per-feature std factor)``.

    The shared scale, and for each of the :data:`DOMINANT_EFFECT_CANDIDATES` parameters
    (``blocks``: their columns) that alone explain most of ``target`` (largest F statistic), a
    hypothesis in which its levels get :data:`DOMINANT_EFFECT_FACTOR` times the others' prior
    std. The other parameters' hypotheses are left out as too unlikely to matter (Occam's
    window), which keeps the refit cheap in spaces of many parameters.
    """
    shared = np.ones(features.shape[1])
    if len(blocks) < 2 or DOMINANT_EFFECT_PRIOR <= 0:
        return [(0.0, shared)]
    profiles = [(math.log(1.0 - DOMINANT_EFFECT_PRIOR), shared)]
    log_prior = math.log(DOMINANT_EFFECT_PRIOR / len(blocks))
    for index in np.argsort(-_one_way_f(blocks, features, target))[:DOMINANT_EFFECT_CANDIDATES]:
        factor = shared.copy()
        factor[blocks[index]] = DOMINANT_EFFECT_FACTOR
        profiles.append((log_prior, factor))
    return profiles


def _one_way_f(blocks: Sequence[slice], features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """F statistic of ``target`` regressed on each block of columns alone (with an intercept)."""
    n = target.size
    total = float(np.sum((target - target.mean()) ** 2)) + 1e-300
    scores = np.zeros(len(blocks))
    for j, block in enumerate(blocks):
        x = np.column_stack([np.ones(n), features[:, block]])
        coefficients, _, rank, _ = np.linalg.lstsq(x, target, rcond=None)
        explained_dims = max(int(rank) - 1, 1)
        unexplained = float(np.sum((target - x @ coefficients) ** 2))
        scores[j] = ((total - unexplained) / explained_dims) / (
            unexplained / max(n - explained_dims - 1, 1) + 1e-12 * total
        )
    return scores


def _fit_column(
    features: np.ndarray,
    y: np.ndarray,
    prior: np.ndarray,
    prior_std: float,
    *,
    has_prior: bool,
    blocks: Sequence[slice] = (),
) -> _Average:
    finite = np.isfinite(y)
    features, y, prior = features[finite], y[finite], prior[finite]
    n, d = features.shape
    center = float(prior.mean()) if n else 0.0
    spread = float(np.std(prior)) if n >= 2 else 0.0
    scales = PRIOR_SCALES if has_prior and n >= 3 and spread > 0 else (1.0,)
    design = _design(features)
    weight_factors = WEIGHT_FACTORS if n >= 3 else WEIGHT_FACTORS[:1]
    noise_factors = np.array(NOISE_FACTORS if n >= 3 else NOISE_FACTORS[:1])
    # Below 3 trials no effect can stand out from the rest: the shared scale alone.
    if 3 <= n < DOMINANT_EFFECT_TRIALS_PER_PARAMETER * len(blocks):
        profiles = _weight_profiles(blocks, features, y - prior)
    else:
        profiles = [(0.0, np.ones(d))]
    fits: list[tuple[float, _Posterior]] = []
    # Shared by every prior scale's batch; the trials'-space solve does not use it.
    outer = _row_outer_products(design) if n >= 3 and not _solve_in_trial_space(design) else None
    for prior_scale in scales:
        residual = y - (center + prior_scale * (prior - center))
        scale = float(np.std(residual)) if n >= 3 else prior_std
        scale = scale if scale > 0 else prior_std
        offset = float(residual.mean()) if n else 0.0
        intercept_std = MAX_WEIGHT_FACTOR * scale if (n >= 1 or not has_prior) else prior_std
        # Every (weight scale, profile, noise) setting of this prior scale, solved as one batch.
        settings = [
            (log_prior, weight_factor * scale * factor, max(noise_factor * scale, 1e-9))
            for weight_factor in weight_factors
            for log_prior, factor in profiles
            # No weight's prior wider than the intercept's (3x the spread): a wider one
            # explains nothing more and costs a solve on every trial.
            if weight_factor * factor.max() <= MAX_WEIGHT_FACTOR
            for noise_factor in noise_factors
        ]
        prior_vars = np.array([np.concatenate(([intercept_std**2], w**2)) for _, w, _ in settings])
        noises = np.array([noise for _, _, noise in settings])
        posteriors = _robust_posteriors(design, residual - offset, prior_vars, noises, outer)
        for (log_prior, _, noise), (evidence, mean, covariance) in zip(settings, posteriors):
            mean[0] += offset
            fits.append(
                (
                    evidence + log_prior,
                    _Posterior(mean, covariance, float(noise), center, prior_scale),
                )
            )
    # Average over the settings by their evidence instead of taking the best one: with a few
    # trials a near-constant model (all differences called noise) and one that believes a
    # layer's large effect are about as likely, and their disagreement is real uncertainty.
    evidences = np.array([e for e, _ in fits])
    kept = np.flatnonzero(evidences >= evidences.max() - EVIDENCE_CUTOFF)
    weights = np.exp(evidences[kept] - evidences.max())
    return _Average(weights / weights.sum(), tuple(fits[i][1] for i in kept))


def _solve_in_trial_space(x: np.ndarray) -> bool:
    """Whether the fit is cheaper in the trials' space: fewer trials (rows) than weights."""
    return x.shape[0] < x.shape[1]


def _row_outer_products(design: np.ndarray) -> np.ndarray:
    """``x_i x_i^T`` of every row, flattened ``(n, d * d)``: a weighted Gram matrix is then one
    matrix product for any batch of weightings (the refit on every trial stays cheap)."""
    return (design[:, :, None] * design[:, None, :]).reshape(len(design), -1)


def _robust_posteriors(
    design: np.ndarray,
    target: np.ndarray,
    prior_vars: np.ndarray,
    noises: np.ndarray,
    outer: np.ndarray | None = None,
    *,
    dual: bool | None = None,
) -> list[tuple[float, np.ndarray, np.ndarray | _LowRankCovariance]]:
    """:func:`_posterior` under Student-t noise (:data:`NOISE_DOF`), one per setting.

    Setting ``k`` has the prior variances ``prior_vars[k]`` (one per column of ``design``;
    zeros in the same columns for all settings) and the noise scale ``noises[k]``; ``outer`` is
    :func:`_row_outer_products` of ``design`` if already computed. ``dual``: solve in the
    trials' space (:func:`_dual_robust_posteriors`); by default when there are fewer trials
    than weights.
    The fit reweights (the EM algorithm of the t likelihood, :data:`ROBUST_ITERATIONS` steps
    from the Gaussian fit, which stop short of the mode on purpose): each step
    weights every trial by its expected precision, ``(nu + 1) / (nu + (residual / noise)^2)``,
    and refits the Gaussian posterior with noise ``noise / sqrt(weight)`` per trial. The
    covariance is that last fit's, and the evidence is the Laplace approximation there:
    the exact t log-likelihood of the residuals, the weights' log prior, and the Gaussian
    volume of the posterior (exact when the noise is Gaussian). All settings are solved as
    one batch (the sampler refits on every trial). Below 3 trials nothing can be an outlier of
    anything: the Gaussian fit.
    """
    if target.size < 3:
        return [
            _posterior(design, target, v, float(noise)) for v, noise in zip(prior_vars, noises)
        ]
    keep = prior_vars[0] > 0
    x, inverse_prior = design[:, keep], 1.0 / prior_vars[:, keep]  # (n, d), (K, d)
    d = x.shape[1]
    if dual if dual is not None else _solve_in_trial_space(x):
        return _dual_robust_posteriors(keep, x, target, prior_vars[:, keep], noises)
    if outer is None or not keep.all():
        outer = _row_outer_products(x)
    precision_of_noise = 1.0 / noises[:, None] ** 2  # (K, 1)
    weight = np.ones((len(noises), target.size))  # (K, n)
    diagonal = np.arange(d)

    def normal_equations() -> tuple[np.ndarray, np.ndarray]:
        scaled_weight = weight * precision_of_noise
        precision = (scaled_weight @ outer).reshape(-1, d, d)
        precision[:, diagonal, diagonal] += inverse_prior
        return precision, (scaled_weight * target) @ x  # (K, d, d), (K, d)

    for _ in range(ROBUST_ITERATIONS):  # only the means are needed on the way
        precision, projected = normal_equations()
        means = np.linalg.solve(precision, projected[:, :, None])[:, :, 0]
        scaled = (target - means @ x.T) / noises[:, None]
        weight = (NOISE_DOF + 1.0) / (NOISE_DOF + scaled**2)
    precision, projected = normal_equations()
    chol = np.linalg.cholesky(precision)
    covariances = np.linalg.inv(precision)
    means = (covariances @ projected[:, :, None])[:, :, 0]
    # log p(y) ~ log p(y | w*) + log p(w*) + (d/2) log(2 pi) - 0.5 log det(precision)
    evidences = _t_log_likelihood(target - means @ x.T, noises) - 0.5 * (
        np.sum(means**2 * inverse_prior, axis=1)
        - np.log(inverse_prior).sum(axis=1)
        + 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    )
    return [
        (float(evidence), *_embed(keep, mean_kept, covariance_kept))
        for evidence, mean_kept, covariance_kept in zip(evidences, means, covariances)
    ]


def _dual_robust_posteriors(
    keep: np.ndarray, x: np.ndarray, target: np.ndarray, prior_vars: np.ndarray, noises: np.ndarray
) -> list[tuple[float, np.ndarray, _LowRankCovariance]]:
    """:func:`_robust_posteriors` with fewer trials than weights: the same fit, solved in the
    trials' space (``A = X Lambda X^T + R``, n x n, instead of d x d) and the covariance kept
    factored (``Lambda - Lambda X^T A^-1 X Lambda``), so a space of many parameters costs
    ``O(n^2 d)`` per setting, not ``O(d^3)``. ``x`` and ``prior_vars`` hold the kept columns.
    """
    n = target.size
    diagonal = np.arange(n)
    scaled_x = x[None, :, :] * prior_vars[:, None, :]  # X Lambda, (K, n, d)
    kernel = scaled_x @ x.T  # X Lambda X^T, (K, n, n)
    weight = np.ones((len(noises), n))
    for step in range(ROBUST_ITERATIONS + 1):
        row_var = noises[:, None] ** 2 / weight  # (K, n)
        a = kernel.copy()
        a[:, diagonal, diagonal] += row_var
        alpha = np.linalg.solve(a, np.broadcast_to(target, (len(noises), n))[:, :, None])
        means = (alpha.transpose(0, 2, 1) @ scaled_x)[:, 0, :]  # Lambda X^T A^-1 y, (K, d)
        if step < ROBUST_ITERATIONS:  # only the means are needed on the way
            scaled = (target - means @ x.T) / noises[:, None]
            weight = (NOISE_DOF + 1.0) / (NOISE_DOF + scaled**2)
    chol = np.linalg.cholesky(a)
    factors = np.linalg.solve(chol, scaled_x)  # L^-1 X Lambda, (K, n, d)
    # log det(X^T R^-1 X + Lambda^-1) + sum log Lambda = log det A - sum log R (determinant lemma)
    evidences = _t_log_likelihood(target - means @ x.T, noises) - 0.5 * (
        np.sum(means**2 / prior_vars, axis=1)
        + 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        - np.log(row_var).sum(axis=1)
    )
    results = []
    for evidence, mean_kept, prior_var, factor in zip(evidences, means, prior_vars, factors):
        full_factor = np.zeros((n, keep.size))
        full_factor[:, keep] = factor
        covariance = _LowRankCovariance(_embed_vector(keep, prior_var), full_factor)
        results.append((float(evidence), _embed_vector(keep, mean_kept), covariance))
    return results


def _t_log_likelihood(residuals: np.ndarray, noises: np.ndarray) -> np.ndarray:
    """Student-t (:data:`NOISE_DOF`) log-likelihood of each row of ``residuals`` (K, n)."""
    dof = NOISE_DOF
    scaled = residuals / noises[:, None]
    return np.sum(
        math.lgamma((dof + 1.0) / 2.0)
        - math.lgamma(dof / 2.0)
        - 0.5 * math.log(dof * math.pi)
        - np.log(noises)[:, None]
        - (dof + 1.0) / 2.0 * np.log1p(scaled**2 / dof),
        axis=1,
    )


def _embed(
    keep: np.ndarray, mean_kept: np.ndarray, covariance_kept: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The posterior over all weights: those with zero prior variance (``~keep``) fixed at 0."""
    covariance = np.zeros((keep.size, keep.size))
    covariance[np.ix_(keep, keep)] = covariance_kept
    return _embed_vector(keep, mean_kept), covariance


def _embed_vector(keep: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``kept`` at the positions ``keep``, zeros elsewhere."""
    full = np.zeros(keep.size)
    full[keep] = kept
    return full


def _posterior(
    design: np.ndarray, target: np.ndarray, prior_var: np.ndarray, noise: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Log evidence, posterior mean and covariance of ``target = design @ w + noise``.

    Weights with zero prior variance are fixed at 0. Everything is in the weight space
    (Woodbury identity and the matrix determinant lemma), ``O(n d^2 + d^3)``: linear in the
    number of trials.
    """
    n = target.size
    keep = prior_var > 0
    x = design[:, keep]
    inverse_prior = 1.0 / prior_var[keep]
    a = x.T @ x / noise**2 + np.diag(inverse_prior)
    chol = np.linalg.cholesky(a)
    covariance_kept = np.linalg.inv(a)
    projected = x.T @ target / noise**2
    mean_kept = covariance_kept @ projected
    mean, covariance = _embed(keep, mean_kept, covariance_kept)
    if n == 0:
        return 0.0, mean, covariance
    log_det_kernel = (
        2.0 * float(np.log(np.diag(chol)).sum())
        + float(np.log(prior_var[keep]).sum())
        + n * math.log(noise**2)
    )
    quadratic = float(target @ target) / noise**2 - float(projected @ mean_kept)
    evidence = -0.5 * (quadratic + log_det_kernel + n * math.log(2 * math.pi))
    return evidence, mean, covariance
