"""Build every part of a search from its settings: data, float model, sensitivity, space, FPGA."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
import dataclasses
import hashlib
import json
import logging
import math
import os
from pathlib import Path
import re
import tempfile
from typing import TYPE_CHECKING
from typing import Any
import warnings

import optuna

from optuna_kmtpe import hardware
from optuna_kmtpe.config import DEFAULT_LOSS
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.geometry import NetworkShape
from optuna_kmtpe.objectives import hardware_cost_fn
from optuna_kmtpe.sensitivity import SensitivityReport
from optuna_kmtpe.space import MonotoneSearchSpace
from optuna_kmtpe.workflow._settings import QUANTIZER_SETTINGS
from optuna_kmtpe.workflow._settings import SearchSettings
from optuna_kmtpe.workflow._sources import build_float_model
from optuna_kmtpe.workflow._sources import check_sources
from optuna_kmtpe.workflow._sources import check_stored_sources
from optuna_kmtpe.workflow._sources import load_splits
from optuna_kmtpe.workflow._sources import source_key


# torch and the modules built on it (data, graph, quant) are imported inside the functions that
# train and trace: `optuna_kmtpe.workflow` stays torch-free, so that `kmtpe report` and
# `kmtpe dashboard` read a study without loading torch.
if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from optuna_kmtpe.data import DatasetSplits
    from optuna_kmtpe.graph import ChannelGraph
    from optuna_kmtpe.quant import TrainingRecipe


_logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SearchJob:
    """The prepared parts of one search, each built once by :func:`prepare_job` and handed on
    (to the objective, the forecast, the report): nothing downstream traces or loads again.

    Attributes:
        settings: The run's settings.
        data: The dataset splits.
        model: The trained float model (never changed by a trial).
        example_input: One validation batch of two samples, the input every trace uses.
        train_loader: Seeded, shuffled training batches (calibration and QAT).
        val_loader: Validation batches (scores every trial).
        test_loader: Test batches (the report's held-out accuracy).
        graph: The model's channel graph (which layer feeds which, what may be pruned).
        report: The Hessian sensitivity report.
        space: The search space built from the report and the graph.
        fpga: The FPGA cost model of ``settings.device``.
        shapes: The layer shapes the FPGA model costs.
        sources: The user's model/data fingerprint (``_sources.source_key``; None for
            built-ins).
    """

    settings: SearchSettings
    data: DatasetSplits
    model: nn.Module
    example_input: torch.Tensor
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    graph: ChannelGraph
    report: SensitivityReport
    space: MonotoneSearchSpace
    fpga: hardware.FPGAModel
    shapes: NetworkShape
    sources: dict[str, str] | None = None


DATASETS_IN_DIR: tuple[str, ...] = ("mnist", "cifar10")
"""Datasets read from ``data_dir`` (torchvision); the others are embedded or generated."""


def _check_data_dir(settings: SearchSettings) -> None:
    if settings.data not in DATASETS_IN_DIR:
        return
    if settings.data_dir is None:
        raise ValueError(
            f"--data-dir is required for {settings.data}: the directory holding the torchvision "
            "dataset (nothing is downloaded implicitly; see examples/cifar10_resnet20.py)."
        )
    if not Path(settings.data_dir).is_dir():
        raise FileNotFoundError(
            f"--data-dir {settings.data_dir!r} is not a directory: copy the torchvision "
            f"{settings.data} files there (nothing is downloaded implicitly; "
            "examples/cifar10_resnet20.py --download fetches CIFAR-10)."
        )


def check_settings(settings: SearchSettings) -> None:
    """Fail fast, before anything is written, loaded or trained: names that do not exist, a
    user's model, data or metric that cannot be imported or does not fit
    (:func:`~optuna_kmtpe.workflow._sources.check_sources`), a dataset directory that is
    missing, a cache directory that cannot be created or written.

    Raises:
        ValueError: One of those (a torchvision dataset without ``data_dir`` included).
        FileNotFoundError: A ``data_dir`` that does not exist.
    """
    hardware.get_device(settings.device)
    _check_data_dir(settings)
    cache = settings.resolved_cache_dir
    existing = cache
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"The cache directory {str(cache)!r} cannot be created: {str(existing)!r} is not a "
            "directory. Pass another --cache-dir (or set KMTPE_CACHE_DIR)."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"The cache directory {str(cache)!r} is not writable ({str(existing)!r}). Pass "
            "another --cache-dir (or set KMTPE_CACHE_DIR)."
        )
    _check_quantizer_bits(settings)
    check_sources(settings)


def _check_quantizer_bits(settings: SearchSettings) -> None:
    """Every weight bit-width the search offers must be one the quantizer quantizes (binary:
    1 bit only), or every trial drawing another would fail."""
    from optuna_kmtpe import quant  # torch: workflow stays torch-free at import

    spec = quant.quantizer_spec(settings.quantizer)
    for bits in settings.weight_bits:
        try:
            spec.for_weight_bits(bits)
        except ValueError as exc:
            raise ValueError(
                f"quantizer {settings.quantizer!r} cannot use weight_bits {bits}: {exc} Set "
                "--weight-bits to bit-widths it quantizes, or choose another --quantizer."
            ) from None


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a uniquely named temporary file in its directory, then replace.

    Readers never see a half-written file, and concurrent writers (two cold processes filling
    the cache) never share a temporary name: each replaces the target whole, the last wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_data(settings: SearchSettings) -> DatasetSplits:
    """The dataset splits of ``settings.data``: a registered name or an import path."""
    _check_data_dir(settings)
    return load_splits(settings)


SMALL_MODEL_PARAMETERS = 1_000_000


def set_torch_threads(settings: SearchSettings, model: nn.Module) -> int:
    """Apply ``settings.torch_threads`` (or its automatic choice) and return the thread count."""
    import torch

    threads = settings.torch_threads
    if threads is None:
        n_params = sum(p.numel() for p in model.parameters())
        threads = 1 if n_params < SMALL_MODEL_PARAMETERS else torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


def _checkpoint_path(
    settings: SearchSettings, data_name: str, *, sources: dict[str, str] | None = None
) -> Path:
    import torch

    fields: dict[str, Any] = {
        "model": settings.model,
        "data": data_name,
        "seed": settings.seed,
        "epochs": settings.pretrain_epochs,
        "batch_size": settings.batch_size,
        "torch": torch.__version__,
    }
    if settings.data_samples is not None:  # only then: fixed-size datasets keep their old keys
        fields["data_samples"] = settings.data_samples
    if settings.data_dir is not None:  # two copies of a dataset may differ
        fields["data_dir"] = str(Path(settings.data_dir).resolve())
    if sources is not None:  # the user's code and data: two projects never share a checkpoint
        fields["sources"] = sources
    if settings.loss != DEFAULT_LOSS:  # only then: classification keeps its old keys
        fields["loss"] = settings.loss
    key = json.dumps(fields, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    stem = re.sub(r"[^\w.-]", "_", f"{settings.model}-{data_name}")
    return settings.resolved_cache_dir / f"{stem}-{digest}.pt"


def pretrained_model(
    settings: SearchSettings,
    splits: DatasetSplits,
    *,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> nn.Module:
    """The float model, trained once and cached on disk (keyed by every setting that matters)."""
    import torch

    from optuna_kmtpe import data as kdata
    from optuna_kmtpe import quant
    from optuna_kmtpe.graph import channel_graph

    torch.manual_seed(settings.seed)
    model = build_float_model(settings, splits)  # loads settings.checkpoint if given
    # Before training, not after: pre-training (and the Hessian after it) suffer the same
    # per-op threading overhead on small models as the trials do.
    set_torch_threads(settings, model)
    if settings.checkpoint is not None:
        log(f"Loaded the float {settings.model} from the checkpoint {settings.checkpoint}.")
        return model.eval()
    if settings.pretrain_epochs == 0:  # trained already (optuna_kmtpe.search(trained=True))
        return model.eval()
    path = _checkpoint_path(settings, splits.name, sources=source_key(settings, splits))
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            log(f"Loaded the float {settings.model} from the cache {path}.")
            return model.eval()
        except (RuntimeError, OSError, EOFError) as exc:
            log(f"Ignoring an unreadable cached checkpoint {path} ({exc}); training again.")
    # A model the search cannot quantize is refused before its pre-training, not after (and
    # no checkpoint is cached); an untraceable one is told about once, after training.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        channel_graph(model, splits.val.tensors[0][:2])
    log(
        f"Training the float {settings.model} on {splits.name} "
        f"({settings.pretrain_epochs} epochs)..."
    )
    loader = kdata.make_loader(
        splits.train, batch_size=settings.batch_size // 2, shuffle=True, seed=settings.seed
    )
    model = quant.train_float(
        model,
        loader,
        epochs=settings.pretrain_epochs,
        loss=settings.loss,
        seed=settings.seed,
        progress=progress,
    )
    state = model.state_dict()
    write_atomically(path, lambda tmp: torch.save(state, tmp))
    return model.eval()


def cached_sensitivity(
    settings: SearchSettings,
    splits: DatasetSplits,
    model: nn.Module,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> SensitivityReport:
    """The Hessian report of the cached float model, itself cached next to the checkpoint."""
    from optuna_kmtpe import data as kdata
    from optuna_kmtpe.quant import make_criterion
    from optuna_kmtpe.sensitivity import compute_sensitivity

    # v2/v3: the report holds the activation and pruning second-order terms too (the
    # sampler's accuracy prior).
    key = (
        f"v3-{settings.weight_bits}-{settings.act_bits}-{settings.widths}-"
        f"{settings.hessian_max_probes}"
    )
    if settings.loss != DEFAULT_LOSS:  # only then: classification keeps its old keys
        key += f"-{settings.loss}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = _checkpoint_path(settings, splits.name, sources=source_key(settings, splits))
    path = path.with_suffix(f".hessian-{digest}.json")
    if path.exists():
        try:
            report = SensitivityReport.from_json(path.read_text())
            log(f"Loaded the Hessian sensitivity report from the cache {path}.")
            return report
        except (ValueError, KeyError, OSError) as exc:
            log(f"Ignoring an unreadable cached report {path} ({exc}); computing it again.")
    log("Estimating per-layer Hessian traces (Hutchinson, per-layer Rademacher probes)...")
    loader = kdata.make_loader(
        splits.train, batch_size=settings.batch_size, shuffle=True, seed=settings.seed
    )
    report = compute_sensitivity(
        model,
        loader,
        seed=settings.seed,
        weight_bits=settings.weight_bits,
        act_bits=settings.act_bits,
        widths=settings.widths,
        max_probes=settings.hessian_max_probes,
        criterion=make_criterion(settings.loss),
        progress=progress,
    )
    text = report.to_json()
    write_atomically(path, lambda tmp: tmp.write_text(text))
    return report


def prepare_job(
    settings: SearchSettings,
    study: optuna.Study | None = None,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> SearchJob:
    """Data, float model, Hessian report (reused from the study if stored), space, FPGA model."""
    import torch

    from optuna_kmtpe import data as kdata
    from optuna_kmtpe.graph import channel_graph

    torch.manual_seed(settings.seed)
    splits = load_data(settings)
    sources = source_key(settings, splits)
    if study is not None:  # before training: never continue a study on changed code or data
        check_stored_sources(study, sources)
    model = pretrained_model(settings, splits, log=log, progress=progress)  # sets threads
    train_loader = kdata.make_loader(
        splits.train, batch_size=settings.batch_size, shuffle=True, seed=settings.seed
    )
    val_loader = kdata.make_loader(splits.val, batch_size=512)
    test_loader = kdata.make_loader(splits.test, batch_size=512)
    example_input = splits.val.tensors[0][:2]
    if settings.loss == DEFAULT_LOSS:  # classification: accuracy has a chance level
        warning = near_chance_warning(model, val_loader, splits.num_classes)
        if warning:
            log(warning)
    graph = channel_graph(model, example_input)
    warning = unquantized_warning(model)
    if warning:
        log(warning)

    report = SensitivityReport.load_from_study(study) if study is not None else None
    if report is None:
        report = cached_sensitivity(settings, splits, model, log=log, progress=progress)
        if study is not None:
            report.save_to_study(study)
    else:
        log("Reusing the Hessian sensitivity report stored in the study.")
    fpga = hardware.FPGAModel(device=hardware.get_device(settings.device))
    shapes = hardware.trace_layer_shapes(model, example_input, graph=graph)
    space = build_space(settings, report, graph, fpga=fpga, shapes=shapes)
    return SearchJob(
        settings=settings,
        data=splits,
        model=model,
        example_input=example_input,
        train_loader=train_loader,
        val_loader=val_loader,
        test_loader=test_loader,
        graph=graph,
        report=report,
        space=space,
        fpga=fpga,
        shapes=shapes,
        sources=sources,
    )


def unquantized_warning(model: nn.Module) -> str | None:
    """A warning naming the modules with parameters that run in float and are left out of the
    FPGA costs (:func:`~optuna_kmtpe.graph.unquantized_parameters`), else ``None``."""
    from optuna_kmtpe.graph import unquantized_parameters

    rows = unquantized_parameters(model)
    if not rows:
        return None
    total = sum(p.numel() for p in model.parameters())
    outside = sum(count for _, _, count in rows)
    named = ", ".join(f"{name or '(the model)'!r} ({kind})" for name, kind, _ in rows[:3])
    more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
    return (
        f"Warning: {named}{more} hold {outside / max(total, 1):.0%} of the parameters but are "
        "neither quantized nor costed: they run in float in every trial and latency and "
        "energy leave them out. Only nn.Conv1d, nn.Conv2d and nn.Linear layers are searched."
    )


def near_chance_warning(model: nn.Module, val_loader: Any, num_classes: int) -> str | None:
    """A warning when the float model classifies the validation data little better than
    chance (its trials would measure noise), else ``None``."""
    from optuna_kmtpe import quant

    chance = 1.0 / max(num_classes, 1)
    accuracy = quant.measure(model, val_loader, ["accuracy"])["accuracy"]
    if accuracy >= chance + 0.1 * (1.0 - chance):
        return None
    return (
        f"Warning: the float model scores {accuracy:.1%} on the validation split, near chance "
        f"({chance:.1%} for {num_classes} classes): its quantized trials would measure noise. "
        "Train it longer (--pretrain-epochs), or check the model and the labels."
    )


def recipe_for(settings: SearchSettings) -> TrainingRecipe:
    """The training recipe of a search's trials (one definition for the search and the export)."""
    from optuna_kmtpe.quant import TrainingRecipe

    return TrainingRecipe(
        mode=settings.mode,
        epochs=settings.qat_epochs,
        lr=settings.lr,
        seed=settings.seed,
        loss=settings.loss,
        **{name: getattr(settings, name) for name in QUANTIZER_SETTINGS},
    )


def build_space(
    settings: SearchSettings,
    report: SensitivityReport,
    graph: ChannelGraph,
    *,
    fpga: hardware.FPGAModel | None = None,
    shapes: NetworkShape | None = None,
) -> MonotoneSearchSpace:
    """The Hessian monotone space, or the unconstrained one when ``constrained`` is False.

    The unconstrained space has the same choices and parametrization; an infinite
    ``order_sigma`` orders no pair of layers, so nothing is projected. With the FPGA model
    (``fpga`` and ``shapes``), every budget prunes the space, not only the size budget.
    """
    budgets: dict[str, float] = {}
    cost_fn = None
    if fpga is not None and shapes is not None and settings.budgets:
        costs = hardware_cost_fn(fpga, shapes)
        budgets = dict(settings.budgets)

        def cost_fn(config: QuantConfig) -> Mapping[str, float]:
            return costs(config).metrics

    return MonotoneSearchSpace(
        report,
        weight_bits=settings.weight_bits,
        act_bits=settings.act_bits,
        widths=settings.widths,
        prunable_layers=graph.prunable_layers,
        producers=graph.producers,
        size_budget_bits=settings.budgets.get("size_bits"),
        order_sigma=2.0 if settings.constrained else math.inf,
        budgets=budgets,
        cost_fn=cost_fn,
    )
