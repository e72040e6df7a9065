"""A metric measured by training (``val_loss``, or a new one) is an objective and a record.

Its path: the schema entry (``records.METRICS``, source TRAINING) and its measurement
(``quant.MEASURES``); ``quant.run_recipe`` measures it on the trial's model, the objective records
and returns it by name, and the forecast predicts it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import math
from types import SimpleNamespace
from typing import Any

import optuna
import pytest

from optuna_kmtpe import records
from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives import CostRecord
from optuna_kmtpe.objectives import EarlyStopRule
from optuna_kmtpe.objectives import MPQObjective
from optuna_kmtpe.objectives import sampler_forecast


LAYERS = ("a", "b")


class BitsSpace:
    """Two layers, weight bits from a categorical each (``<layer>`` parameters)."""

    layer_names = LAYERS
    weight_bits = (2, 4, 8)
    act_bits = (8,)
    default_act_bits = 8

    def suggest(self, trial: optuna.Trial) -> QuantConfig:
        return self.config_from_params(
            {name: trial.suggest_categorical(name, list(self.weight_bits)) for name in LAYERS}
        )

    def config_from_params(self, params: dict[str, Any]) -> QuantConfig:
        return QuantConfig({n: LayerConfig(weight_bits=params[n], act_bits=8) for n in LAYERS})


def costs(config: QuantConfig) -> CostRecord:
    bits = sum(config[name].weight_bits for name in LAYERS)
    return CostRecord(metrics={"latency_s": bits * 1e-6, "energy_j": bits * 1e-7})


def measured_from_bits(config: QuantConfig, report_epoch: Callable[[int, float], None]) -> dict:
    bits = sum(config[name].weight_bits for name in LAYERS)
    for epoch in range(3):
        report_epoch(epoch, 0.5)
    return {records.ACCURACY: 0.5 + 0.03 * bits, records.VAL_LOSS: 2.0 / bits}


def quiet_study(**kwargs: Any) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), **kwargs)


def test_every_training_metric_of_the_schema_is_measurable() -> None:
    from optuna_kmtpe import quant

    training = {n for n, m in records.METRICS.items() if m.source == records.TRAINING}
    assert {records.ACCURACY, records.VAL_LOSS} <= training <= set(quant.MEASURES)


def test_a_training_objective_is_returned_and_recorded_by_name() -> None:
    objective = MPQObjective(
        space=BitsSpace(),
        cost_fn=costs,
        accuracy_fn=measured_from_bits,
        metrics=(records.VAL_LOSS, records.LATENCY_S),
        budgets={records.LATENCY_S: 10e-6},
    )
    assert objective.directions == ["minimize", "minimize"]
    study = quiet_study(directions=objective.directions)
    study.enqueue_trial({"a": 4, "b": 4})
    study.enqueue_trial({"a": 8, "b": 8})  # 16 us > 10 us: infeasible, never trained
    study.optimize(objective, n_trials=2)
    trained, skipped = study.trials
    assert trained.values == pytest.approx([0.25, 8e-6])
    assert trained.user_attrs[records.VAL_LOSS] == pytest.approx(0.25)
    assert trained.user_attrs[records.ACCURACY] == pytest.approx(0.74)  # always recorded
    # Only the accuracy is seen each epoch: a val_loss study is neither reported nor pruned.
    assert trained.intermediate_values == {}
    assert skipped.values[0] == math.inf and skipped.user_attrs[records.VAL_LOSS] == math.inf
    assert skipped.user_attrs[records.ACCURACY] == 0.0


def test_a_missing_training_metric_fails_the_trial_with_its_name() -> None:
    objective = MPQObjective(
        space=BitsSpace(),
        cost_fn=costs,
        accuracy_fn=lambda config, report: 0.9,  # the accuracy alone
        metrics=(records.ACCURACY, records.VAL_LOSS),
    )
    study = quiet_study(directions=objective.directions)
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert "measured no 'val_loss'" in study.trials[0].user_attrs[records.FAIL_REASON]


def test_no_early_stop_on_accuracy_when_another_training_metric_is_an_objective() -> None:
    objective = MPQObjective(
        space=BitsSpace(),
        cost_fn=costs,
        accuracy_fn=measured_from_bits,
        metrics=(records.ACCURACY, records.VAL_LOSS, records.LATENCY_S),
        early_stop=EarlyStopRule(margin=0.0, min_epochs=1),
    )
    study = quiet_study(directions=objective.directions)
    study.enqueue_trial({"a": 2, "b": 2})  # cheapest; every later epoch reports 0.5 < 0.62
    study.enqueue_trial({"a": 4, "b": 4})
    study.optimize(objective, n_trials=2)
    assert not any(t.user_attrs.get(records.STOPPED_EARLY) for t in study.trials)
    assert study.trials[1].values == pytest.approx([0.74, 0.25, 8e-6])


class _Report(list):
    """A sensitivity report of two layers: only layer ``a``'s 2-bit weights cost loss."""

    def __init__(self) -> None:
        super().__init__(
            SimpleNamespace(name=n, quadratic={2: 0.3 if n == "a" else 0.0}, act_quadratic={},
                            width_quadratic={})
            for n in LAYERS
        )  # fmt: skip


def test_the_forecast_predicts_every_training_objective_from_the_hessian() -> None:
    import torch
    from torch import nn

    from optuna_kmtpe import quant

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    base = quant.measure(model, data, [records.ACCURACY, records.VAL_LOSS])
    objective = MPQObjective(
        space=BitsSpace(),
        cost_fn=costs,
        accuracy_fn=measured_from_bits,
        metrics=(records.ACCURACY, records.VAL_LOSS, records.LATENCY_S),
    )
    forecast = sampler_forecast(objective, report=_Report(), model=model, val_loader=data)
    assert forecast is not None
    prior = forecast["predictor"].prior_mean
    accuracy, loss = prior({"a": 2, "b": 8})  # loss increase 0.3
    assert accuracy == pytest.approx(max(0.0, base[records.ACCURACY] - 0.3))
    assert loss == pytest.approx(base[records.VAL_LOSS] + 0.3)
    assert prior({"a": 8, "b": 8}) == pytest.approx(
        [base[records.ACCURACY], base[records.VAL_LOSS]]
    )
    # Known costs stay exact; the region of interest bounds each training metric.
    assert forecast["known_objectives"]({"a": 2, "b": 8}) == [None, None, pytest.approx(10e-6)]
    assert forecast["reference_point"] == pytest.approx(
        [base[records.ACCURACY] - 0.05, base[records.VAL_LOSS] + 0.05, 16e-6]
    )
    # Accuracy is credited at most one validation draw's luck (16 examples) past the best
    # measured value; the loss and the exact cost are not limited.
    p = base[records.ACCURACY]
    upside, loss_upside, cost_upside = forecast["upside_limit"]
    assert upside == pytest.approx(max((p * (1 - p) / 16) ** 0.5, 1 / 16))
    assert loss_upside is None and cost_upside is None


class WidthBitsSpace(BitsSpace):
    """:class:`BitsSpace` over the digits CNN's layers, whose convs may be pruned."""

    layer_names = ("features.0", "features.3", "features.7", "classifier")
    widths = (0.5, 0.75, 1.0)
    prunable = frozenset({"features.0", "features.3"})

    def config_from_params(self, params: dict[str, Any]) -> QuantConfig:
        return QuantConfig(
            {
                n: LayerConfig(weight_bits=8, act_bits=8, width=params.get(f"{n}.width", 1.0))
                for n in self.layer_names
            }
        )


def test_the_forecast_measures_what_pruning_each_layer_alone_costs() -> None:
    import torch

    from optuna_kmtpe import quant
    from optuna_kmtpe.data import load_digits
    from optuna_kmtpe.data import make_loader
    from optuna_kmtpe.models import DigitsCNN
    from optuna_kmtpe.objectives import measured_pruning_changes
    from optuna_kmtpe.workflow import SearchSettings
    from optuna_kmtpe.workflow import forecast_for

    torch.manual_seed(0)
    splits = load_digits(seed=0)
    model = DigitsCNN()
    train = list(make_loader(splits.train, batch_size=64, shuffle=True))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):  # a float model that classifies, so pruning it costs accuracy
        for x, y in train:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    val = list(make_loader(splits.val, batch_size=256))
    space = WidthBitsSpace()
    objective = MPQObjective(
        space=space,
        cost_fn=lambda config: CostRecord(metrics={"latency_s": 1e-6}),
        accuracy_fn=lambda config, report: 0.9,
        metrics=(records.ACCURACY, records.LATENCY_S),
    )
    example = val[0][0][:2]
    report = _Report()
    forecast = sampler_forecast(
        objective,
        report=report,
        model=model,
        val_loader=val,
        calibration_loader=train,
        example_input=example,
    )
    assert forecast is not None
    prior = forecast["predictor"].prior_mean
    base = quant.measure(model, val, [records.ACCURACY])[records.ACCURACY]
    assert prior({}) == pytest.approx([base])
    # Each pruned layer's measured change: a direct PTQ of the same configs agrees.
    full = QuantConfig.uniform(list(space.layer_names), weight_bits=8, act_bits=8)

    def ptq_accuracy(config: QuantConfig) -> float:
        qmodel = quant.ptq(model, config, train[:4], example_input=example, num_batches=4)
        return quant.measure(qmodel, val, [records.ACCURACY])[records.ACCURACY]

    halved = ptq_accuracy(full.replace("features.0", width=0.5)) - ptq_accuracy(full)
    assert halved < -0.01  # halving the first conv of a trained CNN costs accuracy
    assert prior({"features.0.width": 0.5}) == pytest.approx([base + halved])
    both = measured_pruning_changes(
        model, full, {"features.0": [0.5, 1.0], "features.3": [0.75]},
        calibration_loader=train, val_loader=val, metrics=[records.ACCURACY],
        example_input=example,
    )[records.ACCURACY]  # fmt: skip
    assert both["features.0"] == {0.5: pytest.approx(halved)}  # width 1.0 is no change
    assert prior({"features.0.width": 0.5, "features.3.width": 0.75}) == pytest.approx(
        [base + halved + both["features.3"][0.75]]
    )
    # The float model is never changed; without the calibration data widths get no prior.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    plain = sampler_forecast(objective, report=report, model=model, val_loader=val)
    assert plain is not None
    assert plain["predictor"].prior_mean({"features.0.width": 0.5}) == pytest.approx([base])
    # `kmtpe search` measures it by default; --no-pruning-prior (pruning_prior=False) does not.
    job = SimpleNamespace(
        report=report, model=model, val_loader=val, train_loader=train, example_input=example,
        graph=None,
    )  # fmt: skip
    for enabled, expected in ((True, base + halved), (False, base)):
        options = forecast_for(SearchSettings(pruning_prior=enabled), objective, job)
        assert options is not None
        assert options["predictor"].prior_mean({"features.0.width": 0.5}) == pytest.approx(
            [expected]
        )
    # The region of interest (--accuracy-window) sets the reference point's accuracy.
    accuracy_at = objective.metrics.index(records.ACCURACY)
    for window in (0.05, 0.2):
        options = forecast_for(SearchSettings(accuracy_window=window), objective, job)
        assert options is not None
        assert options["reference_point"][accuracy_at] == pytest.approx(base - window)


def _tiny_job() -> dict[str, Any]:
    import torch
    from torch import nn

    from optuna_kmtpe import hardware
    from optuna_kmtpe.data import load_digits
    from optuna_kmtpe.data import make_loader
    from optuna_kmtpe.quant import TrainingRecipe
    from optuna_kmtpe.quant import train_float

    splits = load_digits()
    torch.manual_seed(0)
    train = make_loader(splits.train, batch_size=64, shuffle=True, seed=0)
    val = make_loader(splits.val, batch_size=256)
    model = train_float(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), train, epochs=5,
                        progress=False)  # fmt: skip
    return {
        "model": model,
        "train_loader": train,
        "val_loader": val,
        "space": _OneLayerSpace(),
        "fpga": hardware.FPGAModel(),
        "example_input": next(iter(val))[0][:2],
        "recipe": TrainingRecipe(epochs=1, calibration_batches=1),
    }


class _OneLayerSpace:
    def suggest(self, trial: optuna.Trial) -> QuantConfig:
        bits = trial.suggest_categorical("bits", [2, 8])
        return QuantConfig({"1": LayerConfig(weight_bits=bits, act_bits=8)})


def test_val_loss_of_a_short_study_is_the_recipes_loss_of_the_trial_model() -> None:
    from optuna_kmtpe import quant
    from optuna_kmtpe.dashboard import pareto_front_figure
    from optuna_kmtpe.dashboard import trial_points
    from optuna_kmtpe.objectives import make_objective
    from optuna_kmtpe.workflow import format_pareto_table
    from optuna_kmtpe.workflow import pareto_rows

    job = _tiny_job()
    metrics = (records.ACCURACY, records.VAL_LOSS, records.LATENCY_S)
    objective = make_objective(**job, metrics=metrics)
    study = quiet_study(directions=objective.directions)
    records.save_study_metrics(study, metrics, quality=records.METRICS[records.ACCURACY])
    study.enqueue_trial({"bits": 2})
    study.enqueue_trial({"bits": 8})
    study.optimize(objective, n_trials=2)
    low, high = study.trials
    for trial in (low, high):
        assert trial.values[1] == trial.user_attrs[records.VAL_LOSS] > 0
    assert low.values[1] > high.values[1]  # 2-bit weights lose more than 8-bit ones

    # The value is the recipe's loss of the very model the trial scored.
    config = QuantConfig.from_dict(high.user_attrs[records.CONFIG])
    result = quant.run_recipe(
        job["model"], config, job["recipe"], train_loader=job["train_loader"],
        val_loader=job["val_loader"], example_input=job["example_input"],
        extra_metrics=[records.VAL_LOSS],
    )  # fmt: skip
    criterion = quant.make_criterion(job["recipe"].loss)
    expected = quant.evaluate(result.model, job["val_loader"], metric=criterion)
    assert result.metrics == pytest.approx(
        {records.ACCURACY: high.values[0], records.VAL_LOSS: high.values[1]}
    )
    assert high.values[1] == pytest.approx(expected)

    # The Pareto table, the trial points and the dashboard axis show it through the schema.
    header = format_pareto_table(pareto_rows(study)).splitlines()[0].split()
    assert header[:3] == ["trial", "accuracy", "val_loss"]
    (point, *_) = [p for p in trial_points(study) if p.number == high.number]
    assert point.metrics[records.VAL_LOSS] == high.values[1]
    fig = pareto_front_figure(trial_points(study), x=records.VAL_LOSS, y="accuracy", color=None)
    assert fig.layout.xaxis.title.text == "val_loss"


def _search_help() -> str:
    from optuna_kmtpe.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["search"].format_help()


def test_a_new_training_metric_is_its_schema_entry_and_its_measurement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from optuna_kmtpe import quant
    from optuna_kmtpe.objectives import make_objective

    def top2(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return float((outputs.topk(2).indices == targets[:, None]).any(dim=1).float().mean())

    # The two places a new training metric touches: its schema entry and its measurement.
    top2_metric = records.Metric("top2_accuracy", "maximize", "%", "top-2 accuracy")
    monkeypatch.setitem(records.METRICS, "top2_accuracy", top2_metric)
    monkeypatch.setitem(
        quant.MEASURES, "top2_accuracy", lambda model, loader, loss: quant.evaluate(
            model, loader, metric=top2)
    )  # fmt: skip

    assert "top2_accuracy" in _search_help()  # offered as an objective
    objective = make_objective(**_tiny_job(), metrics=("top2_accuracy", records.LATENCY_S))
    assert objective.directions == ["maximize", "minimize"]
    study = quiet_study(directions=objective.directions)
    study.enqueue_trial({"bits": 8})
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.values[0] == trial.user_attrs["top2_accuracy"]
    assert trial.user_attrs[records.ACCURACY] <= trial.values[0] <= 1.0  # top-2 >= top-1
