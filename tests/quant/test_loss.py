"""The training losses: cross-entropy for class indices, MSE for regression targets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optuna_kmtpe import quant


def _regression_batches(n_batches: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    weights = torch.tensor([1.5, -2.0, 0.5, 1.0])
    batches = []
    for _ in range(n_batches):
        x = torch.randn(32, 4, generator=generator)
        batches.append((x, x @ weights))  # 1-D float targets, as a regression dataset has
    return batches


def _mse(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    criterion = quant.make_criterion("mse")
    with torch.no_grad():
        return sum(float(criterion(model(x), y)) for x, y in batches) / len(batches)


def test_cross_entropy_rejects_float_labels_with_a_clear_error() -> None:
    model = nn.Linear(4, 1)
    with pytest.raises(ValueError, match=r"integer class indices.*loss='mse'"):
        quant.train_float(model, _regression_batches(), epochs=1, progress=False)


def test_mse_trains_and_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    batches = _regression_batches()
    before = _mse(model, batches)
    trained = quant.train_float(
        model, batches, epochs=5, lr=0.01, weight_decay=0.0, loss="mse", progress=False
    )
    assert _mse(trained, batches) < 0.25 * before
    assert _mse(model, batches) == before  # the caller's model never changes


def test_qat_finetune_takes_the_loss() -> None:
    from optuna_kmtpe.config import QuantConfig

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    batches = _regression_batches()
    qmodel = quant.apply_config(model, QuantConfig.uniform(["0", "2"], weight_bits=8))
    quant.calibrate(qmodel, batches, num_batches=2)
    before = _mse(qmodel, batches)
    tuned = quant.qat_finetune(qmodel, batches, epochs=3, lr=0.01, loss="mse", progress=False)
    assert _mse(tuned, batches) < before


def test_mse_reshapes_one_dimensional_targets_and_refuses_other_shapes() -> None:
    criterion = quant.make_criterion("mse")
    assert float(criterion(torch.zeros(3, 1), torch.full((3,), 2.0))) == 4.0
    with pytest.raises(ValueError, match=r"outputs of shape \(3, 2\) and targets of shape"):
        criterion(torch.zeros(3, 2), torch.zeros(3))


def test_unknown_loss_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"loss must be one of \['cross_entropy', 'mse'\]"):
        quant.make_criterion("l1")
    with pytest.raises(ValueError, match="loss must be one of"):
        quant.train_float(nn.Linear(4, 1), _regression_batches(), loss="l1", progress=False)


def test_the_torch_free_names_are_the_criteria_names() -> None:
    from optuna_kmtpe.config import DEFAULT_LOSS
    from optuna_kmtpe.config import LOSS_NAMES

    assert tuple(quant.LOSSES) == LOSS_NAMES
    assert DEFAULT_LOSS in LOSS_NAMES
