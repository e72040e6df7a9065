"""The one Pareto definition (optuna_kmtpe.sampler.pareto_mask) and the places that use it."""

from __future__ import annotations

import numpy as np
import pytest

from optuna_kmtpe.sampler import pareto_mask


def _brute_force(losses: np.ndarray) -> list[bool]:
    return [
        not any(np.all(other <= row) and np.any(other < row) for other in losses) for row in losses
    ]


@pytest.mark.parametrize("seed", range(5))
def test_losses_without_directions_are_minimized(seed: int) -> None:
    rng = np.random.default_rng(seed)
    losses = rng.integers(0, 4, size=(30, int(rng.integers(1, 4)))).astype(float)
    assert pareto_mask(losses).tolist() == _brute_force(losses)


def test_empty_input_and_the_dashboard_and_sampler_share_it() -> None:
    from optuna_kmtpe import dashboard

    assert pareto_mask(np.zeros((0, 2))).tolist() == []
    assert dashboard.pareto_mask is pareto_mask
