"""Device selection and batch unpacking shared by the loops."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else the CPU; anything else is passed to torch."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(inputs, targets)`` from a ``(x, y, ...)`` sequence, or ``(x, None)`` from a tensor."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        target = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        return batch[0], target
    raise ValueError(
        "Loader batches must be tensors or (inputs, targets) pairs of tensors, got "
        f"{type(batch).__name__}."
    )


def batches_on(loader: Iterable[Any], device: torch.device) -> Iterator[torch.Tensor]:
    """The inputs of each batch, moved to ``device``."""
    for batch in loader:
        inputs, _ = split_batch(batch)
        yield inputs.to(device)
