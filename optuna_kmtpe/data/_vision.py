"""CIFAR-10 and MNIST through torchvision (optional ``vision`` extra), as tensor splits.

torchvision is imported only inside these functions: the core package and the default digits
path never need it (the torchvision wheel on PyPI is a CUDA build that fails to import next to
the CPU torch wheel, so it cannot be a hard dependency). Nothing is downloaded unless the caller
passes ``download=True``.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from optuna_kmtpe.data._digits import DatasetSplits


_INSTALL_HINT = (
    "torchvision is needed for {name}: install the optional extra with "
    "`pip install 'optuna-kmtpe[vision]'` (or `pip install torchvision` matching your torch "
    "build, e.g. the CPU wheel from https://download.pytorch.org/whl/cpu). The embedded digits "
    "data (optuna_kmtpe.data.load_digits) needs no extra."
)


def load_cifar10(
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetSplits:
    """CIFAR-10 (50,000 train / 10,000 test images, 3x32x32, 10 classes) as tensor splits.

    Pixels are scaled to [0, 1]. The official test set is ``test``; a stratified, seeded
    ``val_fraction`` of the training set becomes ``val``.

    Args:
        root: Directory holding (or receiving) torchvision's ``cifar-10-batches-py``.
        download: Allow torchvision to download the archive (about 170 MB) into ``root``.
        val_fraction: Fraction of the training set held out for validation.
        seed: Seed of the validation split.

    Raises:
        ImportError: torchvision is not installed (the message says how to install it).
        FileNotFoundError: The data is not in ``root`` and ``download`` is False, or the
            download failed (offline).

    Example:
        >>> splits = load_cifar10("~/data")  # doctest: +SKIP
        >>> splits.input_shape  # doctest: +SKIP
        (3, 32, 32)
    """
    # torchvision holds CIFAR-10 images channels-last.
    return _splits(
        "CIFAR10", root, download, val_fraction, seed, lambda x: x.transpose(0, 3, 1, 2)
    )


def load_mnist(
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetSplits:
    """MNIST (60,000 train / 10,000 test images, 1x28x28, 10 classes) as tensor splits.

    Same conventions and errors as :func:`load_cifar10`.

    Example:
        >>> splits = load_mnist("~/data")  # doctest: +SKIP
        >>> splits.input_shape  # doctest: +SKIP
        (1, 28, 28)
    """
    return _splits("MNIST", root, download, val_fraction, seed, lambda x: x[:, None])


def _load_torchvision(name: str, root: str | os.PathLike[str], download: bool) -> dict[str, Any]:
    try:
        import torchvision.datasets as tv_datasets  # type: ignore[import-untyped]
    except Exception as exc:  # ImportError, or the CUDA wheel failing to load its libraries
        raise ImportError(_INSTALL_HINT.format(name=name) + f" (import failed: {exc})") from exc
    root = os.path.expanduser(os.fspath(root))
    dataset_cls = getattr(tv_datasets, name)
    try:
        return {
            split: dataset_cls(root, train=(split == "train"), download=download)
            for split in ("train", "test")
        }
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        hint = (
            "pass download=True to let torchvision download it"
            if not download
            else "the download failed"
        )
        raise FileNotFoundError(
            f"{name} was not found in {root!r} ({exc}); {hint}, or copy the torchvision "
            f"{name} files into that directory (nothing is downloaded without download=True)."
        ) from exc
    except OSError as exc:  # urllib errors when offline
        raise FileNotFoundError(
            f"Could not download {name} into {root!r} ({exc}): this machine may be offline. "
            f"Download it elsewhere and copy the torchvision {name} files into {root!r}."
        ) from exc


def _splits(
    name: str,
    root: str | os.PathLike[str],
    download: bool,
    val_fraction: float,
    seed: int,
    to_nchw: Callable[[np.ndarray], np.ndarray],
) -> DatasetSplits:
    """The torchvision dataset ``name`` as splits: images laid out ``(N, C, H, W)`` by
    ``to_nchw``, a stratified, seeded ``val_fraction`` of the training set as ``val``."""
    raw = _load_torchvision(name, root, download)
    train_x, test_x = (to_nchw(np.asarray(raw[split].data)) for split in ("train", "test"))
    train_y, test_y = (np.asarray(raw[split].targets) for split in ("train", "test"))
    if not 0.0 < val_fraction < 0.9:
        raise ValueError(f"val_fraction must be in (0, 0.9), got {val_fraction}.")
    from sklearn.model_selection import train_test_split

    train_y = train_y.astype(np.int64)
    index = np.arange(len(train_y))
    train_idx, val_idx = train_test_split(
        index, test_size=val_fraction, random_state=seed, stratify=train_y
    )

    def as_dataset(xs: np.ndarray, ys: np.ndarray) -> TensorDataset:
        x = torch.from_numpy(np.ascontiguousarray(xs)).float().div_(255.0)
        return TensorDataset(x, torch.from_numpy(ys.astype(np.int64)))

    return DatasetSplits(
        train=as_dataset(train_x[train_idx], train_y[train_idx]),
        val=as_dataset(train_x[val_idx], train_y[val_idx]),
        test=as_dataset(test_x, test_y),
        input_shape=tuple(int(d) for d in train_x.shape[1:]),
        num_classes=int(max(train_y.max(), test_y.max()) + 1),
        name=name.lower(),
    )
