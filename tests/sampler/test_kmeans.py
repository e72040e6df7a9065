from __future__ import annotations

import itertools

import numpy as np
import pytest

from optuna_kmtpe.sampler import _kmeans
from optuna_kmtpe.sampler import kmeans_1d


def _brute_force_sse(values: np.ndarray, k: int) -> float:
    distinct, counts = np.unique(values, return_counts=True)
    m = distinct.size
    k = min(k, m)
    best = np.inf
    for cuts in itertools.combinations(range(1, m), k - 1):
        edges = (0, *cuts, m)
        sse = 0.0
        for a, b in zip(edges[:-1], edges[1:]):
            x, w = distinct[a:b], counts[a:b]
            sse += float(np.dot(w, (x - np.dot(w, x) / w.sum()) ** 2))
        best = min(best, sse)
    return best


@pytest.mark.parametrize("seed", range(30))
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.round(rng.standard_normal(rng.integers(1, 12)) * 3, 1)
    k = int(rng.integers(1, 5))
    result = kmeans_1d(values, k)
    assert result.sse == pytest.approx(_brute_force_sse(values, k), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_divide_and_conquer_equals_dense(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    values = np.round(rng.standard_cauchy(300), int(rng.integers(0, 3)))
    k = int(rng.integers(2, 7))
    monkeypatch.setattr(_kmeans, "_DENSE_MAX_DISTINCT", 10**9)
    dense = kmeans_1d(values, k)
    monkeypatch.setattr(_kmeans, "_DENSE_MAX_DISTINCT", 0)
    fast = kmeans_1d(values, k)
    assert fast.sse == pytest.approx(dense.sse, rel=1e-9, abs=1e-12)
    np.testing.assert_array_equal(fast.labels, dense.labels)


def test_equal_values_share_a_cluster_and_labels_are_contiguous() -> None:
    rng = np.random.default_rng(0)
    values = rng.choice([0.0, 1.0, 1.0, 2.0, 7.0, 7.5, 30.0], size=200)
    result = kmeans_1d(values, 4)
    for v in np.unique(values):
        assert np.unique(result.labels[values == v]).size == 1
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(result.labels[order]) >= 0)
    assert np.all(np.diff(result.centers) > 0)
    assert result.boundaries[-1] == values.max()


def test_degenerate_inputs() -> None:
    one = kmeans_1d(np.array([3.0]), 3)
    assert one.labels.tolist() == [0] and one.centers.tolist() == [3.0] and one.sse == 0.0
    flat = kmeans_1d(np.full(50, 2.5), 4)
    assert flat.labels.tolist() == [0] * 50 and flat.centers.size == 1
    two = kmeans_1d(np.array([1.0, 1.0, 5.0]), 5)
    assert two.labels.tolist() == [0, 0, 1]


def test_heavy_outlier_and_huge_scale_keep_precision() -> None:
    values = np.array([1.0, 1.0 + 1e-9, 2.0, 2.0 + 1e-9, 1e12])
    result = kmeans_1d(values, 3)
    assert result.labels.tolist() == [0, 0, 1, 1, 2]


def test_weights_move_the_boundary() -> None:
    values = np.array([0.0, 1.0, 2.0, 10.0])
    assert kmeans_1d(values, 2).labels.tolist() == [0, 0, 0, 1]
    heavy = kmeans_1d(values, 2, weights=np.array([1.0, 1.0, 1.0, 1e-6]))
    assert heavy.sse < kmeans_1d(values, 2).sse


def test_deterministic_and_order_independent() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 20, size=400).astype(float)
    perm = rng.permutation(values.size)
    a = kmeans_1d(values, 5)
    b = kmeans_1d(values[perm], 5)
    np.testing.assert_array_equal(a.labels[perm], b.labels)
    np.testing.assert_array_equal(a.centers, b.centers)


@pytest.mark.parametrize(
    "values, k, message",
    [
        (np.array([]), 2, "at least one"),
        (np.array([1.0, np.inf]), 2, "finite"),
        (np.array([1.0, np.nan]), 2, "finite"),
        (np.array([1.0]), 0, "n_clusters"),
    ],
)
def test_invalid_inputs(values: np.ndarray, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kmeans_1d(values, k)
