"""The training losses by name: one definition for float training, QAT and the Hessian.

A search trains its float model, fine-tunes every trial and estimates Hessian traces with the
same loss, so all three take it from :data:`LOSSES` by the name the settings store.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping

import torch
from torch import nn

from optuna_kmtpe.config import LOSS_NAMES


class IndexCrossEntropyLoss(nn.CrossEntropyLoss):
    """Cross-entropy of logits against class indices, refusing float targets in one line.

    Plain cross-entropy reads float targets as class probabilities, so a regression target of
    shape ``(batch,)`` fails deep inside torch with a shape error; this says what to do.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        if target.is_floating_point():
            raise ValueError(
                "The cross_entropy loss needs integer class indices as targets, got "
                f"{target.dtype} targets; for regression targets use loss='mse' (--loss mse)."
            )
        return super().forward(input, target)


class TargetMSELoss(nn.MSELoss):
    """Mean squared error of outputs ``(batch, d)`` against targets ``(batch, d)`` or, for one
    output, ``(batch,)`` (reshaped to ``(batch, 1)`` instead of broadcast to ``(batch, batch)``).
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        if target.dim() == 1:
            target = target.unsqueeze(1)
        if target.shape != input.shape:
            raise ValueError(
                f"The mse loss needs outputs and targets of one shape, got outputs of shape "
                f"{tuple(input.shape)} and targets of shape {tuple(target.shape)}."
            )
        return super().forward(input, target.to(input.dtype))


LOSSES: Mapping[str, Callable[[], nn.Module]] = {
    "cross_entropy": IndexCrossEntropyLoss,
    "mse": TargetMSELoss,
}
"""Loss name -> criterion factory (mean reduction): ``cross_entropy`` for class-index labels
(classification, the default), ``mse`` for float targets (regression). Its keys are
:data:`optuna_kmtpe.config.LOSS_NAMES`, which settings validate against without torch."""


def make_criterion(name: str) -> nn.Module:
    """The criterion of the loss ``name`` (a key of :data:`LOSSES`).

    Raises:
        ValueError: An unknown name, listing the known ones.

    Example:
        >>> import torch
        >>> criterion = make_criterion("mse")
        >>> float(criterion(torch.zeros(4, 1), torch.ones(4)))
        1.0
    """
    if not isinstance(name, str) or name not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {list(LOSS_NAMES)}, got {name!r}.")
    return LOSSES[name]()
