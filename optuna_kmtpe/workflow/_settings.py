"""Everything a search run needs to know, from defaults, a TOML file and command-line flags."""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
import os
from pathlib import Path
from typing import Any

from optuna_kmtpe.config import ALLOWED_BITS
from optuna_kmtpe.hardware._device import DEFAULT_DEVICE
from optuna_kmtpe.objectives._metrics import validate_budgets
from optuna_kmtpe.objectives._metrics import validate_metrics


SAMPLERS: tuple[str, ...] = ("kmtpe", "tpe", "random", "nsga2")
DATASETS: tuple[str, ...] = ("digits", "mnist", "cifar10")


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
    exactly the same job from the storage alone.

    Attributes:
        model: Built-in model name (``digits_cnn``, ``mlp``, ``resnet20``).
        data: Dataset (``digits`` embedded; ``mnist``/``cifar10`` need the ``vision`` extra).
        data_dir: Directory of torchvision datasets (they are never downloaded implicitly).
        weight_bits: Candidate weight bit-widths.
        act_bits: Candidate activation bit-widths.
        widths: Candidate width fractions (layers that cannot be narrowed keep 1.0).
        constrained: Use the Hessian monotone space (True) or independent per-layer choices.
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
        mode: ``qat`` or ``ptq``.
        qat_epochs: QAT epochs per trial.
        lr: QAT learning rate.
        pretrain_epochs: Epochs of float pre-training (cached).
        batch_size: Batch size of training and evaluation.
        hessian_max_probes: Cap on Hutchinson probes per layer and batch (the estimator stops
            earlier once every layer's relative standard error is below 1%).
        torch_threads: CPU threads torch may use; None picks 1 for models under 1M
            parameters (per-op threading costs more than it saves on them: a digits trial took
            0.42 s with 1 thread and 11.7 s with 2 on a loaded 2-core machine) and torch's
            default otherwise.
        cache_dir: Where float checkpoints are cached (None: ``default_cache_dir()``).
    """

    model: str = "digits_cnn"
    data: str = "digits"
    data_dir: str | None = None
    weight_bits: tuple[int, ...] = (2, 3, 4, 6, 8)
    act_bits: tuple[int, ...] = (4, 6, 8)
    widths: tuple[float, ...] = (0.5, 0.75, 1.0)
    constrained: bool = True
    objectives: tuple[str, ...] = ("accuracy", "latency_s", "energy_j")
    budgets: Mapping[str, float] = dataclasses.field(default_factory=dict)
    device: str = DEFAULT_DEVICE
    n_trials: int = 40
    timeout: float | None = None
    seed: int = 0
    storage: str = "sqlite:///kmtpe.db"
    study_name: str = "kmtpe"
    sampler: str = "kmtpe"
    warm_start: bool = True
    mode: str = "qat"
    qat_epochs: int = 2
    lr: float = 0.01
    pretrain_epochs: int = 30
    batch_size: int = 128
    hessian_max_probes: int = 1000
    torch_threads: int | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight_bits", _bits_tuple(self.weight_bits, "weight_bits"))
        object.__setattr__(self, "act_bits", _bits_tuple(self.act_bits, "act_bits"))
        widths = tuple(sorted({float(w) for w in self.widths}))
        if not widths or any(not 0 < w <= 1 for w in widths):
            raise ValueError(f"widths must be fractions in (0, 1], got {list(self.widths)}.")
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "objectives", validate_metrics(self.objectives))
        object.__setattr__(self, "budgets", validate_budgets(dict(self.budgets)))
        if self.data not in DATASETS:
            raise ValueError(f"Unknown data {self.data!r}; choose one of {list(DATASETS)}.")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; choose one of {list(SAMPLERS)}.")
        if self.n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {self.n_trials}.")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {self.timeout}.")
        for name in ("qat_epochs", "pretrain_epochs", "batch_size", "hessian_max_probes"):
            if getattr(self, name) < (0 if name == "pretrain_epochs" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}.")
        if self.mode not in ("qat", "ptq"):
            raise ValueError(f"mode must be 'qat' or 'ptq', got {self.mode!r}.")
        if not self.study_name:
            raise ValueError("study_name must not be empty.")

    def replace(self, **changes: Any) -> SearchSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["budgets"] = dict(self.budgets)
        for key in ("weight_bits", "act_bits", "widths", "objectives"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown setting(s) {unknown}; known settings: {sorted(known)}.")
        return cls(**dict(data))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> SearchSettings:
        """Read settings from a TOML file (top-level keys or a ``[search]`` table).

        Example TOML::

            model = "digits_cnn"
            weight_bits = [2, 4, 8]
            n_trials = 60
            [budgets]
            latency_s = 2e-5
        """
        import tomllib

        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ValueError(f"Config file {str(path)!r} does not exist.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from None
        data = dict(data.get("search", data))
        data.update(overrides)
        return cls.from_dict(data)

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()


def _bits_tuple(values: Any, name: str) -> tuple[int, ...]:
    bits = tuple(sorted({int(b) for b in values}))
    if not bits or any(b not in ALLOWED_BITS for b in bits):
        raise ValueError(
            f"{name} must be bit-widths from {list(ALLOWED_BITS)}, got {list(values)}."
        )
    return bits
