from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import TrialState
import pytest

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives import CostRecord
from optuna_kmtpe.objectives import EarlyStopRule
from optuna_kmtpe.objectives import MPQObjective
from optuna_kmtpe.objectives import ScalarizedObjective
from optuna_kmtpe.objectives import records


LAYERS = ("a", "b")


class BitsSpace:
    """Two layers, weight bits from a categorical each."""

    def suggest(self, trial: optuna.Trial) -> QuantConfig:
        return QuantConfig(
            {
                name: {"weight_bits": trial.suggest_categorical(name, [2, 4, 8]), "act_bits": 8}
                for name in LAYERS
            }
        )


def costs(config: QuantConfig) -> CostRecord:
    bits = sum(config[name].weight_bits for name in LAYERS)
    return CostRecord(
        metrics={"latency_s": bits * 1e-6, "energy_j": bits * 1e-7, "size_bits": bits * 100},
        layer_latency_s={name: config[name].weight_bits * 1e-6 for name in LAYERS},
        layer_energy_j={name: config[name].weight_bits * 1e-7 for name in LAYERS},
    )


def accuracy_from_bits(calls: list[QuantConfig]) -> Callable[..., float]:
    def accuracy(config: QuantConfig, report_epoch: Callable[[int, float], None]) -> float:
        calls.append(config)
        acc = 0.5 + 0.03 * sum(config[name].weight_bits for name in LAYERS)
        for epoch in range(3):
            report_epoch(epoch, acc - 0.01 * (2 - epoch))
        return acc

    return accuracy


def quiet_study(**kwargs: object) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), **kwargs)


def test_directions_metric_names_and_records() -> None:
    calls: list[QuantConfig] = []
    objective = MPQObjective(
        space=BitsSpace(), cost_fn=costs, accuracy_fn=accuracy_from_bits(calls)
    )
    assert objective.directions == ["maximize", "minimize", "minimize"]
    assert objective.metric_names == ["accuracy", "latency_s", "energy_j"]
    study = quiet_study(directions=objective.directions)
    study.enqueue_trial({"a": 8, "b": 4})
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.values == pytest.approx([0.86, 12e-6, 12e-7])
    attrs = trial.user_attrs
    assert attrs[records.CONFIG]["a"]["weight_bits"] == 8
    assert attrs["size_bits"] == 1200 and attrs[records.FEASIBLE] is True
    assert attrs[records.LAYER_LATENCY_S] == {"a": 8e-6, "b": 4e-6}
    assert attrs[records.EPOCH_ACCURACY + "2"] == pytest.approx(0.86)
    assert attrs[records.TRAIN_TIME_S] >= 0


def test_budget_violation_is_a_constraint_and_skips_training() -> None:
    calls: list[QuantConfig] = []
    objective = MPQObjective(
        space=BitsSpace(),
        cost_fn=costs,
        accuracy_fn=accuracy_from_bits(calls),
        budgets={"latency_s": 10e-6},
    )
    study = quiet_study(directions=objective.directions)
    study.enqueue_trial({"a": 8, "b": 8})  # 16 us > 10 us
    study.enqueue_trial({"a": 4, "b": 4})  # 8 us, feasible
    study.optimize(objective, n_trials=2)
    over, ok = study.trials
    assert over.user_attrs[records.CONSTRAINTS] == {"latency_s": pytest.approx(0.6)}
    assert list(over.constraints.values()) == [pytest.approx(0.6)]  # counted once
    assert over.user_attrs[records.SKIPPED_TRAINING] is True
    assert over.values[0] == 0.0
    assert ok.user_attrs[records.CONSTRAINTS]["latency_s"] < 0
    assert calls == [QuantConfig({n: {"weight_bits": 4, "act_bits": 8} for n in LAYERS})]
    assert [t.number for t in study.best_trials] == [1]


def test_failing_trial_fails_alone_with_reason() -> None:
    def flaky(config: QuantConfig, report_epoch: Callable[[int, float], None]) -> float:
        if config["a"].weight_bits == 2:
            raise RuntimeError("loss is NaN")
        return 0.9

    objective = MPQObjective(space=BitsSpace(), cost_fn=costs, accuracy_fn=flaky)
    study = quiet_study(directions=objective.directions)
    study.enqueue_trial({"a": 2, "b": 4})
    study.enqueue_trial({"a": 4, "b": 4})
    study.optimize(objective, n_trials=2)
    failed, done = study.trials
    assert failed.state == TrialState.FAIL
    assert "RuntimeError: loss is NaN" in failed.user_attrs[records.FAIL_REASON]
    assert done.state == TrialState.COMPLETE


def test_nan_accuracy_fails_the_trial() -> None:
    objective = MPQObjective(
        space=BitsSpace(), cost_fn=costs, accuracy_fn=lambda c, r: float("nan")
    )
    study = quiet_study(directions=objective.directions)
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == TrialState.FAIL
    assert "diverged" in study.trials[0].user_attrs[records.FAIL_REASON]


def test_single_objective_reports_epochs_and_can_be_pruned() -> None:
    class PruneAll(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return trial.last_step is not None and trial.last_step >= 1

    calls: list[QuantConfig] = []
    objective = MPQObjective(
        space=BitsSpace(), cost_fn=costs, accuracy_fn=accuracy_from_bits(calls),
        metrics=["accuracy"],
    )  # fmt: skip
    study = quiet_study(direction="maximize", pruner=PruneAll())
    study.optimize(objective, n_trials=2)
    assert all(t.state == TrialState.PRUNED for t in study.trials)
    assert study.trials[0].intermediate_values.keys() == {0, 1}


def test_multi_objective_early_stop_of_dominated_runs() -> None:
    seen: list[int] = []

    def slow_to_learn(config: QuantConfig, report_epoch: Callable[[int, float], None]) -> float:
        final = 0.95 if config["a"].weight_bits == 2 else 0.5
        for epoch in range(5):
            seen.append(epoch)
            report_epoch(epoch, final)
        return final

    objective = MPQObjective(
        space=BitsSpace(), cost_fn=costs, accuracy_fn=slow_to_learn,
        early_stop=EarlyStopRule(margin=0.1, min_epochs=2),
    )  # fmt: skip
    study = quiet_study(directions=objective.directions)
    study.enqueue_trial({"a": 2, "b": 2})  # cheap and accurate: dominates everything after
    study.enqueue_trial({"a": 8, "b": 8})  # costlier, and 0.45 behind: hopeless
    study.optimize(objective, n_trials=2)
    assert seen == [0, 1, 2, 3, 4, 0, 1]
    late = study.trials[1]
    assert late.user_attrs[records.STOPPED_EARLY] is True
    assert late.values[0] == 0.5


def test_scalarized_objective() -> None:
    base = MPQObjective(
        space=BitsSpace(), cost_fn=costs, accuracy_fn=lambda c, r: 0.9, metrics=["accuracy"]
    )
    objective = ScalarizedObjective(
        base, weights={"latency_s": 0.1}, reference={"latency_s": 16e-6}
    )
    study = quiet_study(direction="maximize")
    study.enqueue_trial({"a": 4, "b": 4})
    study.optimize(objective, n_trials=1)
    assert study.trials[0].value == pytest.approx(0.9 - 0.1 * 0.5)
    with pytest.raises(ValueError, match="metrics=\\('accuracy',\\)"):
        ScalarizedObjective(
            MPQObjective(space=BitsSpace(), cost_fn=costs, accuracy_fn=lambda c, r: 0.9),
            weights={},
            reference={},
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metrics": ["accuracy", "speed"]}, "Unknown metric"),
        ({"metrics": []}, "at least one"),
        ({"metrics": ["accuracy", "accuracy"]}, "must not repeat"),
        ({"budgets": {"accuracy": 0.9}}, "not a cost metric"),
        ({"budgets": {"latency_s": -1.0}}, "positive"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MPQObjective(space=BitsSpace(), cost_fn=costs, accuracy_fn=lambda c, r: 0.9, **kwargs)


def test_duplicate_config_reuses_results_without_training() -> None:
    calls: list[QuantConfig] = []
    objective = MPQObjective(
        space=BitsSpace(),
        cost_fn=costs,
        accuracy_fn=accuracy_from_bits(calls),
        budgets={"latency_s": 10e-6},
    )
    study = quiet_study(directions=objective.directions)
    for params in ({"a": 4, "b": 4}, {"a": 4, "b": 4}, {"a": 8, "b": 8}, {"a": 8, "b": 8}):
        study.enqueue_trial(params)
    study.optimize(objective, n_trials=4)
    first, again, over, over_again = study.trials
    assert len(calls) == 1
    assert again.values == first.values and again.user_attrs[records.DUPLICATE_OF] == 0
    assert over_again.user_attrs[records.DUPLICATE_OF] == 2
    assert list(over_again.constraints.values()) == list(over.constraints.values())
    assert [t.number for t in study.best_trials] == [0, 1]


def test_seeded_loader_rewound_so_accuracy_depends_on_config_only() -> None:
    import torch
    from torch import nn

    from optuna_kmtpe.data import load_digits
    from optuna_kmtpe.data import make_loader
    from optuna_kmtpe.objectives import TrainingRecipe
    from optuna_kmtpe.objectives import quantized_accuracy_fn

    splits = load_digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    train = make_loader(splits.train, batch_size=64, shuffle=True, seed=3)
    val = make_loader(splits.val, batch_size=256)
    accuracy = quantized_accuracy_fn(model, train, val, recipe=TrainingRecipe(epochs=1))
    config = QuantConfig({"1": {"weight_bits": 3, "act_bits": 4}})
    first = accuracy(config, lambda epoch, value: None)
    assert accuracy(config, lambda epoch, value: None) == first


def test_prebuilt_shapes_and_graph_are_used_by_every_trial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A search traces its model once (prepare_job); the objective and apply_config reuse it.
    import torch

    from optuna_kmtpe import hardware
    from optuna_kmtpe.data import load_digits
    from optuna_kmtpe.data import make_loader
    from optuna_kmtpe.graph import channel_graph
    from optuna_kmtpe.models import MLP
    from optuna_kmtpe.objectives import TrainingRecipe
    from optuna_kmtpe.objectives import make_objective

    splits = load_digits()
    torch.manual_seed(0)
    model = MLP()
    example = splits.val.tensors[0][:2]
    graph = channel_graph(model, example)
    shapes = hardware.trace_layer_shapes(model, example)

    class HalfWidth:
        def suggest(self, trial: optuna.Trial) -> QuantConfig:
            width = trial.suggest_categorical("width", [0.5])
            return QuantConfig({"net.1": {"weight_bits": 4, "act_bits": 8, "width": width}})

    def no_trace(*args: object) -> None:
        raise AssertionError("traced again")

    monkeypatch.setattr("optuna_kmtpe.quant._apply.channel_graph", no_trace)
    monkeypatch.setattr(hardware, "trace_layer_shapes", no_trace)
    objective = make_objective(
        model=model,
        train_loader=make_loader(splits.train, batch_size=64, shuffle=True, seed=3),
        val_loader=make_loader(splits.val, batch_size=256),
        space=HalfWidth(),
        fpga=hardware.FPGAModel(),
        example_input=example,
        shapes=shapes,
        graph=graph,
        recipe=TrainingRecipe(epochs=1),
    )
    study = quiet_study(directions=objective.directions)
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE
