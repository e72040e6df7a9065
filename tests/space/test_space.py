from __future__ import annotations

import itertools
import random
import subprocess
import sys

import optuna
import pytest

from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.sensitivity import LayerSensitivity
from optuna_kmtpe.sensitivity import SensitivityReport
from optuna_kmtpe.space import MonotoneSearchSpace
from optuna_kmtpe.space import count_monotone
from optuna_kmtpe.space import hawq_v2_frontier
from optuna_kmtpe.space import hawq_v2_select
from optuna_kmtpe.space import project_monotone
from optuna_kmtpe.space import sensitivity_order
from optuna_kmtpe.space._hawq import pareto_monotone
from optuna_kmtpe.space._hawq import tables
from optuna_kmtpe.space._order import is_monotone


BITS = (1, 2, 3, 4, 5, 6, 7, 8)


def make_report(
    n_layers: int, seed: int, *, rel_se: float = 0.05, activations: bool = False
) -> SensitivityReport:
    rng = random.Random(seed)
    layers = []
    for i in range(n_layers):
        trace = 10 ** rng.uniform(-3, 0)
        scale = rng.uniform(0.5, 2.0)
        layers.append(
            LayerSensitivity(
                name=f"layer{i}",
                kind="Conv2d",
                n_params=rng.choice([64, 288, 1152, 4608]),
                out_channels=8,
                in_channels=8,
                trace=trace,
                trace_stderr=trace * rel_se * rng.uniform(0.2, 1.5),
                num_probes=64,
                perturbation={b: scale * 4.0 ** (-b) * rng.uniform(0.8, 1.2) for b in BITS},
                quadratic={b: trace * scale * 4.0 ** (-b) * rng.uniform(0.3, 3.0) for b in BITS},
                act_trace=10 ** rng.uniform(-3, 0) if activations else None,
                act_trace_stderr=1e-4 if activations else None,
                act_numel=64 if activations else None,
            )
        )
    return SensitivityReport(layers=tuple(layers))


def order_holds(space: MonotoneSearchSpace, config: QuantConfig) -> bool:
    """The order checked from the report directly, independent of the space's own sets."""
    report, sigma = space.report, space.order_sigma
    for a, b in itertools.permutations(space.layer_names, 2):
        la, lb = report[a], report[b]
        if la.trace - sigma * la.trace_stderr > lb.trace + sigma * lb.trace_stderr:
            if config[a].weight_bits < config[b].weight_bits:
                return False
    return True


# Order, projection and counting ------------------------------------------------------------
def test_count_monotone_equals_brute_force_on_random_orders() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 6)
        traces = [rng.random() for _ in range(n)]
        below = sensitivity_order(
            traces, [rng.random() * 0.1 for _ in range(n)], sigma=rng.choice([0.0, 1.0, 2.0])
        )
        caps = [rng.randint(0, 3) for _ in range(n)]
        brute = sum(
            is_monotone(levels, below)
            for levels in itertools.product(*(range(c + 1) for c in caps))
        )
        assert count_monotone(caps, below) == brute


def test_order_ignores_differences_within_noise() -> None:
    below = sensitivity_order([1.0, 1.3, 3.0], [0.1, 0.1, 0.1], sigma=2.0)
    assert below == (frozenset(), frozenset(), frozenset({0, 1}))
    assert sensitivity_order([1.0, 1.3], [0.1, 0.1], sigma=1.0)[1] == frozenset({0})


def test_projection_is_monotone_and_identity_on_monotone_configs() -> None:
    rng = random.Random(1)
    for _ in range(300):
        n = rng.randint(2, 7)
        below = sensitivity_order([rng.random() for _ in range(n)], [0.02] * n, sigma=2.0)
        raw = [rng.randint(0, 4) for _ in range(n)]
        projected = project_monotone(raw, below)
        assert is_monotone(projected, below)
        assert project_monotone(projected, below) == projected


# The space ----------------------------------------------------------------------------------
def test_twenty_layer_space_never_violates_the_order() -> None:
    report = make_report(20, seed=2)
    space = MonotoneSearchSpace(
        report, weight_bits=(2, 3, 4, 6, 8), act_bits=(4, 8), size_budget_bits=None
    )
    assert any(space.weight_below)  # the order is not empty
    rng = random.Random(3)
    for _ in range(3000):
        params = {
            name: rng.randint(d.low, d.high)  # type: ignore[attr-defined]
            for name, d in space.distributions.items()
        }
        config = space.suggest(optuna.trial.FixedTrial(params))
        assert order_holds(space, config)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    for _ in range(60):
        trial = study.ask(space.distributions)
        config = space.config_from_params(trial.params)
        assert order_holds(space, config)
        study.tell(trial, space.size_bits(config))
    assert study.best_value < 3 * sum(layer.n_params for layer in report)


def test_same_distributions_every_trial_and_enqueue_round_trip() -> None:
    report = make_report(8, seed=4)
    space = MonotoneSearchSpace(
        report,
        weight_bits=(2, 4, 8),
        act_bits=(4, 8),
        widths=(0.5, 1.0),
        prunable_layers={"layer0", "layer3"},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    targets = []
    for k in range(5):
        levels = [0] * 8
        for level in range(3):
            levels = project_monotone(
                [random.Random(k * 10 + level).randint(0, 2) for _ in range(8)], space.weight_below
            )
        config = QuantConfig(
            {
                name: LayerConfig(
                    weight_bits=(2, 4, 8)[levels[i]],
                    act_bits=(4, 8)[k % 2],
                    width=0.5 if name == "layer3" else 1.0,
                )
                for i, name in enumerate(space.layer_names)
            }
        )
        targets.append(config)
        study.enqueue_trial(space.params_for(config))
    seen = []
    for _ in range(8):
        trial = study.ask()
        seen.append(space.suggest(trial))
        assert trial.distributions == space.distributions
        study.tell(trial, 0.0)
    assert seen[:5] == targets
    with pytest.raises(ValueError, match="not prunable"):
        space.params_for(targets[0].replace("layer1", width=0.5))


def test_sizes_equal_brute_force_over_all_params() -> None:
    report = make_report(4, seed=5, activations=True)
    prunable = {"layer1", "layer2"}
    producers = {"layer0": None, "layer1": "layer0", "layer2": "layer1", "layer3": "layer2"}
    full = MonotoneSearchSpace(
        report,
        weight_bits=(2, 4, 8),
        act_bits=(4, 8),
        widths=(0.5, 1.0),
        prunable_layers=prunable,
        producers=producers,
    )
    budget = 0.3 * full.size_bits(QuantConfig.uniform(full.layer_names, weight_bits=8))
    space = MonotoneSearchSpace(
        report,
        weight_bits=(2, 4, 8),
        act_bits=(4, 8),
        widths=(0.5, 1.0),
        prunable_layers=prunable,
        producers=producers,
        size_budget_bits=budget,
    )
    assert full.size_before == (3 * 2) ** 4 * 2 * 2
    dists = space.distributions
    names = list(dists)
    configs = {
        space.config_from_params(dict(zip(names, values)))
        for values in itertools.product(
            *(range(d.low, d.high + 1) for d in dists.values())  # type: ignore[attr-defined]
        )
    }
    assert len(configs) == space.size_after
    assert space.size_after < space.size_monotone < space.size_before
    # Brute force over the unconstrained space for the count before budget pruning.
    w_monotone = sum(
        order_holds(
            space,
            QuantConfig({n: LayerConfig(b, 8, 1.0) for n, b in zip(space.layer_names, combo)}),
        )
        for combo in itertools.product((2, 4, 8), repeat=4)
    )
    acts = [(report[n].act_trace, report[n].act_trace_stderr) for n in space.layer_names]
    a_monotone = sum(
        all(
            not (ta - 2 * sa > tb + 2 * sb) or combo[i] >= combo[j]
            for i, (ta, sa) in enumerate(acts)
            for j, (tb, sb) in enumerate(acts)
        )
        for combo in itertools.product((4, 8), repeat=4)
    )
    assert space.size_monotone == w_monotone * a_monotone * 2 * 2
    assert all(order_holds(space, c) for c in configs)


def test_pruning_removes_exactly_the_unusable_choices() -> None:
    report = make_report(5, seed=6)
    bits = (2, 3, 4, 8)
    reference = MonotoneSearchSpace(report, weight_bits=bits, act_bits=None)
    budget = 0.5 * sum(8 * layer.n_params for layer in report)
    space = MonotoneSearchSpace(report, weight_bits=bits, act_bits=None, size_budget_bits=budget)
    usable: list[set[int]] = [set() for _ in range(5)]
    count_in_caps = 0
    for combo in itertools.product(bits, repeat=5):
        config = QuantConfig({n: LayerConfig(b, 8, 1.0) for n, b in zip(space.layer_names, combo)})
        if not order_holds(reference, config):
            continue
        if space.size_bits(config) <= budget:
            for i, b in enumerate(combo):
                usable[i].add(b)
        if all(bits.index(b) <= cap for b, cap in zip(combo, space.weight_caps)):
            count_in_caps += 1
    for i in range(5):
        allowed = set(bits[: space.weight_caps[i] + 1])
        assert allowed == usable[i]
    assert space.size_after == count_in_caps
    assert space.size_after < reference.size_after
    assert "after pruning" in space.describe()
    with pytest.raises(ValueError, match="below the smallest model"):
        MonotoneSearchSpace(report, weight_bits=bits, act_bits=None, size_budget_bits=10.0)


def test_size_bits_counts_removed_channels() -> None:
    report = make_report(2, seed=7)
    space = MonotoneSearchSpace(
        report,
        weight_bits=(4, 8),
        act_bits=None,
        widths=(0.5, 1.0),
        prunable_layers={"layer0": True, "layer1": False},
        producers={"layer1": "layer0"},
    )
    n0, n1 = report["layer0"].n_params, report["layer1"].n_params
    config = QuantConfig({"layer0": LayerConfig(4, 8, 0.5), "layer1": LayerConfig(8, 8, 1.0)})
    assert space.size_bits(config) == pytest.approx(4 * n0 / 2 + 8 * n1 / 2)
    assert "layer1.width_level" not in space.distributions


def test_activation_order_from_activation_traces() -> None:
    report = make_report(6, seed=8, activations=True)
    space = MonotoneSearchSpace(report, weight_bits=(2, 8), act_bits=(2, 4, 8))
    assert any(space.act_below)
    rng = random.Random(9)
    for _ in range(500):
        params = {
            n: rng.randint(d.low, d.high)  # type: ignore[attr-defined]
            for n, d in space.distributions.items()
        }
        config = space.config_from_params(params)
        for i, lower in enumerate(space.act_below):
            for j in lower:
                assert (
                    config[space.layer_names[i]].act_bits >= config[space.layer_names[j]].act_bits
                )


def test_input_validation() -> None:
    report = make_report(3, seed=10)
    with pytest.raises(ValueError, match="prunable_layers"):
        MonotoneSearchSpace(report, widths=(0.5, 1.0))
    with pytest.raises(ValueError, match="weight_bits"):
        MonotoneSearchSpace(report, weight_bits=(2, 9))
    short = SensitivityReport(
        layers=tuple(
            LayerSensitivity(
                layer.name,
                layer.kind,
                layer.n_params,
                8,
                8,
                layer.trace,
                layer.trace_stderr,
                1,
                {4: 1.0},
            )
            for layer in report
        )
    )
    with pytest.raises(ValueError, match="no weight perturbation"):
        MonotoneSearchSpace(short, weight_bits=(2, 4))


def test_space_does_not_import_torch() -> None:
    code = (
        "import sys, optuna_kmtpe.space, optuna_kmtpe.sensitivity as s; "
        "s.SensitivityReport; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=".")


# HAWQ-V2 -----------------------------------------------------------------------------------
def _brute_frontier(
    report: SensitivityReport, bits: tuple[int, ...], sigma: float | None, kind: str = "trace"
) -> list[tuple[float, float]]:
    names = report.names
    below = (
        None
        if sigma is None
        else sensitivity_order(
            [layer.trace for layer in report],
            [layer.trace_stderr for layer in report],
            sigma=sigma,
        )
    )
    points = []
    for combo in itertools.product(range(len(bits)), repeat=len(names)):
        if below is not None and not is_monotone(combo, below):
            continue
        size = sum(bits[b] * report[n].n_params for n, b in zip(names, combo))
        omega = sum(report[n].omega(bits[b], kind=kind) for n, b in zip(names, combo))
        points.append((size, omega))
    return points


@pytest.mark.parametrize(("sigma", "kind"), [(None, "trace"), (2.0, "trace"), (2.0, "quadratic")])
def test_hawq_v2_selection_equals_brute_force(sigma: float | None, kind: str) -> None:
    report = make_report(5, seed=11)
    bits = (2, 4, 6, 8)
    points = _brute_frontier(report, bits, sigma, kind)
    sizes = sorted({size for size, _ in points})
    for budget in sizes[:: max(1, len(sizes) // 25)]:
        best = min(omega for size, omega in points if size <= budget)
        config = hawq_v2_select(report, budget, weight_bits=bits, order_sigma=sigma, omega=kind)
        omega = sum(report[n].omega(config[n].weight_bits, kind=kind) for n in report.names)
        size = sum(config[n].weight_bits * report[n].n_params for n in report.names)
        assert size <= budget
        assert omega == pytest.approx(best, rel=1e-9)
    frontier = hawq_v2_frontier(report, weight_bits=bits, order_sigma=sigma, omega=kind)
    brute = [
        (s, o)
        for s, o in points
        if not any((s2 <= s and o2 < o) or (s2 < s and o2 <= o) for s2, o2 in points)
    ]
    assert sorted({(p.size_bits, round(p.omega, 15)) for p in frontier}) == sorted(
        {(s, round(o, 15)) for s, o in brute}
    )
    with pytest.raises(ValueError, match="below the smallest config"):
        hawq_v2_select(report, 1.0, weight_bits=bits)


def test_milp_frontier_equals_enumeration() -> None:
    report = make_report(7, seed=12)
    space = MonotoneSearchSpace(report, weight_bits=(2, 3, 4, 8), act_bits=None)
    _, sizes, omegas = tables(report, space.layer_names, space.weight_bits, "trace")
    caps = space.weight_caps
    exact = pareto_monotone(sizes, omegas, caps, space.weight_below, method="enumerate")
    milp = pareto_monotone(sizes, omegas, caps, space.weight_below, method="milp")
    assert [p.size for p in milp] == [p.size for p in exact]
    assert [p.omega for p in milp] == pytest.approx([p.omega for p in exact], rel=1e-6)


def test_milp_solver_prints_nothing_to_stdout(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # HiGHS writes debugging lines from C++ straight to descriptor 1; a stand-in solver does
    # the same (os.write, not print) so the test does not depend on when HiGHS does it.
    import os

    import scipy.optimize

    real_milp = scipy.optimize.milp

    def noisy_milp(*args: object, **kwargs: object) -> object:
        os.write(1, b"HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();\n")
        return real_milp(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "milp", noisy_milp)
    report = make_report(5, seed=3)
    space = MonotoneSearchSpace(report, weight_bits=(2, 4, 8), act_bits=None)
    _, sizes, omegas = tables(report, space.layer_names, space.weight_bits, "trace")
    print("before", flush=True)
    milp = pareto_monotone(sizes, omegas, space.weight_caps, space.weight_below, method="milp")
    print("after")
    exact = pareto_monotone(
        sizes, omegas, space.weight_caps, space.weight_below, method="enumerate"
    )
    assert [p.size for p in milp] == [p.size for p in exact]
    out = capfd.readouterr().out
    assert "Highs" not in out
    assert out.splitlines() == ["before", "after"]


def test_hawq_v2_warm_starts_are_frontier_configs_in_the_space() -> None:
    from optuna_kmtpe.objectives import warm_start_configs

    report = make_report(6, seed=13)
    space = MonotoneSearchSpace(report, weight_bits=(2, 4, 8), act_bits=(4, 8))
    frontier = space.hawq_v2_frontier()
    assert all(order_holds(space, p.config) for p in frontier)
    warm = warm_start_configs(space, weight_bits=(2, 4, 8), act_bits=(4, 8), log=print)
    hawq = [config for label, config in warm if label.startswith("hawq-v2")]
    assert len(hawq) == 3
    frontier_bits = [{n: c.weight_bits for n, c in p.config.items()} for p in frontier]
    for config in hawq:
        assert {n: c.weight_bits for n, c in config.items()} in frontier_bits
        assert space.config_from_params(space.params_for(config)) == config  # enqueueable


def test_with_widths_each_prunable_layer_is_pruned_alone_instead_of_hawq_v2() -> None:
    from optuna_kmtpe.objectives import warm_start_configs

    report = make_report(4, seed=13)
    names = list(MonotoneSearchSpace(report, weight_bits=(4,)).layer_names)
    prunable = names[:3]
    space = MonotoneSearchSpace(
        report, weight_bits=(2, 4, 8), act_bits=(4, 8), widths=(0.5, 0.75, 1.0),
        prunable_layers=prunable,
    )  # fmt: skip
    warm = dict(warm_start_configs(space, weight_bits=(2, 4, 8), act_bits=(4, 8), log=print))
    assert not [label for label in warm if label.startswith("hawq-v2")]
    pruned = {label: c for label, c in warm.items() if label.startswith("pruned-")}
    assert list(pruned) == [f"pruned-{name}-w0.5" for name in prunable]
    for name, config in zip(prunable, pruned.values(), strict=True):
        assert {n: c.width for n, c in config.items()} == {
            n: 0.5 if n == name else 1.0 for n in names
        }
        assert {(c.weight_bits, c.act_bits) for c in config.values()} == {(4, 4)}
        assert space.config_from_params(space.params_for(config)) == config  # enqueueable
    # They take at most a tenth of the study's trials; beyond, the HAWQ-V2 selections.
    enough = warm_start_configs(space, weight_bits=(2, 4, 8), act_bits=(4, 8), n_trials=30)
    assert [label for label, _ in enough if label.startswith("pruned-")] == list(pruned)
    short = warm_start_configs(space, weight_bits=(2, 4, 8), act_bits=(4, 8), n_trials=29)
    assert [label for label, _ in short if label.startswith("hawq-v2")]
    assert not [label for label, _ in short if label.startswith("pruned-")]


@pytest.mark.parametrize("two_bit_drop, base", [(0.005, (2, 4)), (0.02, (4, 4))])
def test_with_a_forecast_the_pruned_warm_starts_sit_on_the_cheapest_safe_uniform_config(
    two_bit_drop: float, base: tuple[int, int]
) -> None:
    from types import SimpleNamespace

    from optuna_kmtpe.objectives import warm_start_configs

    report = make_report(4, seed=13)
    names = list(MonotoneSearchSpace(report, weight_bits=(4,)).layer_names)
    space = MonotoneSearchSpace(
        report, weight_bits=(2, 4, 8), act_bits=(4, 8), widths=(0.5, 1.0),
        prunable_layers=names[:2],
    )  # fmt: skip

    def accuracy(params: dict) -> list[float]:
        config = space.config_from_params(params)
        weight = min(c.weight_bits for c in config.values())
        act = min(c.act_bits for c in config.values())
        return [0.99 - {2: two_bit_drop, 4: 0.003, 8: 0.0}[weight] - {4: 0.002, 8: 0.0}[act]]

    # The exact costs grow with the bits; what warm starts read of KnownCosts and the predictor.
    energy = lambda config: sum(c.weight_bits + c.act_bits for c in config.values())  # noqa: E731
    forecast = {
        "known_objectives": SimpleNamespace(
            metrics=("accuracy", "energy_j"),
            cost_fn=lambda config: SimpleNamespace(metrics={"energy_j": energy(config)}),
        ),
        "predictor": SimpleNamespace(prior_mean=accuracy, prior_std=0.01),
        "reference_point": [0.9, 1000.0],
    }
    warm = warm_start_configs(
        space, weight_bits=(2, 4, 8), act_bits=(4, 8), n_trials=40, forecast=forecast
    )
    # A forecast drop within the prior's 1 point is no evidence: the cheapest such config is the
    # base of the uniform and the pruned warm starts (2 points down is not safe: 4-bit).
    assert [label for label, _ in warm][:2] == ["uniform-w8a8", f"uniform-w{base[0]}a{base[1]}"]
    pruned = [config for label, config in warm if label.startswith("pruned-")]
    assert len(pruned) == 2
    assert all(
        {(c.weight_bits, c.act_bits) for c in config.values()} == {base} for config in pruned
    )
    # Without a forecast, or on the HAWQ-V2 path, the base stays uniform 4-bit.
    plain = dict(warm_start_configs(space, weight_bits=(2, 4, 8), act_bits=(4, 8), n_trials=40))
    assert "uniform-w4a4" in plain
    hawq = dict(
        warm_start_configs(
            space, weight_bits=(2, 4, 8), act_bits=(4, 8), n_trials=10, forecast=forecast
        )
    )
    assert "uniform-w4a4" in hawq and not [label for label in hawq if "pruned" in label]


def test_paired_activation_bits_follow_weights_and_stay_in_the_space() -> None:
    # Without an activation order every layer gets exactly the smallest act choice >= its
    # weights; with one, the projection onto the order may move some layers, and the result is
    # always a config of the space.
    for activations in (False, True):
        report = make_report(6, seed=21, activations=activations)
        space = MonotoneSearchSpace(report, weight_bits=(2, 3, 4, 6, 8), act_bits=(4, 6, 8))
        for point in space.hawq_v2_frontier():
            paired = space.pair_activation_bits(point.config)
            space.params_for(paired)  # inside the space (raises otherwise)
            for name in space.layer_names:
                assert paired[name].weight_bits == point.config[name].weight_bits
                wanted = min(a for a in (4, 6, 8) if a >= paired[name].weight_bits)
                if not activations:
                    assert paired[name].act_bits == wanted
            if activations:
                levels = [(4, 6, 8).index(paired[n].act_bits) for n in space.layer_names]
                assert is_monotone(levels, space.act_below)
    fixed = MonotoneSearchSpace(make_report(3, seed=2), weight_bits=(2, 8), act_bits=None)
    config = QuantConfig.uniform(list(fixed.layer_names), weight_bits=2)
    assert fixed.pair_activation_bits(config) == config
    with pytest.raises(ValueError, match="not one of"):
        fixed.pair_activation_bits(QuantConfig.uniform(list(fixed.layer_names), weight_bits=5))


# Budgets on any cost (issue 14 item 11).


def _latency(config: QuantConfig) -> dict[str, float]:
    """A packing-like cost: per layer the wider operand (a step at 4 bits) times the width."""
    total = 0.0
    for name, layer in config.items():
        step = 1.0 if max(layer.weight_bits, layer.act_bits) <= 4 else 2.0
        total += step * layer.width * (1 + int(name[-1]))
    return {"latency_s": total}


def _budget_space(budget: float, *, sigma: float = 2.0) -> MonotoneSearchSpace:
    report = make_report(3, seed=5)
    return MonotoneSearchSpace(
        report,
        weight_bits=(2, 4, 8),
        act_bits=(4, 8),
        widths=(0.5, 1.0),
        prunable_layers=list(report.names),
        order_sigma=sigma,
        budgets={"latency_s": budget},
        cost_fn=_latency,
    )


def _every_config(space: MonotoneSearchSpace) -> list[QuantConfig]:
    choices = [(w, a, x) for w in space.weight_bits for a in space.act_bits for x in space.widths]
    return [
        QuantConfig(
            {
                n: LayerConfig(weight_bits=w, act_bits=a, width=x)
                for n, (w, a, x) in zip(space.layer_names, combo)
            }
        )
        for combo in itertools.product(choices, repeat=len(space.layer_names))
    ]


def test_a_latency_budget_prunes_choices_soundly_and_the_count_shows_it() -> None:
    free = _budget_space(1e9)
    tight = _budget_space(4.0)
    assert tight.size_after < free.size_after
    assert tight.weight_caps != free.weight_caps or tight.act_caps != free.act_caps
    assert "budgets: latency_s <= 4" in tight.describe()
    assert "size budget" not in tight.describe()
    assert "within the budgets" in tight.describe()
    # Sound: every config of the full space that fits the budget is still in the pruned space.
    for config in _every_config(free):
        if _latency(config)["latency_s"] <= 4.0 and order_holds(free, config):
            assert tight.config_from_params(tight.params_for(config)) == config
    with pytest.raises(ValueError, match="cheapest config"):
        _budget_space(1.0)
    with pytest.raises(ValueError, match="cost_fn"):
        MonotoneSearchSpace(make_report(2, seed=1), budgets={"latency_s": 1.0})


def test_nearest_feasible_moves_a_config_inside_the_budgets() -> None:
    space = _budget_space(4.0, sigma=0.0)
    for bits in (8, 4, 2):
        config = QuantConfig.uniform(list(space.layer_names), weight_bits=bits, act_bits=8)
        nearest = space.nearest_feasible(config)
        assert nearest is not None and space.fits_budget(nearest)
        space.params_for(nearest)  # inside the pruned space
        assert order_holds(space, nearest)
    inside = space.nearest_feasible(
        QuantConfig.uniform(list(space.layer_names), weight_bits=2, act_bits=4, width=0.5)
    )
    assert inside == QuantConfig.uniform(
        list(space.layer_names), weight_bits=2, act_bits=4, width=0.5
    )
