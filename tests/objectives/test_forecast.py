"""The sampler's view of a mixed-precision job: exact costs and the Hessian accuracy prior."""

from __future__ import annotations

from typing import Any

import pytest

from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives import CostRecord
from optuna_kmtpe.objectives import HessianAccuracyPrior
from optuna_kmtpe.objectives import MPQObjective
from optuna_kmtpe.objectives import warm_starts_inside


class ParamsSpace:
    """Two layers whose weight and activation bits are parameters ``<layer>_w``/``<layer>_a``."""

    layer_names = ("a", "b")

    def config_from_params(self, params: dict[str, Any]) -> QuantConfig:
        return QuantConfig(
            {
                n: LayerConfig(weight_bits=params[f"{n}_w"], act_bits=params[f"{n}_a"])
                for n in self.layer_names
            }
        )

    def suggest(self, trial: Any) -> QuantConfig:
        raise NotImplementedError


class WidthSpace:
    """One layer whose width is the parameter ``a_width``."""

    def config_from_params(self, params: dict[str, Any]) -> QuantConfig:
        return QuantConfig({"a": LayerConfig(weight_bits=8, act_bits=8, width=params["a_width"])})


def costs(config: QuantConfig) -> CostRecord:
    bits = sum(layer.weight_bits * layer.act_bits for layer in config.values())
    return CostRecord(metrics={"latency_s": bits * 1e-6, "energy_j": bits * 1e-7})


def test_known_costs_are_exact_and_leave_accuracy_unknown() -> None:
    objective = MPQObjective(
        space=ParamsSpace(),
        cost_fn=costs,
        accuracy_fn=lambda config, report: 0.9,
        metrics=("latency_s", "accuracy", "energy_j"),
    )
    known = objective.known_costs()
    params = {"a_w": 4, "a_a": 8, "b_w": 2, "b_a": 4}
    assert known(params) == pytest.approx([40e-6, None, 40e-7])
    worst = QuantConfig.uniform(["a", "b"], weight_bits=8, act_bits=8)
    assert known.reference_point(worst, {"accuracy": 0.85}) == pytest.approx(
        [128e-6, 0.85, 128e-7]
    )


WORST = QuantConfig.uniform(["a", "b"], weight_bits=8, act_bits=8)
W4A4 = QuantConfig.uniform(["a", "b"], weight_bits=4, act_bits=4)


def _warm_forecast(cost_fn: Any) -> dict[str, Any]:
    """The forecast options warm_starts_inside reads, for (accuracy, latency, energy)."""
    objective = MPQObjective(
        space=ParamsSpace(),
        cost_fn=cost_fn,
        accuracy_fn=lambda config, report: 0.9,
        metrics=("accuracy", "latency_s", "energy_j"),
    )
    known = objective.known_costs()
    fewest_bits = QuantConfig.uniform(["a", "b"], weight_bits=2, act_bits=2)
    return {
        "known_objectives": known,
        "reference_point": known.reference_point(WORST, {"accuracy": 0.9}, fewest_bits),
    }


def test_warm_starts_on_the_reference_point_are_dropped() -> None:
    # Uniform max-bit costs as much as the reference point: it can add no hypervolume.
    forecast = _warm_forecast(costs)
    configs = [
        ("uniform-w8a8", WORST),
        ("uniform-w4a4", W4A4),
        ("mixed", QuantConfig.uniform(["a", "b"], weight_bits=8, act_bits=4)),
    ]
    assert [label for label, _ in warm_starts_inside(configs, forecast, WORST)] == [
        "uniform-w4a4",
        "mixed",
    ]
    assert warm_starts_inside(configs, None) == configs  # no forecast: every warm start


def test_warm_starts_that_tie_the_costliest_latency_are_kept() -> None:
    # A small model on the FPGA: latency does not depend on the bits, energy does. With the
    # region of interest ending exactly at the costliest config, every warm start was dropped.
    def flat_latency(config: QuantConfig) -> CostRecord:
        bits = sum(layer.weight_bits * layer.act_bits for layer in config.values())
        return CostRecord(metrics={"latency_s": 3.6e-6, "energy_j": bits * 1e-7})

    forecast = _warm_forecast(flat_latency)
    # Only the cost the bits do not move reaches past the costliest config (by 1%).
    assert forecast["reference_point"][1:] == pytest.approx([3.6e-6 * 1.01, 128e-7])
    assert _warm_forecast(costs)["reference_point"][1:] == pytest.approx([128e-6, 128e-7])
    configs = [("uniform-w8a8", WORST), ("uniform-w4a4", W4A4)]
    kept = warm_starts_inside(configs, forecast, WORST)
    assert [label for label, _ in kept] == ["uniform-w4a4"]


def test_hessian_prior_sums_weight_and_activation_terms() -> None:
    prior = HessianAccuracyPrior(
        space=ParamsSpace(),
        quadratic={"a": {2: 0.05, 4: 0.01, 8: 0.0}, "b": {2: 0.02, 4: 0.002, 8: 0.0}},
        act_quadratic={"a": {4: 0.03, 8: 0.0}, "b": {4: 0.004, 8: 0.0}},
        base_accuracy=0.98,
        floor=0.1,
    )
    assert prior({"a_w": 8, "a_a": 8, "b_w": 8, "b_a": 8}) == pytest.approx([0.98])
    assert prior({"a_w": 4, "a_a": 4, "b_w": 2, "b_a": 8}) == pytest.approx([0.98 - 0.06])
    # More bits never forecast a lower accuracy when the terms shrink with bits.
    assert (
        prior({"a_w": 2, "a_a": 4, "b_w": 2, "b_a": 4})[0]
        < prior({"a_w": 4, "a_a": 4, "b_w": 2, "b_a": 4})[0]
    )
    pruned = HessianAccuracyPrior(
        space=WidthSpace(),
        quadratic={},
        act_quadratic={},
        width_quadratic={"a": {0.5: 0.04, 1.0: 0.0}},
        base_accuracy=0.98,
    )
    assert pruned({"a_width": 0.5}) == pytest.approx([0.94])
    assert pruned({"a_width": 1.0}) == pytest.approx([0.98])
    huge = HessianAccuracyPrior(
        space=ParamsSpace(),
        quadratic={"a": {2: 5.0}},
        act_quadratic={},
        base_accuracy=0.98,
        floor=0.1,
    )
    assert huge({"a_w": 2, "a_a": 8, "b_w": 8, "b_a": 8}) == [0.1]  # never below chance


def test_measured_width_changes_add_in_the_metrics_own_units() -> None:
    accuracy = HessianAccuracyPrior(
        space=WidthSpace(),
        quadratic={},
        act_quadratic={},
        width_change={"a": {0.5: -0.07, 0.75: -0.01}},
        base_accuracy=0.98,
    )
    assert accuracy({"a_width": 0.5}) == pytest.approx([0.91])
    assert accuracy({"a_width": 0.75}) == pytest.approx([0.97])
    assert accuracy({"a_width": 1.0}) == pytest.approx([0.98])
    # The validation loss rises by its own measured change (not through loss_to_accuracy).
    loss = HessianAccuracyPrior(
        space=WidthSpace(),
        quadratic={},
        act_quadratic={},
        width_change={"a": {0.5: 0.4}},
        base_accuracy=0.3,
        loss_to_accuracy=-1.0,
    )
    assert loss({"a_width": 0.5}) == pytest.approx([0.7])
