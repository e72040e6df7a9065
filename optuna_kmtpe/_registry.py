"""Public registries of models, datasets, metrics and quantizers by name; torch-free, so
settings and help read them.

The built-ins are registered here as lazy ``"module:attribute"`` references (importing this
module never imports torch). Users add their own with :func:`register_model`,
:func:`register_dataset` and :func:`register_quantizer`; ``kmtpe search --model NAME --data NAME
--quantizer NAME`` and :class:`~optuna_kmtpe.workflow.SearchSettings` then accept the names. A
model or dataset that is not registered is given by import path, ``MODULE:CALLABLE``.

Builders and loaders receive, by keyword, only the arguments their signature names:

- a model builder: ``input_shape`` (one sample, without the batch axis), ``num_classes`` and
  ``in_channels`` (``input_shape[0]``), all read from the data;
- a dataset loader: ``seed``, ``data_dir`` and ``n_samples`` (the settings ``seed``,
  ``data_dir`` and ``data_samples``). It returns ``(train, val)`` or ``(train, val, test)``
  torch Datasets of ``(input, integer label)``, or a :class:`~optuna_kmtpe.data.DatasetSplits`.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import importlib
import inspect
import re
from typing import TYPE_CHECKING
from typing import Any


if TYPE_CHECKING:
    from optuna_kmtpe.quant import QuantizerSpec


_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")


@dataclasses.dataclass(frozen=True)
class RegistryEntry:
    """One registered model builder or dataset loader.

    Attributes:
        name: The registered name.
        target: The callable, or a lazy ``"module:attribute"`` reference to it.
        description: One line for help texts.
    """

    name: str
    target: Callable[..., Any] | str
    description: str = ""

    def resolve(self) -> Callable[..., Any]:
        """The callable (imports a lazy reference)."""
        if callable(self.target):
            return self.target
        module, _, attribute = self.target.partition(":")
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
        return value


_MODELS: dict[str, RegistryEntry] = {}
_DATASETS: dict[str, RegistryEntry] = {}
_METRICS: dict[str, RegistryEntry] = {}
_QUANTIZERS: dict[str, RegistryEntry] = {}

IN_MEMORY_PREFIX = "python."
"""Names of the in-memory objects :func:`optuna_kmtpe.search` registers while it runs."""


def is_import_path(text: str) -> bool:
    """Whether ``text`` is an import path ``MODULE:CALLABLE`` rather than a registered name.

    Example:
        >>> is_import_path("my_project.models:build"), is_import_path("mlp")
        (True, False)
    """
    return bool(_IMPORT_PATH.match(text))


def _register(
    table: dict[str, RegistryEntry],
    kind: str,
    name: str,
    target: Callable[..., Any] | str,
    description: str,
    overwrite: bool,
) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"A {kind} name must be letters, digits, '_', '-' or '.' (no ':', which marks an "
            f"import path), got {name!r}."
        )
    if not (callable(target) or (isinstance(target, str) and is_import_path(target))):
        raise TypeError(
            f"register_{kind}({name!r}, ...) needs a callable or a 'module:attribute' string, "
            f"got {target!r}."
        )
    if name in table and not overwrite and table[name].target is not target:
        raise ValueError(
            f"A {kind} named {name!r} is already registered; pass overwrite=True to replace it."
        )
    table[name] = RegistryEntry(name=name, target=target, description=description)


def register_model(
    name: str,
    builder: Callable[..., Any] | str,
    *,
    description: str = "",
    overwrite: bool = False,
) -> None:
    """Register a model builder under ``name`` (usable as ``--model NAME``).

    Args:
        name: The model's name.
        builder: A callable returning an untrained ``nn.Module``; it receives, by keyword,
            those of ``input_shape``, ``num_classes`` and ``in_channels`` that it names.
        description: One line for help texts.
        overwrite: Replace an existing entry of that name.

    Example:
        >>> register_model("tiny", lambda num_classes: None, description="doc example")
        >>> "tiny" in model_names()
        True
        >>> unregister_model("tiny")
    """
    _register(_MODELS, "model", name, builder, description, overwrite)


def register_dataset(
    name: str,
    loader: Callable[..., Any] | str,
    *,
    description: str = "",
    overwrite: bool = False,
) -> None:
    """Register a dataset loader under ``name`` (usable as ``--data NAME``).

    Args:
        name: The dataset's name.
        loader: A callable returning ``(train, val)``, ``(train, val, test)`` or a
            :class:`~optuna_kmtpe.data.DatasetSplits`; it receives, by keyword, those of
            ``seed``, ``data_dir`` and ``n_samples`` that it names.
        description: One line for help texts.
        overwrite: Replace an existing entry of that name.

    Example:
        >>> register_dataset("toy", lambda seed: None)
        >>> "toy" in dataset_names()
        True
        >>> unregister_dataset("toy")
    """
    _register(_DATASETS, "dataset", name, loader, description, overwrite)


def register_metric(
    name: str,
    metric: Callable[..., Any] | str,
    *,
    description: str = "",
    overwrite: bool = False,
) -> None:
    """Register a validation metric ``metric(outputs, targets) -> float`` under ``name``.

    ``outputs`` are the model's outputs on the whole validation split (one tensor), ``targets``
    its labels. The direction (maximize or minimize) is a setting, ``metric_direction``.

    Example:
        >>> register_metric("zero", lambda outputs, targets: 0.0)
        >>> unregister_metric("zero")
    """
    _register(_METRICS, "metric", name, metric, description, overwrite)


def unregister_metric(name: str) -> None:
    """Remove a metric entry (no error if absent)."""
    _METRICS.pop(name, None)


def metric_entry(name: str) -> RegistryEntry:
    """The entry of a registered metric; ``ValueError`` naming the choices if unknown."""
    return _entry(
        _METRICS, "metric", name, "MODULE:CALLABLE (a function (outputs, targets) -> float)"
    )


def metric_names() -> tuple[str, ...]:
    """The registered metric names."""
    return tuple(_METRICS)


def unregister_model(name: str) -> None:
    """Remove a model entry (no error if absent)."""
    _MODELS.pop(name, None)


def unregister_dataset(name: str) -> None:
    """Remove a dataset entry (no error if absent)."""
    _DATASETS.pop(name, None)


def model_names() -> tuple[str, ...]:
    """The registered model names, built-ins first.

    Example:
        >>> model_names()[:4]
        ('digits_cnn', 'mlp', 'resnet20', 'resnet20_1d')
    """
    return tuple(_MODELS)


def dataset_names() -> tuple[str, ...]:
    """The registered dataset names, built-ins first.

    Example:
        >>> dataset_names()[:4]
        ('digits', 'mnist1d', 'mnist', 'cifar10')
    """
    return tuple(_DATASETS)


def model_entry(name: str) -> RegistryEntry:
    """The entry of a registered model; ``ValueError`` naming the choices if unknown."""
    return _entry(_MODELS, "model", name, "MODULE:CALLABLE (a function returning your nn.Module)")


def dataset_entry(name: str) -> RegistryEntry:
    """The entry of a registered dataset; ``ValueError`` naming the choices if unknown."""
    return _entry(
        _DATASETS,
        "data",
        name,
        "MODULE:CALLABLE (a function returning (train, val) or (train, val, test) torch Datasets)",
    )


def _entry(
    table: dict[str, RegistryEntry], kind: str, name: str, import_path: str | None
) -> RegistryEntry:
    """``table[name]``, or a ``ValueError`` naming the registered choices (and what an import
    path must be, for the kinds that may be given by one)."""
    try:
        return table[name]
    except KeyError:
        other = f" or give an import path {import_path}" if import_path else ""
        raise ValueError(f"Unknown {kind} {name!r}; choose one of {list(table)}{other}.") from None


def register_quantizer(
    name: str, spec: type[QuantizerSpec] | str, *, description: str = "", overwrite: bool = False
) -> None:
    """Register a :class:`~optuna_kmtpe.quant.QuantizerSpec` subclass (or its
    ``"module:Class"`` path) under ``name``; ``apply_config(..., quantizer=name)``, the
    ``quantizer`` setting and ``kmtpe search --quantizer NAME`` then build it from the
    quantizer options."""
    _register(_QUANTIZERS, "quantizer", name, spec, description, overwrite)


def unregister_quantizer(name: str) -> None:
    """Remove a quantizer entry (no error if absent)."""
    _QUANTIZERS.pop(name, None)


def quantizer_names() -> tuple[str, ...]:
    """The registered quantizer names, built-ins first.

    Example:
        >>> quantizer_names()[:3]
        ('uniform', 'binary', 'power_of_two')
    """
    return tuple(_QUANTIZERS)


def quantizer_entry(name: str) -> RegistryEntry:
    """The entry of a registered quantizer (:func:`register_quantizer` adds one); ``ValueError``
    naming the choices if unknown."""
    return _entry(_QUANTIZERS, "quantizer", name, None)


def call_with_accepted(function: Callable[..., Any], /, **available: Any) -> Any:
    """Call ``function`` with those of ``available`` that its signature names (all of them if
    it takes ``**kwargs``).

    Example:
        >>> call_with_accepted(lambda num_classes: num_classes, num_classes=3, seed=0)
        3
    """
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: pass nothing
        return function()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return function(**available)
    names = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    return function(**{k: v for k, v in available.items() if k in names})


for _name, _target, _description in (
    ("digits_cnn", "optuna_kmtpe.models:DigitsCNN", "small CNN for 8x8 digits"),
    ("mlp", "optuna_kmtpe.models._registry:mlp", "MLP on flattened inputs of any shape"),
    ("resnet20", "optuna_kmtpe.models:ResNet20", "ResNet-20 for 32x32 images"),
    ("resnet20_1d", "optuna_kmtpe.models:ResNet20_1D", "ResNet-20 for 1-D signals"),
):
    register_model(_name, _target, description=_description)
for _name, _target, _description in (
    ("digits", "optuna_kmtpe.data:load_digits", "embedded 8x8 digits"),
    ("mnist1d", "optuna_kmtpe.data._builtin:mnist1d", "MNIST-1D, generated offline"),
    ("mnist", "optuna_kmtpe.data._builtin:mnist", "MNIST (vision extra, --data-dir)"),
    ("cifar10", "optuna_kmtpe.data._builtin:cifar10", "CIFAR-10 (vision extra, --data-dir)"),
):
    register_dataset(_name, _target, description=_description)
for _name, _target, _description in (
    ("uniform", "optuna_kmtpe.quant._quantizers:UniformQuantizer", "uniform levels"),
    ("binary", "optuna_kmtpe.quant._quantizers:BinaryQuantizer", "1-bit weights only"),
    ("power_of_two", "optuna_kmtpe.quant._quantizers:PowerOfTwoQuantizer", "power-of-two scales"),
):
    register_quantizer(_name, _target, description=_description)
