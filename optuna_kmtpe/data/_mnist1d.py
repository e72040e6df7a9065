"""MNIST-1D (Greydanus 2020): ten 1-D digit templates padded, scaled, translated, sheared and
noised into length-40 signals, generated procedurally by the ``mnist1d`` package.

Only the package's generator is used (``mnist1d.data.make_dataset``); its ``get_dataset``
would download a pickle from GitHub and is never called, so nothing here touches the network.
"""

from __future__ import annotations

import random

import numpy as np

from optuna_kmtpe.data._digits import DatasetSplits
from optuna_kmtpe.data._digits import check_split_fractions
from optuna_kmtpe.data._digits import stratified_splits


_INSTALL_HINT = (
    "MNIST-1D needs the mnist1d package: pip install mnist1d (or the extra "
    "'optuna-kmtpe[mnist1d]')"
)

SEQUENCE_LENGTH = 40
"""Length of an MNIST-1D signal (the generator's ``final_seq_length``)."""


def load_mnist1d(
    *,
    seed: int = 0,
    n_samples: int = 5000,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
) -> DatasetSplits:
    """MNIST-1D signals as tensors of shape (N, 1, 40), 10 balanced classes.

    ``seed`` fixes both the generator (every sample's padding, scale, translation, shear and
    noise) and the stratified split, so the same arguments always give the same tensors. The
    generator standardizes the whole set to mean 0 and standard deviation 1. The global
    ``random`` and ``numpy.random`` states, which the generator reseeds, are restored afterwards.

    Args:
        seed: Seed of the generator and of the split.
        n_samples: Number of signals (rounded down to a multiple of 10, one tenth per class).
            The original benchmark uses 5,000 (4,000 train, 1,000 test).
        val_fraction: Fraction of all samples used for validation.
        test_fraction: Fraction of all samples held out for testing.

    Raises:
        ImportError: ``mnist1d`` is not installed.

    Example:
        >>> splits = load_mnist1d(n_samples=1000)
        >>> splits.input_shape, splits.num_classes, len(splits.train) + len(splits.val) + len(
        ...     splits.test)
        ((1, 40), 10, 1000)
    """
    if n_samples < 100:
        raise ValueError(f"n_samples must be >= 100 (10 per class and split), got {n_samples}.")
    check_split_fractions(val_fraction, test_fraction)
    try:
        from mnist1d.data import get_dataset_args
        from mnist1d.data import make_dataset
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} (import failed: {exc})") from exc
    args = get_dataset_args()
    args.num_samples = n_samples - n_samples % 10
    args.train_split = 1.0  # one pool of samples; the split below is stratified and seeded
    args.seed = seed
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    x = np.asarray(raw["x"], dtype=np.float32).reshape(-1, 1, SEQUENCE_LENGTH)
    y = np.asarray(raw["y"], dtype=np.int64)

    return stratified_splits(
        x,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        num_classes=10,
        name="mnist1d",
    )
