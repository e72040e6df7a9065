"""One call from Python: an in-memory model and data through everything ``kmtpe search`` does."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import copy
from typing import TYPE_CHECKING
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from optuna_kmtpe import _registry
from optuna_kmtpe.records import study_quality
from optuna_kmtpe.workflow._run import run_search
from optuna_kmtpe.workflow._settings import SearchSettings
from optuna_kmtpe.workflow._tables import format_pareto_table
from optuna_kmtpe.workflow._tables import pareto_rows


if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset


def search(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset,
    test_data: Dataset | None = None,
    *,
    trained: bool = True,
    metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    metric_direction: str = "maximize",
    log: Callable[[str], None] = print,
    progress: bool = True,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    **settings: Any,
) -> optuna.Study:
    """Search mixed-precision configs of an in-memory model on in-memory data.

    Everything ``kmtpe search`` does: the Hessian sensitivity, warm starts, K-Means TPE, a
    line per trial, the dashboard plots, the Pareto table at the end, and resuming: calling
    it again with the same ``storage`` and ``study_name`` continues the study (refused if the
    model, data or metric changed in between). The model and data live in this process only:
    ``kmtpe worker`` on other machines, and ``kmtpe report --export-model``, need the
    import-path form (``kmtpe search --model MODULE:CALLABLE --data MODULE:CALLABLE``).

    Args:
        model: The float model (never modified; trials quantize copies).
        train_data: Torch Dataset of ``(input, label)`` pairs for calibration and QAT (and
            pre-training when ``trained`` is False).
        val_data: Dataset that scores each trial.
        test_data: Dataset held out for reports (None: ``val_data``).
        trained: The model is trained: search from its weights. False: pre-train it first
            (``pretrain_epochs``, cached like the built-in models).
        metric: ``metric(outputs, targets) -> float`` on the whole validation split, in the
            place of top-1 accuracy (top-5, F1, an error...).
        metric_direction: ``"maximize"`` or ``"minimize"``, the direction of ``metric``.
        log: Where progress lines go.
        progress: Show progress bars for long steps.
        callbacks: Extra ``study.optimize`` callbacks.
        **settings: Any :class:`~optuna_kmtpe.workflow.SearchSettings` field (``n_trials``,
            ``storage``, ``study_name``, ``objectives``, ``budgets``, ``device``, ``loss``
            (``"mse"`` for float regression targets, with a ``metric``), ``quantizer`` (a
            name registered in this process with
            :func:`~optuna_kmtpe.quant.register_quantizer` too), ...).

    Returns:
        The study (``study.best_trials`` is the Pareto front).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.utils.data import TensorDataset
        >>> import optuna_kmtpe
        >>> from optuna_kmtpe.data import load_digits
        >>> splits = load_digits()
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        >>> study = optuna_kmtpe.search(  # doctest: +SKIP
        ...     model, splits.train, splits.val, trained=False, pretrain_epochs=5,
        ...     n_trials=6, storage="sqlite:///mine.db")
    """
    for name in ("model", "data", "metric", "metric_direction", "checkpoint"):
        if name in settings:
            raise TypeError(
                f"search() takes the model, data and metric as objects; {name!r} is not one of "
                "its settings (use kmtpe search or run_search for registered names and import "
                "paths)."
            )
    if trained:
        if settings.get("pretrain_epochs", 0) != 0:
            raise ValueError("pretrain_epochs applies to an untrained model (trained=False).")
        settings["pretrain_epochs"] = 0
    splits = (train_data, val_data) if test_data is None else (train_data, val_data, test_data)
    names = {
        "model": f"{_registry.IN_MEMORY_PREFIX}{type(model).__name__}",
        "data": f"{_registry.IN_MEMORY_PREFIX}data",
    }
    if metric is not None:
        label = getattr(metric, "__name__", type(metric).__name__).strip("<>")
        names["metric"] = f"{_registry.IN_MEMORY_PREFIX}{label}"
    with _registered(names, model=model, splits=splits, metric=metric):
        # The keys of a TOML file, deprecated aliases included.
        run_settings = SearchSettings.from_dict(
            {**settings, **names, "metric_direction": metric_direction}
        )
        study = run_search(run_settings, log=log, progress=progress, callbacks=callbacks)
    log(f"Pareto front of study {study.study_name!r}:")
    log(format_pareto_table(pareto_rows(study), quality=study_quality(study)))
    return study


@contextlib.contextmanager
def _registered(
    names: dict[str, str], *, model: Any, splits: tuple[Any, ...], metric: Any
) -> Iterator[None]:
    """Register the in-memory objects under ``names`` for the duration of one search."""
    _registry.register_model(names["model"], lambda: copy.deepcopy(model), overwrite=True)
    _registry.register_dataset(names["data"], lambda: splits, overwrite=True)
    if metric is not None:
        _registry.register_metric(names["metric"], metric, overwrite=True)
    try:
        yield
    finally:
        _registry.unregister_model(names["model"])
        _registry.unregister_dataset(names["data"])
        if metric is not None:
            _registry.unregister_metric(names["metric"])
