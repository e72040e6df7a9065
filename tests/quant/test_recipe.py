"""quant.run_recipe: the one definition of a trial's model (QAT, PTQ, early stop, options)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.data import load_digits
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.quant import TrainingRecipe
from optuna_kmtpe.quant import ptq
from optuna_kmtpe.quant import quantizable_layers
from optuna_kmtpe.quant import run_recipe


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, QuantConfig, object, object]:
    splits = load_digits()
    torch.manual_seed(0)
    model = DigitsCNN()
    config = QuantConfig.uniform(list(quantizable_layers(model)), weight_bits=3, act_bits=4)
    train = make_loader(splits.train, batch_size=128, shuffle=True, seed=0)
    val = make_loader(splits.val, batch_size=512)
    return model, config, train, val


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_ptq_mode_is_quant_ptq_with_batchnorm_re_estimation(digits) -> None:
    model, config, train, val = digits
    result = run_recipe(model, config, TrainingRecipe(mode="ptq"), train_loader=train,
                        val_loader=val)  # fmt: skip
    train.generator.manual_seed(0)  # the runner rewinds the seeded loader: do the same
    expected = ptq(model, config, train, num_batches=4)
    assert _same_state(result.model, expected)
    norm = result.model.features[1]
    assert not torch.equal(norm.running_mean, model.features[1].running_mean)  # re-estimated
    assert result.epoch_scores == () and not result.stopped_early


def test_a_replayed_early_stop_gives_the_same_model(digits) -> None:
    model, config, train, val = digits
    recipe = TrainingRecipe(epochs=3, calibration_batches=2)
    seen: list[int] = []

    def stop_at_second(epoch: int, value: float) -> bool:
        seen.append(epoch)
        return epoch == 1

    stopped = run_recipe(model, config, recipe, train_loader=train, val_loader=val,
                         on_epoch=stop_at_second)  # fmt: skip
    assert seen == [0, 1] and stopped.stopped_early and len(stopped.epoch_scores) == 2
    replayed = run_recipe(model, config, recipe, train_loader=train, val_loader=val,
                          stop_after_epoch=1)  # fmt: skip
    assert replayed.stopped_early and replayed.score == stopped.score
    assert _same_state(stopped.model, replayed.model)
    full = run_recipe(model, config, recipe, train_loader=train, val_loader=val)
    assert not full.stopped_early and len(full.epoch_scores) == 3
    assert full.epoch_scores[:2] == stopped.epoch_scores
    assert not _same_state(full.model, stopped.model)


def test_the_returned_model_is_the_scored_model(digits) -> None:
    model, config, train, val = digits
    scores: list[float] = []
    result = run_recipe(
        model,
        config,
        TrainingRecipe(epochs=1, calibration_batches=2),
        train_loader=train,
        val_loader=val,
        score=lambda m, loader: scores.append(0.0) or float(len(scores)),
    )
    assert result.score == 1.0 and result.epoch_scores == (1.0,)
    assert not result.model.training


@pytest.mark.parametrize("mode", ["qat", "ptq"])
def test_every_quantizer_option_reaches_the_layers(digits, mode: str) -> None:
    model, config, train, val = digits
    recipe = TrainingRecipe(
        mode=mode,
        epochs=1,
        calibration_batches=1,
        quantizer="power_of_two",
        rounding="stochastic",
        range_method="max",
        symmetric_weights=False,
        symmetric_acts=True,
    )
    qmodel = run_recipe(model, config, recipe, train_loader=train, val_loader=val).model
    layer = qmodel.features[0]
    assert layer.quant_spec.power_of_two and layer.input_quantizer.quant_spec.power_of_two
    assert (layer.quant_spec.rounding, layer.quant_spec.range_method) == ("stochastic", "max")
    assert layer.quant_spec.symmetric_weights is False and layer.quant_spec.symmetric_acts is True


@pytest.mark.parametrize(
    "field, value",
    [("mode", "fp8"), ("rounding", "up"), ("range_method", "percentile"), ("loss", "l1")],
)
def test_recipe_rejects_unknown_choices(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"TrainingRecipe.{field} must be one of"):
        TrainingRecipe(**{field: value})
