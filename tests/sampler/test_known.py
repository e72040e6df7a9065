"""Known objectives, the additive forecast and expected hypervolume improvement."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
import pytest

from optuna_kmtpe import KMeansTPESampler
from optuna_kmtpe.sampler import PREDICTION_ATTR_KEY
from optuna_kmtpe.sampler import AdditiveBayesianRegression
from optuna_kmtpe.sampler import _surrogate as surrogate
from optuna_kmtpe.sampler._ehvi import expected_improvement
from optuna_kmtpe.sampler._ehvi import free_volume


# A 12-layer bit-width problem: accuracy = 0.99 - 3 * sum_i s_i 4^-b_i, cost = mean bits / 8.
LAYERS = 12
BITS = [2, 3, 4, 6, 8]
_rs = np.random.RandomState(0)
SENS = _rs.lognormal(0, 1, LAYERS) * 0.05
SIZE = _rs.uniform(1, 4, LAYERS)
REFERENCE = [0.9, 1.0]


def _bits(params: dict[str, Any]) -> np.ndarray:
    return np.array([params[f"b{i}"] for i in range(LAYERS)], dtype=float)


def accuracy(params: dict[str, Any]) -> float:
    return 0.99 - 3.0 * float(np.sum(SENS * 4.0 ** (-_bits(params))))


def cost(params: dict[str, Any]) -> float:
    return float(np.sum(SIZE * _bits(params)) / (8 * SIZE.sum()))


def known(params: dict[str, Any]) -> list[float | None]:
    return [None, cost(params)]


def prior(params: dict[str, Any]) -> list[float]:
    # A prior with the right ranking but the wrong scale (2 instead of 3), as a Hessian gives.
    return [0.99 - 2.0 * float(np.sum(SENS * 4.0 ** (-_bits(params))))]


def objective(trial: optuna.Trial) -> tuple[float, float]:
    params = {f"b{i}": trial.suggest_categorical(f"b{i}", BITS) for i in range(LAYERS)}
    return accuracy(params), cost(params)


def hypervolume(study: optuna.Study) -> float:
    ref = np.array([-REFERENCE[0], REFERENCE[1]])
    points = np.array([[-t.values[0], t.values[1]] for t in study.trials if t.values])
    points = points[np.all(points < ref, axis=1)]
    return float(compute_hypervolume(points, ref)) if len(points) else 0.0


def _known_sampler(seed: int, **kw: Any) -> KMeansTPESampler:
    options: dict[str, Any] = {
        "known_objectives": known,
        "reference_point": REFERENCE,
        "predictor": AdditiveBayesianRegression(prior_mean=prior, prior_std=0.01),
        "n_startup_trials": 1,
    }
    return KMeansTPESampler(seed=seed, **{**options, **kw})


def test_free_volume_matches_optunas_hypervolume() -> None:
    rng = np.random.default_rng(0)
    front = rng.uniform(0, 1, (7, 2))
    corners = rng.uniform(0, 1, (5, 2))
    reference = np.array([1.2, 1.1])
    box = np.prod(reference - corners, axis=1)
    for c, volume in enumerate(free_volume(corners, front, reference)):
        clipped = np.minimum(np.maximum(front, corners[c]), reference)
        union = compute_hypervolume(clipped, reference)
        assert volume == pytest.approx(box[c] - union, abs=1e-12)
    three = free_volume(corners[:, :1].repeat(3, 1), rng.uniform(0, 1, (4, 3)), np.ones(3))
    assert np.all(three >= 0)


def test_expected_improvement_is_exact_against_monte_carlo() -> None:
    rng = np.random.default_rng(1)
    front = rng.uniform(0, 1, (6, 3))
    reference = np.array([1.1, 1.0, 1.2])
    known_part = rng.uniform(0, 1, (4, 2))
    mean = rng.uniform(0, 1, (4, 1))
    std = np.array([[0.05], [0.2], [0.5], [1e-9]])
    exact = expected_improvement(known_part, mean, std, front, reference)
    for c in range(4):
        draws = rng.normal(mean[c, 0], max(std[c, 0], 1e-12), 4000)
        base = compute_hypervolume(front[np.all(front < reference, 1)], reference)
        improvements = []
        for y in draws:
            point = np.concatenate(([y], known_part[c]))
            pts = np.vstack([front, point])
            pts = pts[np.all(pts < reference, axis=1)]
            improvements.append(compute_hypervolume(pts, reference) - base)
        assert exact[c] == pytest.approx(np.mean(improvements), abs=4e-3, rel=0.05)


def test_expected_improvement_censored_at_the_best_possible_value() -> None:
    # EHVI with a floor equals the Monte Carlo mean of the improvement of max(y, floor), and
    # a candidate whose only gain lies past the floor is worth nothing.
    rng = np.random.default_rng(2)
    front = np.array([[0.2, 0.3, 0.4], [0.4, 0.1, 0.2], [0.6, 0.05, 0.05]])
    reference = np.array([1.0, 1.0, 1.0])
    known_part = np.array([[0.35, 0.45], [0.1, 0.1]])
    mean, std = np.array([[0.25], [0.5]]), np.array([[0.1], [0.3]])
    floor = np.array([0.2])
    censored = expected_improvement(known_part, mean, std, front, reference, floor)
    uncensored = expected_improvement(known_part, mean, std, front, reference)
    base = compute_hypervolume(front, reference)
    for c in range(2):
        improvements = []
        for y in np.maximum(rng.normal(mean[c, 0], std[c, 0], 8000), floor[0]):
            points = np.vstack([front, np.concatenate(([y], known_part[c]))])
            points = points[np.all(points < reference, axis=1)]
            improvements.append(compute_hypervolume(points, reference) - base)
        assert censored[c] == pytest.approx(np.mean(improvements), abs=2e-4, rel=0.06)
    # Candidate 0 costs more than the front point at 0.2: it gains only by beating 0.2.
    assert uncensored[0] > 0 and censored[0] == 0.0
    assert 0 < censored[1] < uncensored[1]
    # Several unknown objectives: the optimistic value stops at the floor too.
    two = expected_improvement(
        known_part[:, :1], np.array([[0.1, 0.5]] * 2), np.full((2, 2), 0.2), front, reference,
        np.array([0.2, -np.inf]),
    )  # fmt: skip
    assert two[0] == pytest.approx(free_volume(np.array([[0.2, 0.3, 0.35]]), front, reference)[0])


def test_upside_limit_keeps_trials_off_configs_that_can_only_tie_the_best() -> None:
    # Accuracy saturates at 0.99 (no config beats the float model): with the default 12-layer
    # problem, the most accurate trials are the 8-bit ones. Without a limit EHVI keeps
    # crediting the Gaussian tail above the best value to costly configs; with it, picks go
    # where the front can actually move, so the chosen configs are cheaper.
    def saturating(trial: optuna.Trial) -> tuple[float, float]:
        acc, size = objective(trial)
        return min(acc, 0.985), size

    mean_cost = {}
    for limit in (None, 0.002):
        costs = []
        for seed in range(3):
            sampler = _known_sampler(seed, upside_limit=limit)
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            study.enqueue_trial({f"b{i}": 8 for i in range(LAYERS)})
            study.optimize(saturating, n_trials=15)
            costs += [t.values[1] for t in study.trials[1:]]
        mean_cost[limit] = float(np.mean(costs))
    assert mean_cost[0.002] < mean_cost[None]


def test_upside_limit_is_validated() -> None:
    for bad in (-0.1, float("nan"), float("inf"), True, "0.1", [0.1, -1.0]):
        with pytest.raises(ValueError, match="upside_limit"):
            KMeansTPESampler(upside_limit=bad)  # type: ignore[arg-type]
    sampler = KMeansTPESampler(
        seed=0, known_objectives=known, upside_limit=[0.01], n_startup_trials=1
    )
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=1)
    with pytest.raises(ValueError, match="one per objective"):
        study.optimize(objective, n_trials=1)
    limited = pickle.loads(pickle.dumps(_known_sampler(0, upside_limit=[0.01, None])))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=limited)
    study.optimize(objective, n_trials=4)
    assert len(study.trials) == 4


def test_reference_point_is_validated() -> None:
    for bad in ([], [0.9, float("nan")], [0.9, "1"], [True, 1.0]):
        with pytest.raises(ValueError, match="reference_point must be one finite number"):
            KMeansTPESampler(known_objectives=known, reference_point=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got '0.1'"):
        KMeansTPESampler(upside_limit="0.1")  # type: ignore[arg-type]
    for point in ([0.9], [0.9, 1.0, 1.0]):
        sampler = _known_sampler(0, reference_point=iter(point))
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        with pytest.raises(ValueError, match=f"{len(point)} entries for a study with 2"):
            study.optimize(objective, n_trials=12)


@pytest.mark.parametrize(
    "function, match",
    [
        (lambda p: float(_bits(p).mean()), "must return a list .* got float"),
        (lambda p: {"cost": 1.0}, "must return a list .* got dict"),
        (lambda p: "1.0", "must return a list .* got str"),
        (lambda p: [None, "cheap"], "must return numbers"),
        (lambda p: [None], "returned 1 values for a study with 2"),
        # The cost known for some configs only: the forecast would cover it on some trials.
        (
            lambda p: [None, None if p["b0"] == 2 else float(_bits(p).mean())],
            "a number for objective 1 for some configs and None or NaN for others",
        ),
    ],
)
def test_known_objectives_results_are_checked(function: Any, match: str) -> None:
    sampler = _known_sampler(0, known_objectives=function)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    with pytest.raises(ValueError, match=match):
        study.optimize(objective, n_trials=12)


def test_additive_regression_learns_levels_and_starts_from_the_prior() -> None:
    space = {
        "a": IntDistribution(0, 3),
        "c": CategoricalDistribution(["x", "y"]),
        "f": FloatDistribution(0.0, 1.0),
    }
    rng = np.random.default_rng(0)
    params = [
        {"a": int(a), "c": str(c), "f": float(f)}
        for a, c, f in zip(rng.integers(0, 4, 40), rng.choice(["x", "y"], 40), rng.random(40))
    ]

    def truth(p: dict[str, Any]) -> float:
        return p["a"] ** 2 + (2.0 if p["c"] == "y" else 0.0) + np.sin(3 * p["f"])

    values = np.array([[truth(p)] for p in params])
    model = AdditiveBayesianRegression()
    model.fit(params, values, space)
    test = [{"a": 3, "c": "y", "f": 0.5}, {"a": 0, "c": "x", "f": 0.1}]
    mean, std = model.predict(test)
    assert mean[:, 0] == pytest.approx([truth(p) for p in test], abs=0.3)
    assert np.all(std > 0)

    with_prior = AdditiveBayesianRegression(prior_mean=lambda p: [truth(p)], prior_std=0.1)
    with_prior.fit([], np.zeros((0, 1)), space)
    mean, std = with_prior.predict(test)
    assert mean[:, 0] == pytest.approx([truth(p) for p in test])
    with pytest.raises(ValueError, match="shape"):
        model.fit(params, values[:3], space)


def test_latent_forecast_leaves_out_the_noise_the_predictive_one_keeps() -> None:
    # One parameter, its levels measured 50 times each with noise of std 1: the model is sure
    # of each level's mean (latent std small) but a new measurement still scatters by ~1.
    space = {"a": IntDistribution(0, 3)}
    rng = np.random.default_rng(0)
    params = [{"a": a} for a in range(4) for _ in range(50)]
    values = np.array([[2.0 * p["a"] + rng.normal()] for p in params])
    model = AdditiveBayesianRegression()
    model.fit(params, values, space)
    test = [{"a": a} for a in range(4)]
    mean, std = model.predict(test)
    latent_mean, latent_std = model.predict_latent(test)
    np.testing.assert_allclose(latent_mean, mean)
    assert np.all(std[:, 0] > 0.5) and np.all(std[:, 0] < 1.5)  # the noise (its grid is coarse)
    assert np.all(latent_std[:, 0] < 0.3)
    assert np.all(latent_std > 0)


def test_few_trials_keep_a_large_single_effect_plausible() -> None:
    # The warm-start pattern: one base config and each of three layers changed alone, with
    # effects of -10, -4 and -3 points that a flat prior does not know. Four trials cannot
    # tell a model that calls the spread noise from one that believes the effects; averaged
    # over the prior scales by evidence, the forecast of all three changes together stays
    # below the base and keeps the additive truth inside two standard deviations.
    space = {name: IntDistribution(0, 2) for name in "abcd"}
    effects = {"a": 0.10, "b": 0.04, "c": 0.03}

    def truth(p: dict[str, Any]) -> float:
        return 0.97 - sum(effect for name, effect in effects.items() if p[name] == 0)

    base = dict.fromkeys("abcd", 2)
    params = [base] + [{**base, name: 0} for name in effects]
    model = AdditiveBayesianRegression(prior_mean=lambda p: [0.98], prior_std=0.01)
    model.fit(params, np.array([[truth(p)] for p in params]), space)
    all_changed = {**base, "a": 0, "b": 0, "c": 0}
    mean, std = model.predict_latent([all_changed, base])
    assert mean[0, 0] < mean[1, 0] - 0.03
    assert abs(mean[0, 0] - truth(all_changed)) < 2 * std[0, 0]


@pytest.mark.parametrize(
    "dominant_prior, gap_found", [(surrogate.DOMINANT_EFFECT_PRIOR, True), (0, False)]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_dominant_parameter_is_believed_after_a_few_trials(
    monkeypatch: pytest.MonkeyPatch, dominant_prior: float, seed: int, gap_found: bool
) -> None:
    # Eleven parameters, twelve random trials, and one parameter whose lowest level costs 10
    # points while the others move the value by at most 2 (digits: the halved first conv
    # among the bit choices). With one prior scale for all weights the evidence calls the
    # spread noise and the forecast keeps a 2-4 point gap; the hypothesis that one parameter
    # dominates recovers most of the 10 (both shown).
    monkeypatch.setattr(surrogate, "DOMINANT_EFFECT_PRIOR", dominant_prior)
    space = {f"w{i}": IntDistribution(0, 4) for i in range(8)}
    space |= {f"p{i}": IntDistribution(0, 2) for i in range(3)}

    def truth(p: dict[str, Any]) -> float:
        return 0.97 - 0.10 * (p["p0"] == 0) - 0.005 * (4 - p["w1"])

    rng = np.random.RandomState(seed)

    def draw(n: int) -> list[dict[str, Any]]:
        return [
            {k: int(rng.randint(d.low, d.high + 1)) for k, d in space.items()} for _ in range(n)
        ]

    params = draw(12)
    values = np.array([[truth(p) + rng.normal(0, 0.01)] for p in params])
    model = AdditiveBayesianRegression(prior_std=0.01)
    model.fit(params, values, space)
    new = draw(200)
    mean, _ = model.predict_latent(new)
    crashed = np.array([p["p0"] == 0 for p in new])
    gap = mean[~crashed, 0].mean() - mean[crashed, 0].mean()
    assert (gap > 0.07) == gap_found


def test_settings_solved_as_one_batch_match_one_at_a_time() -> None:
    # The refit solves every (weight scale, hypothesis, noise) setting of a prior scale in one
    # batch; each must come out as if solved alone.
    rng = np.random.default_rng(0)
    design = np.column_stack([np.ones(20), rng.integers(0, 2, (20, 6))]).astype(float)
    target = design @ rng.normal(size=7) + rng.standard_t(2, 20) * 0.1
    prior_vars = rng.uniform(0.1, 2.0, (3, 7))
    noises = np.array([0.05, 0.1, 0.3])
    batched = surrogate._robust_posteriors(design, target, prior_vars, noises)
    for k, (evidence, mean, covariance) in enumerate(batched):
        alone = surrogate._robust_posteriors(
            design, target, prior_vars[k : k + 1], noises[k : k + 1]
        )
        np.testing.assert_allclose(evidence, alone[0][0], rtol=1e-9)
        np.testing.assert_allclose(mean, alone[0][1], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(covariance, alone[0][2], rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("n", [5, 12, 30])
def test_the_dual_solve_matches_the_primal_one(n: int) -> None:
    # With fewer trials than weights the fit is solved in the trials' space and its covariance
    # kept factored; evidence, means and covariance must equal the weight-space solve.
    rng = np.random.default_rng(n)
    design = np.column_stack([np.ones(n), rng.integers(0, 2, (n, 19))]).astype(float)
    target = design @ rng.normal(size=20) * 0.1 + rng.standard_t(2, n) * 0.05
    prior_vars = rng.uniform(0.01, 1.0, (4, 20))
    noises = np.array([0.01, 0.05, 0.1, 0.3])
    primal = surrogate._robust_posteriors(design, target, prior_vars, noises, dual=False)
    dual = surrogate._robust_posteriors(design, target, prior_vars, noises, dual=True)
    for (e_p, m_p, c_p), (e_d, m_d, c_d) in zip(primal, dual):
        np.testing.assert_allclose(e_d, e_p, rtol=1e-8)
        np.testing.assert_allclose(m_d, m_p, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(c_d.dense(), c_p, rtol=1e-6, atol=1e-9)


def _additive_data(
    n: int, seed: int
) -> tuple[dict[str, IntDistribution], list[dict[str, Any]], Any]:
    space = {name: IntDistribution(0, 3) for name in "abcde"}
    rng = np.random.default_rng(seed)
    effects = {name: rng.uniform(-0.02, 0.0, 4) for name in space}
    params = [{name: int(v) for name, v in zip(space, row)} for row in rng.integers(0, 4, (n, 5))]

    def truth(p: dict[str, Any]) -> float:
        return 0.97 + sum(float(effects[name][p[name]]) for name in space)

    return space, params, truth


@pytest.mark.parametrize("dof, distorted", [(surrogate.NOISE_DOF, False), (1e12, True)])
def test_one_crash_does_not_distort_the_levels_it_shares(
    monkeypatch: pytest.MonkeyPatch, dof: float, distorted: bool
) -> None:
    # Forty configs of an additive accuracy, one of which collapses to 10%: the t likelihood
    # gives the crash a small weight, so configs that share its levels keep their forecast. The
    # Gaussian likelihood (dof -> infinity) drags them toward it; the test shows both.
    monkeypatch.setattr(surrogate, "NOISE_DOF", dof)
    space, params, truth = _additive_data(40, seed=0)
    values = np.array([[truth(p)] for p in params])
    values[0, 0] = 0.10
    model = AdditiveBayesianRegression()
    model.fit(params, values, space)
    neighbours = [{**params[0], name: (params[0][name] + 1) % 4} for name in space]
    mean, _ = model.predict_latent(neighbours)
    error = np.max(np.abs(mean[:, 0] - [truth(p) for p in neighbours]))
    assert (error > 0.03) == distorted


def test_a_level_that_always_crashes_is_fitted_as_its_effect() -> None:
    # Every config with a = 0 collapses (the halved first conv of digits): those residuals are
    # small once the level's weight explains them, so the forecast of an unseen a = 0 config
    # is a crash too, not the mean of the others.
    space, params, truth = _additive_data(30, seed=1)

    def measured(p: dict[str, Any]) -> float:
        return truth(p) - (0.2 if p["a"] == 0 else 0.0)

    model = AdditiveBayesianRegression()
    model.fit(params, np.array([[measured(p)] for p in params]), space)
    seen = {tuple(p.values()) for p in params}
    unseen = [
        p
        for p in ({"a": 0, "b": b, "c": c, "d": 1, "e": 2} for b in range(4) for c in range(4))
        if tuple(p.values()) not in seen
    ]
    mean, _ = model.predict_latent(unseen)
    assert sum(p["a"] == 0 for p in params) >= 5
    np.testing.assert_allclose(mean[:, 0], [measured(p) for p in unseen], atol=0.03)


class _SpyPredictor:
    """The default model, counting which forecast the sampler asks for."""

    def __init__(self, *, latent: bool) -> None:
        self.model = AdditiveBayesianRegression(prior_mean=prior, prior_std=0.01)
        self.calls = {"predict": 0, "predict_latent": 0}
        self.fitted: list[np.ndarray] = []
        if latent:
            self.predict_latent = self._predict_latent

    def fit(self, params: Any, values: np.ndarray, search_space: Any) -> None:
        self.fitted.append(np.array(values))
        self.model.fit(params, values, search_space)

    def predict(self, params: Any) -> tuple[np.ndarray, np.ndarray]:
        self.calls["predict"] += 1
        return self.model.predict(params)

    def _predict_latent(self, params: Any) -> tuple[np.ndarray, np.ndarray]:
        self.calls["predict_latent"] += 1
        return self.model.predict_latent(params)


def _spy_study(spy: _SpyPredictor, *, n_startup_trials: int) -> optuna.Study:
    sampler = KMeansTPESampler(
        seed=0, known_objectives=known, reference_point=REFERENCE, predictor=spy,
        n_startup_trials=n_startup_trials,
    )  # fmt: skip
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


@pytest.mark.parametrize("latent", [True, False])
def test_acquisition_uses_the_latent_forecast_where_the_predictor_has_one(latent: bool) -> None:
    spy = _SpyPredictor(latent=latent)
    study = _spy_study(spy, n_startup_trials=1)
    study.optimize(objective, n_trials=8)
    model_chosen = 7
    assert spy.calls["predict_latent"] == (model_chosen if latent else 0)
    # Every pick also records the predictive forecast of the chosen config (noise included),
    # the one a measured value is compared with.
    assert spy.calls["predict"] == (model_chosen if latent else 2 * model_chosen)
    last = study.trials[-1]
    _, predictive_std = spy.model.predict([last.params])
    recorded = last.user_attrs[PREDICTION_ATTR_KEY]["std"][0]
    assert recorded >= spy.model.predict_latent([last.params])[1][0, 0]
    assert recorded == pytest.approx(predictive_std[0, 0], rel=0.5)


def test_the_predictor_sees_crashes_as_measured() -> None:
    # Values far past the reference point (here every config with b0 = 2 collapses to 10%)
    # reach the predictor unchanged, in the study's units: how far a config falls is data.
    def crashing(trial: optuna.Trial) -> tuple[float, float]:
        acc, size = objective(trial)
        return (0.10 if trial.params["b0"] == 2 else acc), size

    spy = _SpyPredictor(latent=True)
    study = _spy_study(spy, n_startup_trials=6)
    study.optimize(crashing, n_trials=14)
    last_fit = spy.fitted[-1][:, 0]
    measured = [t.values[0] for t in study.trials[: len(last_fit)]]
    assert 0.10 in measured
    np.testing.assert_allclose(np.sort(last_fit), np.sort(measured))


def test_known_objectives_with_a_prior_beat_tpe_early() -> None:
    # Paired seeds, 20 trials: the Hessian-like prior and the exact cost make the first
    # trials count; TPE learns both from scratch.
    wins = 0
    for seed in range(3):
        known_study = optuna.create_study(
            directions=["maximize", "minimize"], sampler=_known_sampler(seed)
        )
        known_study.optimize(objective, n_trials=20)
        tpe = optuna.create_study(
            directions=["maximize", "minimize"], sampler=optuna.samplers.TPESampler(seed=seed)
        )
        tpe.optimize(objective, n_trials=20)
        wins += hypervolume(known_study) > hypervolume(tpe)
    assert wins == 3


def test_predictions_are_recorded_deterministic_and_distinct() -> None:
    studies = []
    for _ in range(2):
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=_known_sampler(7))
        study.optimize(objective, n_trials=15)
        studies.append(study)
    assert [t.params for t in studies[0].trials] == [t.params for t in studies[1].trials]
    trials = studies[0].trials
    predicted = [t.user_attrs[PREDICTION_ATTR_KEY] for t in trials[1:]]
    assert all(p["objectives"] == [0] and p["std"][0] > 0 for p in predicted)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)
    # The forecast is calibrated: after a few trials it is within a few points of the truth.
    errors = [abs(p["mean"][0] - t.values[0]) for p, t in zip(predicted[5:], trials[6:])]
    assert np.median(errors) < 0.03


def test_known_mode_pickles_and_runs_with_parallel_workers() -> None:
    sampler = pickle.loads(pickle.dumps(_known_sampler(0)))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=16, n_jobs=2)
    assert len(study.trials) == 16
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) >= 15


def test_known_objectives_in_a_plain_hyperparameter_study() -> None:
    # A model-size objective is known before training; the loss is not, and there is no prior.
    def study_objective(trial: optuna.Trial) -> tuple[float, float]:
        width = trial.suggest_int("width", 8, 256, log=True)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        return (np.log10(lr) + 2.5) ** 2 + 30.0 / width, float(width)

    sampler = KMeansTPESampler(
        seed=0, known_objectives=lambda p: [None, float(p["width"])], n_startup_trials=5
    )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(study_objective, n_trials=25)
    assert PREDICTION_ATTR_KEY in study.trials[-1].user_attrs
    assert len(study.best_trials) >= 3


def test_bad_known_objectives_fail_clearly() -> None:
    with pytest.raises(ValueError, match="multivariate"):
        KMeansTPESampler(known_objectives=known, multivariate=False)
    with pytest.raises(TypeError, match="callable"):
        KMeansTPESampler(known_objectives="cost")  # type: ignore[arg-type]
    sampler = KMeansTPESampler(seed=0, known_objectives=lambda p: [None], n_startup_trials=1)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=1)
    with pytest.raises(ValueError, match="one per objective"):
        study.optimize(objective, n_trials=1)


def test_the_forecast_runs_on_one_blas_thread_and_restores_the_setting() -> None:
    # Small matrices: a multi-threaded BLAS there costs more CPU waking its threads than it
    # saves (3x the CPU time of a refit with both cores busy); the user's setting comes back.
    from threadpoolctl import threadpool_info
    from threadpoolctl import threadpool_limits

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    seen: list[list[int]] = []
    spy = _SpyPredictor(latent=True)
    fit = spy.fit
    spy.fit = lambda *args: (seen.append(blas_threads()), fit(*args))[1]  # type: ignore
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        _spy_study(spy, n_startup_trials=1).optimize(objective, n_trials=4)
        assert blas_threads() == before
    assert before and before != [1] * len(before)  # the limit below is the sampler's doing
    assert seen and all(threads == [1] * len(threads) for threads in seen)
