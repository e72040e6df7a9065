from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import TensorDataset


class DatasetSplits(NamedTuple):
    """Train, validation and test splits of one dataset, plus its shape facts.

    ``train`` trains (float pre-training and QAT), ``val`` scores Optuna trials, ``test`` is held
    out for final reporting only.
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    input_shape: tuple[int, ...]
    num_classes: int
    name: str


def load_digits(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.2
) -> DatasetSplits:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes) as tensors of shape (N, 1, 8, 8).

    The data ships inside scikit-learn: nothing is downloaded. Pixel values are scaled to
    [0, 1]. The split is stratified and fixed by ``seed``.

    Args:
        seed: Seed of the split.
        val_fraction: Fraction of all samples used for validation.
        test_fraction: Fraction of all samples held out for testing.

    Example:
        >>> splits = load_digits()
        >>> splits.input_shape, len(splits.train) + len(splits.val) + len(splits.test)
        ((1, 8, 8), 1797)
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    return stratified_splits(
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        num_classes=10,
        name="digits",
    )


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Validate the validation and test shares of a dataset split (one rule for all loaders)."""
    if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0):
        raise ValueError(
            f"val_fraction and test_fraction must be in (0, 1), got {val_fraction} and "
            f"{test_fraction}."
        )
    if val_fraction + test_fraction >= 0.9:
        raise ValueError(
            "val_fraction + test_fraction must leave at least 10% of the data for training, got "
            f"{val_fraction} + {test_fraction}."
        )


def stratified_splits(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    num_classes: int,
    name: str,
) -> DatasetSplits:
    """Stratified, seeded train/validation/test splits of arrays, as tensor datasets.

    Example:
        >>> x = np.zeros((100, 1, 4), dtype=np.float32)
        >>> y = np.arange(100) % 2
        >>> s = stratified_splits(x, y, seed=0, val_fraction=0.2, test_fraction=0.2,
        ...                       num_classes=2, name="toy")
        >>> len(s.train), len(s.val), len(s.test), s.input_shape
        (60, 20, 20, (1, 4))
    """
    from sklearn.model_selection import train_test_split

    check_split_fractions(val_fraction, test_fraction)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest,
        y_rest,
        test_size=val_fraction / (1.0 - test_fraction),
        random_state=seed,
        stratify=y_rest,
    )

    def as_dataset(xs: np.ndarray, ys: np.ndarray) -> TensorDataset:
        return TensorDataset(
            torch.from_numpy(np.ascontiguousarray(xs)), torch.from_numpy(np.asarray(ys, np.int64))
        )

    return DatasetSplits(
        train=as_dataset(x_train, y_train),
        val=as_dataset(x_val, y_val),
        test=as_dataset(x_test, y_test),
        input_shape=tuple(x.shape[1:]),
        num_classes=num_classes,
        name=name,
    )


def make_loader(
    dataset: TensorDataset, *, batch_size: int = 128, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A single-process DataLoader with a seeded shuffle order.

    Example:
        >>> loader = make_loader(load_digits().val, batch_size=64)
        >>> next(iter(loader))[0].shape[1:]
        torch.Size([1, 8, 8])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
