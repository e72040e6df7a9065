"""The user's model, data and metric, by registered name or import path ``MODULE:CALLABLE``.

One place resolves, imports, calls and checks them, for ``kmtpe search``, ``kmtpe worker``,
``kmtpe report`` and :func:`optuna_kmtpe.search`: an import error, a wrong return type or a
model whose outputs do not match the data's classes is a ``ValueError`` with one clear line,
raised by :func:`check_sources` before anything is trained or written. Their fingerprint
(:func:`source_key`: the import paths, a hash of the code, the model's structure or weights and
the data's content) keys the float-checkpoint cache, so two projects never share a checkpoint,
and is stored in the study, so a study is never resumed on changed code or data.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Mapping
import copy
import hashlib
import importlib
import inspect
import os
from pathlib import Path
import sys
from typing import TYPE_CHECKING
from typing import Any

import optuna

from optuna_kmtpe._registry import IN_MEMORY_PREFIX
from optuna_kmtpe._registry import RegistryEntry
from optuna_kmtpe._registry import call_with_accepted
from optuna_kmtpe._registry import dataset_entry
from optuna_kmtpe._registry import is_import_path
from optuna_kmtpe._registry import metric_entry
from optuna_kmtpe._registry import model_entry
from optuna_kmtpe.config import DEFAULT_LOSS
from optuna_kmtpe.workflow._settings import SearchSettings
from optuna_kmtpe.workflow._storage import StudyError


# torch and optuna_kmtpe.data (torch) are imported inside the functions that build models and
# datasets: `optuna_kmtpe.workflow` stays torch-free for `kmtpe report` and `kmtpe dashboard`.
if TYPE_CHECKING:
    import torch
    from torch import nn

    from optuna_kmtpe.data import DatasetSplits


STUDY_SOURCES = "kmtpe:sources"
"""Study user attr: the :func:`source_key` of the model and data the study was started with."""

_BUILTIN_PREFIX = "optuna_kmtpe."

_MEMO_SIZE = 4
_memo: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
"""This process's loaded splits and built models, by :func:`_memo_key`: one run (the checks,
the fingerprint, the float model, resume) loads the data and builds the model once."""


def _memo_key(what: str, spec: str, function: Callable[..., Any], *parts: Any) -> Hashable:
    """The import path, the callable itself (an in-memory object re-registered under the
    same name is another one), its code's hash and whatever else the result depends on."""
    return (what, spec, id(function), _hash_code(function), *parts)


def _memoized(key: Hashable, keep: Any, compute: Callable[[], Any]) -> Any:
    if key in _memo:
        _memo.move_to_end(key)
        return _memo[key][1]
    value = compute()
    _memo[key] = (keep, value)  # holding what the key names by id() keeps the id unique
    while len(_memo) > _MEMO_SIZE:
        _memo.popitem(last=False)
    return value


def import_callable(spec: str, *, what: str) -> Callable[..., Any]:
    """The callable named by ``spec`` (``MODULE:CALLABLE``), with the working directory on
    ``sys.path`` (as ``python -m`` has it).

    Args:
        spec: The import path; the callable may be an attribute path (``mod:Class.build``).
        what: ``"model"``, ``"data"`` or ``"metric"``, for the message.

    Raises:
        ValueError: One line naming what failed and what to do.

    Example:
        >>> import_callable("math:floor", what="model")(2.5)
        2
    """
    module_name, _, attribute = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        value: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"--{what} {spec}: cannot import {module_name!r} ({exc}); run kmtpe from the "
            f"directory that holds it (now {cwd}) or add that directory to PYTHONPATH."
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything
        raise ValueError(
            f"--{what} {spec}: importing {module_name!r} failed: {_describe(exc)}."
        ) from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValueError(f"--{what} {spec}: {module_name!r} has no attribute {part!r}.")
        value = getattr(value, part)
    if not callable(value):
        raise ValueError(
            f"--{what} {spec}: {attribute!r} is a {type(value).__name__}, not a callable."
        )
    return value


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _in_memory_hint(name: str, what: str) -> str:
    return (
        f"--{what} {name!r} was passed in memory to optuna_kmtpe.search(), so only that "
        "Python process knows it; workers, resumed runs in a new process and kmtpe report "
        f"--export-model need the import-path form (--{what} MODULE:CALLABLE)."
    )


def _registered(name: str, what: str) -> RegistryEntry | None:
    """The registry entry of ``name`` (None for an import path); ``what``: ``"model"``,
    ``"data"`` or ``"metric"``."""
    if is_import_path(name):
        return None
    lookup = {"model": model_entry, "data": dataset_entry, "metric": metric_entry}[what]
    try:
        return lookup(name)
    except ValueError:
        if name.startswith(IN_MEMORY_PREFIX):
            raise ValueError(_in_memory_hint(name, what)) from None
        raise


def _resolve(name: str, what: str) -> tuple[Callable[..., Any], RegistryEntry | None]:
    """The callable behind a registered name or an import path, and its registry entry."""
    entry = _registered(name, what)
    if entry is None:
        return import_callable(name, what=what), None
    try:
        return entry.resolve(), entry
    except Exception as exc:  # noqa: BLE001 - a lazy reference of a user's registration
        raise ValueError(f"--{what} {name}: loading {entry.target!r} failed: {_describe(exc)}.")


def _is_builtin(entry: RegistryEntry | None) -> bool:
    target = entry.target if entry is not None else None
    return isinstance(target, str) and target.startswith(_BUILTIN_PREFIX)


def _call(function: Callable[..., Any], name: str, what: str, **available: Any) -> Any:
    try:
        return call_with_accepted(function, **available)
    except (ValueError, OSError, ImportError) as exc:
        raise type(exc)(f"--{what} {name}: {_describe(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the user's callable may raise anything
        raise ValueError(f"--{what} {name}: calling it raised {_describe(exc)}.") from None


def load_splits(settings: SearchSettings) -> DatasetSplits:
    """The train/validation/test splits of ``settings.data`` (registered name or import path).

    Loaded once per process for the same import path, code, seed and sizes (the checks, the
    fingerprint and the search share them; they are never modified).

    A user's datasets are materialized as tensors (the rest of the package, the objective,
    the Hessian and the export, index tensors); without a test split the validation split
    also serves as test split (``kmtpe report``'s test accuracy is then a validation one).

    Raises:
        ValueError: The data cannot be imported or called, or it returns anything but 2 or 3
            datasets of ``(input, integer label)`` pairs of one input shape (``(input, float
            target)`` pairs with ``loss="mse"``).
    """
    loader, _entry = _resolve(settings.data, "data")

    def load() -> DatasetSplits:
        result = _call(
            loader,
            settings.data,
            "data",
            seed=settings.seed,
            data_dir=settings.data_dir,
            n_samples=settings.data_samples,
        )
        name = settings.data.replace(":", ".") if is_import_path(settings.data) else settings.data
        return as_splits(result, name=name, spec=settings.data, loss=settings.loss)

    data_dir = settings.data_dir and str(Path(settings.data_dir).resolve())
    sizes = (settings.data_samples, settings.loss)
    key = _memo_key("data", settings.data, loader, settings.seed, data_dir, *sizes)
    return _memoized(key, loader, load)


def as_splits(
    result: Any, *, name: str, spec: str | None = None, loss: str = DEFAULT_LOSS
) -> DatasetSplits:
    """``(train, val)`` or ``(train, val, test)`` datasets (or ready splits) as
    :class:`~optuna_kmtpe.data.DatasetSplits`, with the input shape and class count checked.

    With ``loss="mse"`` (a regression) the labels are float targets of shape ``(n,)`` or
    ``(n, target_dim)``, and ``num_classes`` holds ``target_dim``, the model's output count.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.zeros(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
        >>> splits = as_splits((ds, ds), name="toy")
        >>> splits.input_shape, splits.num_classes, len(splits.test)
        ((4,), 3, 6)
        >>> reg = TensorDataset(torch.zeros(6, 4), torch.linspace(-1.0, 1.0, 6))
        >>> as_splits((reg, reg), name="toy", loss="mse").num_classes
        1
    """
    from optuna_kmtpe.data import DatasetSplits

    where = source_label("data", spec) if spec else f"data {name!r}"
    if isinstance(result, DatasetSplits):
        parts: tuple[Any, ...] = (result.train, result.val, result.test)
    elif isinstance(result, (tuple, list)) and len(result) in (2, 3):
        parts = tuple(result)
    else:
        raise ValueError(
            f"{where} must return (train, val) or (train, val, test) torch Datasets of "
            f"(input, label) pairs, got {_kind(result)}."
        )
    roles = ("train", "val", "test")
    tensors = [
        _as_tensor_dataset(part, f"{where} ({role} split)", loss=loss)
        for part, role in zip(parts, roles)
    ]
    shapes = {tuple(t.tensors[0].shape[1:]) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"{where}: the splits' inputs differ in shape: {sorted(shapes)}.")
    labels = [t.tensors[1] for t in tensors]
    if loss != DEFAULT_LOSS:
        dims = {1 if y.dim() == 1 else int(y.shape[1]) for y in labels}
        if len(dims) != 1:
            raise ValueError(f"{where}: the splits' targets differ in size: {sorted(dims)}.")
        num_classes = dims.pop()
    else:
        low = min(int(y.min()) for y in labels)
        num_classes = max(int(y.max()) for y in labels) + 1
        if low < 0 or num_classes < 2:
            raise ValueError(
                f"{where}: labels must be class indices 0..K-1 with K >= 2, got labels from "
                f"{low} to {num_classes - 1}."
            )
        if isinstance(result, DatasetSplits):
            num_classes = max(num_classes, result.num_classes)
    if len(tensors) == 2:
        tensors.append(tensors[1])
    return DatasetSplits(
        train=tensors[0],
        val=tensors[1],
        test=tensors[2],
        input_shape=shapes.pop(),
        num_classes=num_classes,
        name=name,
    )


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        names = ", ".join(type(v).__name__ for v in value)
        return f"a {type(value).__name__} of {len(value)}: ({names})"
    return f"a {type(value).__name__}"


def _as_tensor_dataset(dataset: Any, where: str, *, loss: str = DEFAULT_LOSS) -> Any:
    import torch
    from torch.utils.data import TensorDataset

    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        inputs, labels = dataset.tensors[0], dataset.tensors[1]
    else:
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise ValueError(
                f"{where} must be a torch Dataset with __len__ and __getitem__, got "
                f"{_kind(dataset)}."
            )
        items = [dataset[i] for i in range(len(dataset))]
        bad = next((item for item in items if not _is_pair(item)), None)
        if bad is not None:
            raise ValueError(f"{where}: items must be (input, label) pairs, got {_kind(bad)}.")
        try:
            inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
            if loss == DEFAULT_LOSS:
                labels = torch.as_tensor([y.item() if hasattr(y, "item") else y for _, y in items])
            else:
                labels = torch.stack([torch.as_tensor(y) for _, y in items])
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: cannot stack the items into tensors ({exc}).") from None
    if len(inputs) == 0:
        raise ValueError(f"{where} is empty.")
    inputs = inputs.float() if not inputs.is_floating_point() else inputs.to(torch.float32)
    if loss != DEFAULT_LOSS:
        return _regression_dataset(inputs, labels, where)
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise ValueError(
            f"{where}: labels must be integer class indices, got floats such as "
            f"{float(labels[labels != labels.round()].flatten()[0])}; for regression targets "
            "pass --loss mse."
        )
    if labels.dim() != 1 or len(labels) != len(inputs):
        raise ValueError(
            f"{where}: expected one label per input, got labels of shape {tuple(labels.shape)} "
            f"for {len(inputs)} inputs."
        )
    return TensorDataset(inputs.contiguous(), labels.to(torch.int64))


def _regression_dataset(inputs: torch.Tensor, targets: torch.Tensor, where: str) -> Any:
    import torch
    from torch.utils.data import TensorDataset

    if targets.dim() not in (1, 2) or len(targets) != len(inputs):
        raise ValueError(
            f"{where}: expected one target of shape () or (target_dim,) per input, got targets "
            f"of shape {tuple(targets.shape)} for {len(inputs)} inputs."
        )
    targets = targets.to(torch.float32)
    if not bool(torch.isfinite(targets).all()):
        raise ValueError(f"{where}: the targets hold NaN or infinite values.")
    return TensorDataset(inputs.contiguous(), targets.contiguous())


def _is_pair(item: Any) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2


def build_float_model(settings: SearchSettings, splits: DatasetSplits) -> nn.Module:
    """The untrained model of ``settings.model`` for ``splits`` (or the ``checkpoint``'s
    weights), its outputs checked against the data's classes.

    Built under ``settings.seed`` (the same initial weights everywhere) once per process: later
    calls get a copy.

    Raises:
        ValueError: The model cannot be imported or built, is not an ``nn.Module``, fails on
            a batch of the data, returns anything but ``(batch, num_classes)`` logits, or the
            checkpoint does not fit it.
    """
    import torch
    from torch import nn

    builder, _entry = _resolve(settings.model, "model")

    def build() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)  # the same initial weights in every process
            model = _call(
                builder,
                settings.model,
                "model",
                input_shape=tuple(splits.input_shape),
                num_classes=splits.num_classes,
                in_channels=splits.input_shape[0] if splits.input_shape else 1,
            )
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"{source_label('model', settings.model)} must return a torch nn.Module, "
                f"got {_kind(model)}."
            )
        check_outputs(model, splits, name=settings.model, loss=settings.loss)
        return model

    shape = (tuple(splits.input_shape), splits.num_classes, id(splits))
    key = _memo_key("model", settings.model, builder, settings.seed, shape)
    model = copy.deepcopy(_memoized(key, (builder, splits), build))  # callers train their copy
    if settings.checkpoint is not None:
        _load_checkpoint(model, settings.checkpoint)
        check_outputs(model, splits, name=settings.model, loss=settings.loss)
    return model


def _load_checkpoint(model: nn.Module, path: str) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"--checkpoint {path}: no such file.") from None
    except Exception as exc:  # noqa: BLE001 - unpickling errors of every kind
        raise ValueError(
            f"--checkpoint {path}: not a state dict torch.load(weights_only=True) can read "
            f"({_describe(exc)}); save it with torch.save(model.state_dict(), path)."
        ) from None
    if not isinstance(state, Mapping):
        raise ValueError(f"--checkpoint {path}: expected a state dict, got {_kind(state)}.")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"--checkpoint {path} does not fit the model: {_describe(exc)}."
        ) from None


def source_label(flag: str, name: str) -> str:
    """How an error names a model or data source: the CLI flag for a name the user typed, the
    object itself for one passed from Python (``optuna_kmtpe.search``).

    Example:
        >>> source_label("model", "my_project:model"), source_label("model", "python.EmbNet")
        ('--model my_project:model', 'the model EmbNet')
    """
    if name.startswith(IN_MEMORY_PREFIX):
        given = name[len(IN_MEMORY_PREFIX) :]
        return f"the {flag} {given}" if given != flag else f"the {flag} given to search()"
    return f"--{flag} {name}"


def check_outputs(
    model: nn.Module, splits: DatasetSplits, *, name: str, loss: str = DEFAULT_LOSS
) -> None:
    """Check that ``model`` maps a batch of ``splits`` to ``(batch, num_classes)`` logits
    (``(batch, target_dim)`` outputs with ``loss="mse"``)."""
    import torch

    embeddings = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding)]
    if embeddings:
        raise ValueError(
            f"{source_label('model', name)} has an nn.Embedding ({embeddings[0]!r}), which takes "
            "integer ids: the search feeds float inputs (the first layer quantizes them), so "
            "embedding models are not supported; embed outside the model and pass the vectors "
            "as data."
        )
    inputs = splits.val.tensors[0][:2]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            outputs = model(inputs)
    except Exception as exc:  # noqa: BLE001 - the user's forward may raise anything
        raise ValueError(
            f"{source_label('model', name)} fails on a batch of the data (inputs of shape "
            f"{tuple(inputs.shape)}): {_describe(exc)}."
        ) from None
    finally:
        model.train(training)
    expected = (len(inputs), splits.num_classes)
    if not isinstance(outputs, torch.Tensor) or tuple(outputs.shape) != expected:
        got = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else _kind(outputs)
        if loss != DEFAULT_LOSS:
            raise ValueError(
                f"{source_label('model', name)} returns outputs of shape {got} for inputs of "
                f"shape {tuple(inputs.shape)}, but the targets have {splits.num_classes} value(s) "
                f"per input: it must return outputs of shape {expected}."
            )
        raise ValueError(
            f"{source_label('model', name)} returns outputs of shape {got} for inputs of shape "
            f"{tuple(inputs.shape)}, but the data has {splits.num_classes} classes (labels "
            f"0..{splits.num_classes - 1}): it must return logits of shape {expected}."
        )


def metric_function(
    settings: SearchSettings,
) -> Callable[[torch.Tensor, torch.Tensor], float] | None:
    """The user's validation metric of ``settings.metric`` (None: accuracy)."""
    return None if settings.metric is None else _resolve(settings.metric, "metric")[0]


def check_sources(settings: SearchSettings) -> None:
    """Import, call and check the model, data and metric of ``settings``: one clear
    ``ValueError`` before anything is trained or written. Built-in names need no check."""
    model_builtin = _is_builtin(_registered(settings.model, "model"))
    data_builtin = _is_builtin(_registered(settings.data, "data"))
    if settings.metric is not None:
        metric_function(settings)
    if settings.checkpoint is not None and not Path(settings.checkpoint).is_file():
        raise ValueError(f"--checkpoint {settings.checkpoint}: no such file.")
    if model_builtin and data_builtin and settings.checkpoint is None:
        return
    if data_builtin:
        # Resolve the model before loading (possibly generating) a built-in dataset.
        _resolve(settings.model, "model")
    splits = load_splits(settings)
    build_float_model(settings, splits)


def source_key(settings: SearchSettings, splits: DatasetSplits) -> dict[str, str] | None:
    """What identifies the model and data beyond their names (None for built-in ones).

    The import paths, a hash of the source files of the callables and of the model's class,
    of the model's structure (parameter names and shapes; its weights too when it is used as
    given: a ``checkpoint`` file's bytes, or ``pretrain_epochs=0``), and of the data's tensors.
    Keys the float-checkpoint cache and is stored in the study (:data:`STUDY_SOURCES`).
    """

    model_function, model_reg = _resolve(settings.model, "model")
    data_function, data_reg = _resolve(settings.data, "data")
    key: dict[str, str] = {}
    if not _is_builtin(model_reg) or settings.checkpoint is not None:
        model = build_float_model(settings.replace(checkpoint=None), splits)
        key["model"] = settings.model
        key["model_code"] = _hash_code(model_function, type(model))
        state = model.state_dict()
        with_values = settings.pretrain_epochs == 0
        key["model_state"] = _hash_state(state, with_values=with_values)
        if settings.checkpoint is not None:
            key["checkpoint"] = _digest([Path(settings.checkpoint).read_bytes()])
    if not _is_builtin(data_reg):
        key["data"] = settings.data
        key["data_code"] = _hash_code(data_function)
        key["data_content"] = _hash_splits(splits)
    if settings.metric is not None:
        key["metric"] = settings.metric
        key["metric_code"] = _hash_code(metric_function(settings))  # type: ignore[arg-type]
    return key or None


def _digest(parts: list[bytes]) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "little"))
        sha.update(part)
    return sha.hexdigest()[:16]


def _hash_code(*objects: Any) -> str:
    """Hash of the source files defining ``objects`` (their names if no file is found)."""
    parts = []
    for obj in objects:
        if getattr(obj, "__module__", "").startswith(_BUILTIN_PREFIX):
            continue  # the package's own code (built-ins, search()'s wrappers): versioned
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:
            path = None
        if path and Path(path).is_file():
            parts.append(Path(path).read_bytes())
        else:
            parts.append(
                f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}".encode()
            )
    return _digest(parts)


def _hash_state(state: Mapping[str, Any], *, with_values: bool) -> str:
    parts = []
    for name, tensor in state.items():
        parts.append(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if with_values:
            parts.append(tensor.detach().cpu().contiguous().numpy().tobytes())
    return _digest(parts)


def _hash_splits(splits: DatasetSplits) -> str:
    parts = [str(splits.num_classes).encode()]
    for split in (splits.train, splits.val, splits.test):
        for tensor in split.tensors[:2]:
            parts.append(str(tuple(tensor.shape)).encode())
            parts.append(tensor.contiguous().numpy().tobytes())
    return _digest(parts)


def save_sources(study: optuna.Study, key: Mapping[str, str] | None) -> None:
    """Store a study's :func:`source_key` (nothing for built-in model and data)."""
    if key:
        study.set_user_attr(STUDY_SOURCES, dict(key))


def check_stored_sources(study: optuna.Study, key: Mapping[str, str] | None) -> None:
    """Refuse to continue a study on a model, data or metric that changed since it started.

    Raises:
        StudyError: Naming what changed.
    """
    stored = study.user_attrs.get(STUDY_SOURCES)
    current = dict(key or {})
    if stored is None or dict(stored) == current:
        return
    labels = {
        "model_code": "the model's code",
        "model_state": "the model's layers",
        "checkpoint": "the checkpoint file",
        "data_code": "the data's code",
        "data_content": "the data",
        "metric_code": "the metric's code",
    }
    changed = [
        labels.get(name, name)
        for name in sorted(set(stored) | set(current))
        if stored.get(name) != current.get(name)
    ]
    raise StudyError(
        f"Study {study.study_name!r} was started on another version of your model or data "
        f"({', '.join(changed)} changed); its trials would mix two different jobs. Restore the "
        "original files, or start a new study with another --study-name."
    )
