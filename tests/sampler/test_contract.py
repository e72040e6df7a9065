"""Optuna's own contract suites for third-party samplers, in several configurations."""

from __future__ import annotations

from collections.abc import Callable

from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import BasicSamplerTestCase
from optuna.testing.pytest_samplers import MultiObjectiveSamplerTestCase
from optuna.testing.pytest_samplers import RelativeSamplerTestCase
import pytest

from optuna_kmtpe import KMeansTPESampler


BASIC_CONFIGS = {
    "so-multivariate-startup0": lambda: KMeansTPESampler(n_startup_trials=0, seed=0),
    "univariate-startup1-k-schedule": lambda: KMeansTPESampler(
        n_startup_trials=1, multivariate=False, n_clusters=lambda n: 2 + n // 10, seed=1
    ),
    "group-default-startup-middle-weight": lambda: KMeansTPESampler(
        group=True, multivariate=True, middle_weight=0.5, seed=2
    ),
    "no-constant-liar-startup0": lambda: KMeansTPESampler(
        n_startup_trials=0, constant_liar=False, seed=3
    ),
}
RELATIVE_CONFIGS = {
    "multivariate-startup0": lambda: KMeansTPESampler(
        n_startup_trials=0, multivariate=True, seed=0
    ),
    # Not group=True: the suite calls sample_relative without infer_relative_search_space, and
    # TPE's group mode (KMeansTPESampler's too) needs that call to decompose the space. Group
    # mode runs through study.optimize in TestBasic instead.
    "multivariate-startup1-middle-weight-no-liar": lambda: KMeansTPESampler(
        n_startup_trials=1, multivariate=True, middle_weight=0.3, constant_liar=False, seed=1
    ),
}
MO_CONFIGS = {
    "independent-startup0": lambda: KMeansTPESampler(n_startup_trials=0, seed=0),
    "multivariate-startup1": lambda: KMeansTPESampler(
        n_startup_trials=1, multivariate=True, seed=1
    ),
    "default-startup": lambda: KMeansTPESampler(seed=2),
}


class TestBasic(BasicSamplerTestCase):
    @pytest.fixture(params=list(BASIC_CONFIGS.values()), ids=list(BASIC_CONFIGS))
    def sampler(self, request: pytest.FixtureRequest) -> Callable[[], BaseSampler]:
        return request.param


class TestRelative(RelativeSamplerTestCase):
    @pytest.fixture(params=list(RELATIVE_CONFIGS.values()), ids=list(RELATIVE_CONFIGS))
    def sampler(self, request: pytest.FixtureRequest) -> Callable[[], BaseSampler]:
        return request.param


class TestMultiObjective(MultiObjectiveSamplerTestCase):
    @pytest.fixture(params=list(MO_CONFIGS.values()), ids=list(MO_CONFIGS))
    def sampler(self, request: pytest.FixtureRequest) -> Callable[[], BaseSampler]:
        return request.param
