"""The sensitivity report: per-layer Hessian traces and weight perturbations, as plain data.

This module does not import torch, so that the torch-free search space
(:mod:`optuna_kmtpe.space`), the dashboard and every worker of a distributed study read a report
(:meth:`SensitivityReport.from_study_attrs`, the one decoder of the stored form) without touching
the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import json
import math
from typing import TYPE_CHECKING
from typing import Any

from optuna_kmtpe.config import is_float_bits
from optuna_kmtpe.records import STUDY_SENSITIVITY


if TYPE_CHECKING:
    import optuna


REPORT_FORMAT_VERSION = 1
# MySQL's TEXT column (Optuna's user-attr storage) holds 64 KiB: stay well below it per attr.
_MAX_ATTR_CHARS = 50_000


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """Sensitivity facts of one quantizable layer.

    Attributes:
        name: Module path of the layer (the key used by ``QuantConfig``).
        kind: Module class name (``"Conv2d"``, ``"Linear"``, ...).
        n_params: Number of weight elements (biases are not counted: they stay in high precision).
        out_channels: Output channels (Conv) or output features (Linear).
        in_channels: Input channels (Conv) or input features (Linear).
        trace: Average Hessian trace ``Tr(H_i) / n_i`` of the loss with respect to the weight.
        trace_stderr: Standard error of ``trace`` (Hutchinson noise only).
        num_probes: Rademacher probes used for this layer (summed over calibration batches).
        perturbation: ``{bits: ||Q_bits(W) - W||^2}`` for each candidate weight bit-width, with
            per-channel symmetric quantization; float widths (16, 32) have perturbation 0.
        act_trace: Average Hessian trace with respect to the layer's input activation, per
            element and averaged over inputs (HAWQ-V2 section 2.2), or ``None``.
        act_trace_stderr: Standard error of ``act_trace``, or ``None``.
        act_numel: Elements of the layer's input activation per sample, or ``None``.
        eigenvalue: Top eigenvalue of the weight Hessian block (power iteration), or ``None``.
        quadratic: ``{bits: 0.5 * dW^T H dW}`` with the actual ``dW = Q_bits(W) - W``: the
            exact second-order loss change of quantizing this layer alone (no isotropy
            assumption, unlike ``trace * ||dW||^2``).
        act_quadratic: ``{act_bits: 0.5 * da^T H_a da}`` with ``da = Q_bits(a) - a`` for the
            layer's input activation: the second-order loss change of quantizing that
            operand alone (empty unless computed with ``act_bits``).
        width_quadratic: ``{width: 0.5 * dW^T H dW}`` with ``dW = -W`` on the output channels
            that width prunes (the layer's own weights only; empty unless computed with
            ``widths``).
    """

    name: str
    kind: str
    n_params: int
    out_channels: int
    in_channels: int
    trace: float
    trace_stderr: float
    num_probes: int
    perturbation: Mapping[int, float]
    act_trace: float | None = None
    act_trace_stderr: float | None = None
    act_numel: int | None = None
    eigenvalue: float | None = None
    quadratic: Mapping[int, float] = dataclasses.field(default_factory=dict)
    act_quadratic: Mapping[int, float] = dataclasses.field(default_factory=dict)
    width_quadratic: Mapping[float, float] = dataclasses.field(default_factory=dict)

    @property
    def rel_stderr(self) -> float:
        """``trace_stderr / |trace|`` (``inf`` for a zero trace with noise, 0 when both are 0)."""
        if self.trace == 0.0:
            return 0.0 if self.trace_stderr == 0.0 else math.inf
        return abs(self.trace_stderr / self.trace)

    def omega(self, bits: int, *, kind: str = "trace") -> float:
        """Sensitivity of this layer at ``bits``.

        Args:
            bits: Weight bit-width.
            kind: ``"trace"``: HAWQ-V2's ``trace * ||Q_bits(W) - W||^2``; ``"quadratic"``:
                the exact second-order term ``0.5 * dW^T H dW`` (measured to rank layers by
                their real 2-bit loss change better, see docs/sensitivity.md).

        Raises:
            ValueError: If ``bits`` was not among the report's candidate weight bit-widths.
        """
        if kind not in ("trace", "quadratic"):
            raise ValueError(f"kind must be 'trace' or 'quadratic', got {kind!r}.")
        if is_float_bits(bits):
            return 0.0
        try:
            if kind == "quadratic":
                return self.quadratic[bits]
            return self.trace * self.perturbation[bits]
        except KeyError:
            raise ValueError(
                f"Layer {self.name!r}: no perturbation for {bits}-bit weights in the report "
                f"(it has {sorted(self.perturbation)}); recompute the report with "
                f"weight_bits including {bits}."
            ) from None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key, _ in _TABLES:
            data[key] = {str(b): float(v) for b, v in sorted(getattr(self, key).items())}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSensitivity:
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = {"name", "n_params", "trace", "trace_stderr"} - set(data)
        if missing:
            raise ValueError(
                f"LayerSensitivity.from_dict: missing key(s) {sorted(missing)} in {dict(data)!r}."
            )
        values = {"kind": "", "out_channels": 1, "in_channels": 1, "num_probes": 0}
        values.update((k, v) for k, v in data.items() if k in fields)
        for key, cast in _TABLES:
            values[key] = {cast(b): float(v) for b, v in dict(data.get(key, {})).items()}
        return cls(**values)


#: The per-bit (per-width) tables of a layer and the type of their keys (JSON makes them str).
_TABLES = (
    ("perturbation", int),
    ("quadratic", int),
    ("act_quadratic", int),
    ("width_quadratic", float),
)


@dataclasses.dataclass(frozen=True)
class SensitivityReport:
    """Per-layer Hessian sensitivities of a model, in module order.

    Build one with :func:`optuna_kmtpe.sensitivity.compute_sensitivity`; store it in a study
    with :meth:`save_to_study` so that every worker reuses it; feed it to
    :class:`optuna_kmtpe.space.MonotoneSearchSpace`.

    Attributes:
        layers: One :class:`LayerSensitivity` per quantizable layer, in module order.
        settings: How it was computed (batches, samples, probes, seed, BatchNorm mode, ...).

    Example:
        >>> layer = LayerSensitivity("fc", "Linear", 640, 10, 64, 2e-3, 1e-5, 64, {4: 0.5})
        >>> report = SensitivityReport(layers=(layer,), settings={"seed": 0})
        >>> SensitivityReport.from_json(report.to_json()) == report
        True
        >>> report["fc"].omega(4)
        0.001
    """

    layers: tuple[LayerSensitivity, ...]
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"SensitivityReport: duplicate layer names in {names}.")
        object.__setattr__(self, "layers", tuple(self.layers))

    # Mapping-like access -------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def __getitem__(self, name: str) -> LayerSensitivity:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"{name!r} is not a layer of this report; layers: {list(self.names)}.")

    def __iter__(self) -> Iterator[LayerSensitivity]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def weight_bits(self) -> tuple[int, ...]:
        """Candidate weight bit-widths that every layer has a perturbation for."""
        tables = [set(layer.perturbation) for layer in self.layers]
        return tuple(sorted(set.intersection(*tables))) if tables else ()

    @property
    def has_activation_traces(self) -> bool:
        return bool(self.layers) and all(layer.act_trace is not None for layer in self.layers)

    # Serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": REPORT_FORMAT_VERSION,
            "settings": dict(self.settings),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityReport:
        if not isinstance(data, Mapping) or not isinstance(data.get("layers"), Sequence):
            raise ValueError(
                'SensitivityReport.from_dict expects {"layers": [...], "settings": {...}} as '
                "written by SensitivityReport.to_dict()."
            )
        version = data.get("format_version", REPORT_FORMAT_VERSION)
        if version > REPORT_FORMAT_VERSION:
            raise ValueError(
                f"This report has format_version {version}, newer than this optuna-kmtpe "
                f"understands ({REPORT_FORMAT_VERSION}); upgrade optuna-kmtpe."
            )
        layers = tuple(LayerSensitivity.from_dict(layer) for layer in data["layers"])
        return cls(layers=layers, settings=dict(data.get("settings", {})))

    def to_json(self, **json_kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **json_kwargs)

    @classmethod
    def from_json(cls, text: str) -> SensitivityReport:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"SensitivityReport.from_json: not valid JSON ({exc}).") from exc
        return cls.from_dict(data)

    # Study storage ---------------------------------------------------------------------------
    def save_to_study(self, study: optuna.Study, *, key: str = STUDY_SENSITIVITY) -> None:
        """Store the report in ``study``'s user attributes (JSON values, dashboard-visible).

        Every worker of a distributed or resumed study can then call :meth:`load_from_study`
        instead of recomputing traces. Large reports are split over several attributes
        (``key``, ``key:1``, ``key:2``, ...) so that each stays below the 64 KiB that MySQL's
        TEXT column stores.

        Example:
            >>> import optuna
            >>> layer = LayerSensitivity("fc", "Linear", 640, 10, 64, 2e-3, 1e-5, 64, {4: 0.5})
            >>> report = SensitivityReport(layers=(layer,))
            >>> study = optuna.create_study()
            >>> report.save_to_study(study)
            >>> SensitivityReport.load_from_study(study) == report
            True
        """
        data = self.to_dict()
        chunks: list[list[dict[str, Any]]] = [[]]
        size = 0
        for layer_dict in data["layers"]:
            length = len(json.dumps(layer_dict))
            if chunks[-1] and size + length > _MAX_ATTR_CHARS:
                chunks.append([])
                size = 0
            chunks[-1].append(layer_dict)
            size += length
        study.set_user_attr(key, {**data, "layers": chunks[0], "extra_chunks": len(chunks) - 1})
        for index, chunk in enumerate(chunks[1:], start=1):
            study.set_user_attr(f"{key}:{index}", chunk)

    @classmethod
    def load_from_study(
        cls, study: optuna.Study, *, key: str = STUDY_SENSITIVITY
    ) -> SensitivityReport | None:
        """The report stored by :meth:`save_to_study`, or ``None`` if the study has none."""
        return cls.from_study_attrs(study.user_attrs, key=key)

    @classmethod
    def from_study_attrs(
        cls, attrs: Mapping[str, Any], *, key: str = STUDY_SENSITIVITY, partial: bool = False
    ) -> SensitivityReport | None:
        """The report :meth:`save_to_study` wrote into study user attrs ``attrs``, chunks joined.

        Args:
            attrs: The study's user attributes.
            key: The attribute of the first chunk.
            partial: Keep the layers that are there when a chunk is missing (a reader that
                shows what it can, as the dashboard) instead of raising.

        Returns:
            The report, or ``None`` if ``attrs`` hold none.

        Raises:
            ValueError: On a malformed report, or a missing chunk unless ``partial``.
        """
        header = attrs.get(key)
        if header is None:
            return None
        if not isinstance(header, Mapping):
            raise ValueError(f"The study's user attr {key} is not a sensitivity report.")
        layers = list(header.get("layers") or ())
        for index in range(1, int(header.get("extra_chunks", 0)) + 1):
            chunk = attrs.get(f"{key}:{index}")
            if isinstance(chunk, Sequence) and not isinstance(chunk, str):
                layers.extend(chunk)
            elif not partial:
                raise ValueError(
                    f"The study's sensitivity report is incomplete: user attr {key}:{index} is "
                    f"missing. Recompute it and call save_to_study again."
                )
        return cls.from_dict({**header, "layers": layers})

    # Display ---------------------------------------------------------------------------------
    def to_table(self, *, bits: int | None = 2) -> str:
        """A fixed-width text table: one row per layer, most informative columns first.

        Args:
            bits: Show the HAWQ-V2 ``omega`` at this weight bit-width (``None`` to omit).
        """
        show_omega = bits is not None and bits in self.weight_bits
        show_act = any(layer.act_trace is not None for layer in self.layers)
        show_eig = any(layer.eigenvalue is not None for layer in self.layers)
        header = ["layer", "kind", "params", "out", "Tr/n", "+-SE", "rel", "probes"]
        if show_omega:
            header.append(f"omega@{bits}b")
        if show_act:
            header += ["actTr/n", "+-SE"]
        if show_eig:
            header.append("eig_max")
        rows = [header]
        for layer in self.layers:
            row = [
                layer.name,
                layer.kind,
                str(layer.n_params),
                str(layer.out_channels),
                f"{layer.trace:.3e}",
                f"{layer.trace_stderr:.1e}",
                f"{100 * layer.rel_stderr:.1f}%",
                str(layer.num_probes),
            ]
            if show_omega:
                assert bits is not None
                row.append(f"{layer.omega(bits):.3e}")
            if show_act:
                row += [_fmt(layer.act_trace, ".3e"), _fmt(layer.act_trace_stderr, ".1e")]
            if show_eig:
                row.append(_fmt(layer.eigenvalue, ".3e"))
            rows.append(row)
        widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(w) if c < 2 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths))
            )
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
