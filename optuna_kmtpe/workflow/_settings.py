"""Everything a search run needs to know, from defaults, a TOML file and command-line flags."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from optuna_kmtpe._registry import IN_MEMORY_PREFIX
from optuna_kmtpe._registry import dataset_names
from optuna_kmtpe._registry import is_import_path
from optuna_kmtpe._registry import metric_names
from optuna_kmtpe._registry import model_names
from optuna_kmtpe._registry import quantizer_entry
from optuna_kmtpe.config import DEFAULT_LOSS
from optuna_kmtpe.config import LOSS_NAMES
from optuna_kmtpe.config import RANGE_METHODS
from optuna_kmtpe.config import ROUNDING_MODES
from optuna_kmtpe.config import check_bit_choices
from optuna_kmtpe.config import check_width_choices
from optuna_kmtpe.hardware._device import DEFAULT_DEVICE
from optuna_kmtpe.objectives._metrics import DEFAULT_OBJECTIVES
from optuna_kmtpe.objectives._metrics import validate_budgets
from optuna_kmtpe.objectives._metrics import validate_metrics
from optuna_kmtpe.records import redact_credentials


SAMPLERS: tuple[str, ...] = ("kmtpe", "tpe", "random", "nsga2")

QUANTIZER_SETTINGS: tuple[str, ...] = (
    "quantizer",
    "rounding",
    "range_method",
    "symmetric_weights",
    "symmetric_acts",
)
"""The quantizer options of a search: the settings (and flags, TOML keys) that
``workflow.recipe_for`` passes to ``quant.TrainingRecipe`` and the model export writes into its
metadata."""


@dataclasses.dataclass(frozen=True)
class DatasetDefaults:
    """The settings a dataset brings with it when the user leaves them unset (``None``).

    Attributes:
        model: Built-in model (None: the user must name one, as for their own data).
        pretrain_epochs: Epochs of float pre-training.
        hessian_max_probes: Cap on Hutchinson probes per layer and batch.
        lr: QAT learning rate.
        data_samples: Samples generated for a procedural dataset (None: the dataset's own size).
    """

    model: str | None
    pretrain_epochs: int
    hessian_max_probes: int
    lr: float
    data_samples: int | None = None


_DIGITS_DEFAULTS = DatasetDefaults(
    model="digits_cnn", pretrain_epochs=30, hessian_max_probes=1000, lr=0.01
)
DATASET_DEFAULTS: Mapping[str, DatasetDefaults] = {
    "digits": _DIGITS_DEFAULTS,
    # MNIST-1D: see docs/quantization.md, "MNIST-1D task", for the measurements behind these.
    # The digits recipe fits: 30 epochs reach 98.9% (60 add nothing on the test split), and
    # the Hutchinson estimator meets its 1% target after about 48 probes per batch, so the cap
    # never binds. 5,000 samples is the original benchmark's size.
    "mnist1d": DatasetDefaults(
        model="resnet20_1d",
        pretrain_epochs=30,
        hessian_max_probes=1000,
        lr=0.01,
        data_samples=5000,
    ),
    # The torchvision datasets keep the digits job's settings; pass --model resnet20 for CIFAR-10.
    "mnist": _DIGITS_DEFAULTS,
    "cifar10": _DIGITS_DEFAULTS,
}
"""Per-dataset defaults of ``SearchSettings`` (one place for every dataset-dependent default)."""

USER_DATA_DEFAULTS = dataclasses.replace(_DIGITS_DEFAULTS, model=None)
"""Defaults of registered or imported datasets: the digits recipe, and no default model."""
_DATASET_DEPENDENT: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DatasetDefaults))


def default_cache_dir() -> Path:
    """Where pre-trained float checkpoints are cached (``$KMTPE_CACHE_DIR`` overrides)."""
    env = os.environ.get("KMTPE_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optuna-kmtpe"


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Settings of one mixed-precision search; defaults are the embedded digits job.

    Stored in the study (user attr ``kmtpe:run``) so that workers and resumed runs rebuild
    exactly the same job from the storage alone. Settings left ``None`` that depend on the
    dataset (``model``, ``pretrain_epochs``, ``hessian_max_probes``, ``lr``, ``data_samples``)
    take the values of ``DATASET_DEFAULTS[data]`` at construction; the stored settings hold the
    resolved values, so a later change of those defaults never changes a stored study's job.

    Attributes:
        model: Registered model name (built-ins ``digits_cnn``, ``mlp``, ``resnet20``,
            ``resnet20_1d``; :func:`~optuna_kmtpe.models.model_names`) or an import path
            ``MODULE:CALLABLE`` returning an ``nn.Module`` (imported with the working directory
            on ``sys.path``). None: the dataset's default (``digits_cnn``; ``resnet20_1d`` for
            ``mnist1d``); a user's dataset has none.
        data: Registered dataset (``digits`` embedded; ``mnist1d`` generated offline by the
            ``mnist1d`` package; ``mnist``/``cifar10`` need the ``vision`` extra;
            :func:`~optuna_kmtpe.data.dataset_names`) or an import path ``MODULE:CALLABLE``
            returning ``(train, val)`` or ``(train, val, test)`` torch Datasets of
            ``(input, label)``.
        data_dir: Directory of torchvision datasets (they are never downloaded implicitly).
        data_samples: Samples generated for ``mnist1d`` (None: its default, 5000); must stay
            None for the datasets of fixed size.
        weight_bits: Candidate weight bit-widths.
        act_bits: Candidate activation bit-widths.
        widths: Candidate width fractions (layers that cannot be narrowed keep 1.0).
        constrained: Use the Hessian monotone space (True) or independent per-layer choices
            (False, the default: the Hessian then enters softly, as the K-Means TPE sampler's
            accuracy prior; measured on digits the two end level, 0.0398 and 0.0397
            hypervolume at 60 trials, and the hard order excludes part of the best front).
        objectives: Metrics to optimize (see ``optuna_kmtpe.objectives.METRICS``).
        budgets: Upper limits on cost metrics; violating configs are not trained.
        device: FPGA preset name or a TOML/JSON device file. The digits job defaults to the
            small pynq-z2 board: on large parts the tiny CNN fits in one array pass and its
            latency no longer depends on bit-widths.
        n_trials: Total trials of the study (a resumed run only runs the rest).
        timeout: Seconds after which this process stops starting trials.
        seed: Seed of the data split, pre-training, sensitivity and sampler.
        storage: Optuna storage URL, or a file path for a journal storage.
        study_name: Study name in the storage.
        sampler: ``kmtpe``, ``tpe``, ``random`` or ``nsga2``.
        warm_start: Enqueue uniform 8/4-bit and HAWQ-V2 configs first.
        pruning_prior: Measure, before any training, what post-training quantization of the
            float model loses with each prunable layer alone at each width, and add it to the
            K-Means TPE sampler's accuracy prior (a fraction of a second on digits; its
            fitted scale takes up how much QAT recovers). False: the prior knows nothing of
            widths until trials are trained, for models whose pruned PTQ accuracy says little
            about QAT (no BatchNorm to re-estimate, for one).
        accuracy_window: The K-Means TPE forecast's region of interest: accuracy more than
            this fraction below the float model's counts for nothing (the validation loss: this
            much above the float model's). Default 0.05 (5 points). Widen it when configs
            further from the float model are still of use: on a probe's 1-D conv net (float
            81%), judged down to 65%, the default lost to TPE (hypervolume 0.0224 against
            0.0255 at 40 trials) because it never tried the 70-73% half-width configs.
        mode: ``qat`` or ``ptq``.
        qat_epochs: QAT epochs per trial.
        lr: QAT learning rate (None: the dataset's default, 0.01).
        pretrain_epochs: Epochs of float pre-training (cached; None: the dataset's default,
            30).
        batch_size: Batch size of training and evaluation.
        hessian_max_probes: Cap on Hutchinson probes per layer and batch (the estimator stops
            earlier once every layer's relative standard error is below 1%; None: the
            dataset's default, 1000).
        torch_threads: CPU threads torch may use; None picks 1 for models under 1M
            parameters (per-op threading costs more than it saves on them: a digits trial took
            0.42 s with 1 thread and 11.7 s with 2 on a loaded 2-core machine) and torch's
            default otherwise.
        cache_dir: Where float checkpoints are cached (None: ``default_cache_dir()``).
        quantizer: The registered quantizer of every quantized layer (``uniform``, ``binary``,
            ``power_of_two``, or yours, registered with ``quant.register_quantizer`` in each
            process that runs trials). ``power_of_two`` scales make rescaling a bit shift, which
            fixed-point FPGA types (hls4ml, FINN) map exactly (its accuracy cost:
            ``docs/export.md``); the deprecated ``power_of_two_scales = true`` means it too.
        rounding: Weight rounding in QAT, ``nearest`` or ``stochastic`` (unbiased, seeded).
        range_method: Weight clipping range, ``mse`` (the per-channel range with the smallest
            squared error; matters at 2-4 bits) or ``max`` (the largest magnitude).
        symmetric_weights: Symmetric narrow-range weights, zero point 0 (False: asymmetric,
            with an integer zero point).
        symmetric_acts: Symmetric activations (False, the default: unsigned with a zero
            point, no level wasted on the negatives a ReLU never outputs).
        checkpoint: A state dict of ``model`` (``torch.save(model.state_dict(), path)``),
            loaded with ``weights_only=True`` instead of float pre-training.
        metric: Validation metric replacing accuracy in the ``accuracy`` objective: a
            registered name or an import path of ``metric(outputs, targets) -> float`` over
            the whole validation split (None: top-1 accuracy).
        metric_direction: ``maximize`` or ``minimize`` (for ``metric``).
        loss: Training loss of float pre-training, QAT and the Hessian traces:
            ``cross_entropy`` (labels are class indices; the default) or ``mse`` (float
            targets, a regression: the model returns ``(batch, target_dim)`` and ``metric``
            is required, since accuracy means nothing there).
    """

    model: str | None = None
    data: str = "digits"
    data_dir: str | None = None
    data_samples: int | None = None
    weight_bits: tuple[int, ...] = (2, 3, 4, 6, 8)
    act_bits: tuple[int, ...] = (4, 6, 8)
    widths: tuple[float, ...] = (0.5, 0.75, 1.0)
    constrained: bool = False
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    budgets: Mapping[str, float] = dataclasses.field(default_factory=dict)
    device: str = DEFAULT_DEVICE
    n_trials: int = 40
    timeout: float | None = None
    seed: int = 0
    storage: str = "sqlite:///kmtpe.db"
    study_name: str = "kmtpe"
    sampler: str = "kmtpe"
    warm_start: bool = True
    pruning_prior: bool = True
    accuracy_window: float = 0.05
    mode: str = "qat"
    qat_epochs: int = 2
    lr: float | None = None
    pretrain_epochs: int | None = None
    batch_size: int = 128
    hessian_max_probes: int | None = None
    torch_threads: int | None = None
    cache_dir: str | None = None
    quantizer: str = "uniform"
    rounding: str = "nearest"
    range_method: str = "mse"
    symmetric_weights: bool = True
    symmetric_acts: bool = False
    checkpoint: str | None = None
    metric: str | None = None
    metric_direction: str = "maximize"
    loss: str = DEFAULT_LOSS

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("weight_bits", "act_bits"):
            bits = check_bit_choices(_as_list(getattr(self, name), name, int), field=name)
            object.__setattr__(self, name, bits)
        widths = check_width_choices(_as_list(self.widths, "widths", float))
        object.__setattr__(self, "widths", widths)
        objectives = _as_list(self.objectives, "objectives", str)
        object.__setattr__(self, "objectives", validate_metrics(objectives))
        object.__setattr__(self, "budgets", validate_budgets(dict(self.budgets)))
        _check_source_name(self.data, "data", dataset_names())
        defaults = DATASET_DEFAULTS.get(self.data, USER_DATA_DEFAULTS)
        for name in _DATASET_DEPENDENT:
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(defaults, name))
        if self.model is None:
            raise ValueError(
                f"data {self.data!r} has no default model: set model (--model) to one of "
                f"{list(model_names())} or to an import path MODULE:CALLABLE."
            )
        _check_source_name(self.model, "model", model_names())
        if self.metric is not None:
            _check_source_name(self.metric, "metric", metric_names())
        for name, allowed in (
            ("metric_direction", ("maximize", "minimize")),
            ("loss", LOSS_NAMES),
            ("sampler", SAMPLERS),
            ("mode", ("qat", "ptq")),
            ("rounding", ROUNDING_MODES),
            ("range_method", RANGE_METHODS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}."
                )
        if not (math.isfinite(self.accuracy_window) and 0.0 < self.accuracy_window <= 1.0):
            raise ValueError(
                "accuracy_window must be a fraction in (0, 1] (0.05: down to 5 points below the "
                f"float model), got {self.accuracy_window!r}."
            )
        if self.metric is None and self.metric_direction != "maximize":
            raise ValueError("metric_direction applies to a metric; accuracy is maximized.")
        if self.loss == "mse" and self.metric is None:
            raise ValueError(
                "loss 'mse' (a regression) needs a metric: accuracy means nothing there. Pass "
                "--metric MODULE:CALLABLE (for example an RMSE) and --metric-direction minimize."
            )
        if self.data_samples is not None:
            if defaults.data_samples is None and self.data in DATASET_DEFAULTS:
                raise ValueError(
                    f"data_samples applies to generated datasets (mnist1d) only; {self.data} "
                    "has a fixed size: leave it unset."
                )
            if self.data_samples < 100:
                raise ValueError(f"data_samples must be >= 100, got {self.data_samples}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive, finite number, got {self.lr}.")
        if self.n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {self.n_trials}.")
        if self.timeout is not None and not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ValueError(f"timeout must be positive, finite seconds, got {self.timeout}.")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}.")
        for name in ("qat_epochs", "pretrain_epochs", "batch_size", "hessian_max_probes"):
            if getattr(self, name) < (0 if name == "pretrain_epochs" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}.")
        quantizer_entry(self.quantizer)  # ValueError naming the registered quantizers
        if not self.study_name:
            raise ValueError("study_name must not be empty.")
        if not self.storage:
            raise ValueError("storage must not be empty.")

    def replace(self, **changes: Any) -> SearchSettings:
        """A copy with ``changes``. Changing ``data`` also moves every dataset-dependent
        setting that still holds the old dataset's default (and is not in ``changes``) to the
        new dataset's default, so ``SearchSettings().replace(data="mnist1d")`` trains
        ``resnet20_1d``, not the digits CNN."""
        if "data" in changes and changes["data"] != self.data and self.data in DATASET_DEFAULTS:
            old = DATASET_DEFAULTS[self.data]
            for name in _DATASET_DEPENDENT:
                if name not in changes and getattr(self, name) == getattr(old, name):
                    changes[name] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, as stored in the study (the storage URL without password)."""
        data = dataclasses.asdict(self)
        data["budgets"] = dict(self.budgets)
        data["storage"] = redact_credentials(self.storage)
        for key in ("weight_bits", "act_bits", "widths", "objectives"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSettings:
        """Settings from a mapping; the command-line names are accepted too (``trials``,
        ``threads``, ``budget``, ``weight-bits``, ...)."""
        data = normalize_keys(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown setting(s) {unknown}; known settings: {sorted(known)}.")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> SearchSettings:
        """Read settings from a TOML file (top-level keys or a ``[search]`` table).

        Keys are the attribute names above or the command-line flags' names (``trials``,
        ``threads``, ``budget``, ``weight-bits``, ...); lists may be TOML arrays or
        comma-separated strings. ``examples/search.toml`` lists every key. Example TOML::

            model = "digits_cnn"
            weight_bits = [2, 4, 8]
            trials = 60
            [budgets]
            latency_s = 2e-5
        """
        return load_settings(config=path, overrides=overrides)[0]

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()


_ALIASES: Mapping[str, str] = {
    "trials": "n_trials",
    "threads": "torch_threads",
    "budget": "budgets",
    "hard_order": "constrained",
}
"""Command-line names accepted as setting names (TOML keys, ``from_dict``)."""

RESUMABLE: tuple[str, ...] = ("n_trials", "timeout", "torch_threads", "cache_dir", "storage")
"""Settings a resumed run or a worker may change; every other one is fixed by the study."""

_SCALAR_TYPES: Mapping[str, tuple[type | tuple[type, ...], str]] = {
    "str": (str, "a string"),
    "int": (int, "an integer"),
    "float": ((int, float), "a number"),
    "bool": (bool, "true or false"),
    "Mapping[str, float]": (Mapping, "a table"),
}
"""What each scalar annotation of ``SearchSettings`` accepts (``X | None``: None too), and its
name in errors; the lists are checked by ``_as_list``. bool never passes for a number."""


def normalize_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """Setting names from attribute or command-line names (``trials`` -> ``n_trials``).

    The deprecated ``power_of_two_scales`` (a flag, a TOML key, and a key of the settings that
    studies stored before the ``quantizer`` setting) becomes ``quantizer = "power_of_two"``
    when true and is dropped when false: this is its only definition.
    """
    normalized = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        normalized[_ALIASES.get(name, name)] = value
    power_of_two = normalized.pop("power_of_two_scales", False)
    if not isinstance(power_of_two, bool):
        raise ValueError(f"power_of_two_scales must be true or false, got {power_of_two!r}.")
    if power_of_two and normalized.setdefault("quantizer", "power_of_two") != "power_of_two":
        raise ValueError(
            "power_of_two_scales (deprecated) means quantizer 'power_of_two', which conflicts "
            f"with quantizer {normalized['quantizer']!r}: set the quantizer only."
        )
    return normalized


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings table of a TOML file (top-level keys or a ``[search]`` table)."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"Config file {str(path)!r} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from None
    table = data.get("search", data)
    if not isinstance(table, dict):
        raise ValueError(f"Config file {str(path)!r}: [search] must be a table.")
    return normalize_keys(table)


def load_settings(
    *, config: str | os.PathLike[str] | None, overrides: Mapping[str, Any]
) -> tuple[SearchSettings, frozenset[str]]:
    """Settings from an optional TOML file and overrides (flags), and the names the user set.

    The names matter on resume: a setting the user set that differs from the stored study's
    is refused (:func:`resumed_settings`), one left to its default is not.
    """
    data = read_toml(config) if config is not None else {}
    data.update(normalize_keys(overrides))
    try:
        settings = SearchSettings.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{config}: {exc}" if config is not None else str(exc)) from None
    return settings, frozenset(data)


def _check_types(settings: SearchSettings) -> None:
    for field in dataclasses.fields(settings):
        annotation = str(field.type)  # "int", "str | None", ... (annotations are postponed)
        optional = annotation.endswith(" | None")
        scalar = _SCALAR_TYPES.get(annotation.removesuffix(" | None"))
        if scalar is None:
            continue  # a list, checked by _as_list
        kind, expected = scalar
        name, value = field.name, getattr(settings, field.name)
        if value is None and optional:
            continue
        if isinstance(value, os.PathLike) and kind is str:
            object.__setattr__(settings, name, os.fspath(value))
            continue
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            continue
        raise ValueError(
            f"{name} must be {expected}{' or unset' if optional else ''}, got {value!r} "
            f"({type(value).__name__})."
        )


def _as_list(values: Any, name: str, kind: type) -> list[Any]:
    """A list setting from a list, a comma-separated string (``"2,4,8"``) or one bare value
    (TOML ``weight_bits = 4`` is ``[4]``, as ``--weight-bits 4`` is), type-checked."""
    if not isinstance(values, (bool, str, list, tuple)) and isinstance(values, (int, float)):
        values = [values]
    if isinstance(values, str):
        parts = [part.strip() for part in values.split(",") if part.strip()]
        try:
            return [kind(part) for part in parts]
        except ValueError:
            raise ValueError(
                f"{name} must be a list of {kind.__name__} values or a comma-separated string, "
                f"got {values!r}."
            ) from None
    if not isinstance(values, (list, tuple)):
        raise ValueError(
            f"{name} must be a list such as {_EXAMPLES[name][0]} or a string such as "
            f"{_EXAMPLES[name][1]!r}, got {values!r} ({type(values).__name__})."
        )
    for value in values:
        ok = isinstance(value, str) if kind is str else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or (kind is int and not isinstance(value, int)):
            raise ValueError(
                f"{name} must hold {kind.__name__} values, got {value!r} in {list(values)}."
            )
    return list(values)


_EXAMPLES = {
    "weight_bits": ("[2, 4, 8]", "2,4,8"),
    "act_bits": ("[4, 8]", "4,8"),
    "widths": ("[0.5, 1.0]", "0.5,1"),
    "objectives": ('["accuracy", "latency_s"]', "accuracy,latency_s"),
}


def resumed_settings(
    stored: SearchSettings, given: SearchSettings, *, explicit: Iterable[str] | None = None
) -> SearchSettings:
    """The settings of a resumed run: the stored job with this run's :data:`RESUMABLE` ones.

    Args:
        stored: The settings the study was started with.
        given: The settings of this run.
        explicit: The settings the user set (a resumable one left unset keeps its stored
            value). None, for callers of the Python API: ``n_trials``, ``timeout`` and those
            that differ from the defaults (``SearchSettings(data=given.data)``).

    Raises:
        ValueError: Naming every setting the user set that differs from the stored one.
    """
    names = [f.name for f in dataclasses.fields(SearchSettings)]
    if explicit is None:
        own_data = given.data not in DATASET_DEFAULTS  # no default model: keep the given one
        defaults = SearchSettings(data=given.data, model=given.model if own_data else None)
        explicit = ["n_trials", "timeout"]
        explicit += [n for n in names if getattr(given, n) != getattr(defaults, n)]
    explicit = set(explicit)
    conflicts = sorted(
        name
        for name in explicit
        if name in names
        and name not in RESUMABLE
        and getattr(given, name) != getattr(stored, name)
    )
    if conflicts:
        stored_data, given_data = stored.to_dict(), given.to_dict()
        listed = ", ".join(f"{n} {given_data[n]!r} (stored {stored_data[n]!r})" for n in conflicts)
        raise ValueError(
            f"study {stored.study_name!r} was started with other settings: {listed}. A resumed "
            "run may change only the trial count, timeout, threads and cache directory; drop "
            "the others, or start a new study with another --study-name."
        )
    changes = {n: getattr(given, n) for n in RESUMABLE if n in explicit or n == "storage"}
    return stored.replace(**changes)


def _check_source_name(name: str, kind: str, registered: tuple[str, ...]) -> None:
    """A model, dataset or metric is a registered name or an import path ``MODULE:CALLABLE``
    (imported and checked later, :func:`~optuna_kmtpe.workflow._sources.check_sources`)."""
    if name in registered or is_import_path(name) or name.startswith(IN_MEMORY_PREFIX):
        return
    raise ValueError(
        f"Unknown {kind} {name!r}; choose one of {list(registered)} or give an import path "
        "MODULE:CALLABLE."
    )
