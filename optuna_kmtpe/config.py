"""The per-layer quantization config: the one currency between space, quant, hardware, objectives.

This module imports neither torch nor optuna so that every package (and a user who only wants to
read a stored config) can use it.

A config maps each quantizable layer, addressed by its module path (``"features.0"``,
``"layer1.0.conv1"``, as in ``model.named_modules()``), to a :class:`LayerConfig`:

* ``weight_bits``: bits of the layer's weights (1 = binary, 2..8 integer, 16 or 32 = float);
* ``act_bits``: bits of the activations fed *into* the layer (its input operand, which is what a
  multiplier sees on the accelerator), same allowed values;
* ``width``: the fraction of the layer's output channels (or features) kept, in ``(0, 1]``.

Layers missing from a config run in float at full width (:data:`FLOAT_LAYER`).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
import dataclasses
import json
import math
from typing import Any
from typing import Literal
from typing import get_args


ALLOWED_BITS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 16, 32)
"""Bit-widths a layer may use. 16 and 32 mean "not quantized" (float)."""

FLOAT_BITS: int = 32

LOSS_NAMES: tuple[str, ...] = ("cross_entropy", "mse")
"""Training losses by name (torch-free, for settings validation): ``cross_entropy`` for
class-index labels, ``mse`` for regression targets; the criteria are
:data:`optuna_kmtpe.quant.LOSSES`."""

DEFAULT_LOSS: str = "cross_entropy"

RoundingMode = Literal["nearest", "stochastic"]
RangeMethod = Literal["max", "mse"]
ROUNDING_MODES: tuple[str, ...] = get_args(RoundingMode)
RANGE_METHODS: tuple[str, ...] = get_args(RangeMethod)
"""Weight rounding and clipping-range choices of the quantizers (torch-free, for settings
validation); :class:`optuna_kmtpe.quant.QuantizerSpec` explains them."""


def is_float_bits(bits: int) -> bool:
    """Whether ``bits`` means "keep in floating point" (16 or 32)."""
    return bits >= 16


def check_bits(
    bits: Any, *, field: str = "bits", where: str | None = None, allow_float: bool = True
) -> None:
    """Raise ``ValueError`` unless ``bits`` is one of :data:`ALLOWED_BITS` (an int, not a bool);
    the message names the ``field`` and, if given, ``where`` (e.g. ``"layer 'fc'"``).

    This is the one bit-width rule: settings, the search space, the sensitivity report, the
    configs and the quantizers all check with it. ``allow_float=False`` also refuses 16/32,
    for operands that must be quantized (a float layer has no quantization error to measure).
    """
    if (
        isinstance(bits, bool)
        or not isinstance(bits, int)
        or bits not in ALLOWED_BITS
        or (not allow_float and is_float_bits(bits))
    ):
        prefix = f"{where}: " if where else ""
        hint = ", or 16/32 to keep the layer in float" if allow_float else " (float has no grid)"
        raise ValueError(
            f"{prefix}{field}={bits!r} is not allowed; use an int in 1..8 for integer "
            f"quantization{hint}."
        )


def check_bit_choices(
    values: Iterable[Any], *, field: str, allow_float: bool = True
) -> tuple[int, ...]:
    """Candidate bit-widths (a setting such as ``weight_bits``) sorted ascending, each once,
    after :func:`check_bits` of every value; raise ``ValueError`` on an empty list.

    Example:
        >>> check_bit_choices([8, 2, 4, 2], field="weight_bits")
        (2, 4, 8)
    """
    values = list(values)
    if not values:
        raise ValueError(f"{field} must list at least one bit-width, got [].")
    for bits in values:
        check_bits(bits, field=field, allow_float=allow_float)
    return tuple(sorted(set(values)))


def check_width(width: Any, *, where: str) -> None:
    """Raise ``ValueError`` unless ``width`` is a finite number in ``(0, 1]``."""
    if (
        isinstance(width, bool)
        or not isinstance(width, (int, float))
        or not math.isfinite(width)
        or not 0.0 < width <= 1.0
    ):
        raise ValueError(
            f"{where}: width={width!r} is not allowed; use the fraction of output channels "
            f"kept, a number in (0, 1] (1.0 keeps every channel)."
        )


def check_width_choices(values: Iterable[Any], *, field: str = "widths") -> tuple[float, ...]:
    """Candidate widths sorted ascending, each once, after :func:`check_width` of every value;
    raise ``ValueError`` on an empty list.

    Example:
        >>> check_width_choices([1, 0.5, 0.5])
        (0.5, 1.0)
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"{field} must list at least one width, got [].")
    for width in values:
        check_width(width, where=field)
    return tuple(sorted(set(values)))


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """Quantization and width choice for one layer.

    Args:
        weight_bits: Weight bit-width: 1 (binary), 2..8, or 16/32 for float.
        act_bits: Bit-width of the layer's input activations: 1..8, or 16/32 for float.
        width: Fraction of output channels kept, in ``(0, 1]``.

    Example:
        >>> LayerConfig(weight_bits=4, act_bits=8, width=0.5)
        LayerConfig(weight_bits=4, act_bits=8, width=0.5)
    """

    weight_bits: int = FLOAT_BITS
    act_bits: int = FLOAT_BITS
    width: float = 1.0

    def __post_init__(self) -> None:
        check_bits(self.weight_bits, field="weight_bits", where="LayerConfig")
        check_bits(self.act_bits, field="act_bits", where="LayerConfig")
        check_width(self.width, where="LayerConfig")

    def to_dict(self) -> dict[str, Any]:
        return {"weight_bits": self.weight_bits, "act_bits": self.act_bits, "width": self.width}


FLOAT_LAYER = LayerConfig()
"""What a layer missing from a config gets: float weights and activations, full width."""

_LAYER_KEYS = frozenset(("weight_bits", "act_bits", "width"))


class QuantConfig(Mapping[str, LayerConfig]):
    """Per-layer bit-widths and widths of a whole model, keyed by module path.

    Immutable, ordered (the order given, normally the model's module order), hashable, and
    JSON round-trippable. Validated at construction: every error names the layer and the
    allowed values.

    Args:
        layers: Mapping from module path to a :class:`LayerConfig` or to a dict with the keys
            ``weight_bits``, ``act_bits`` and ``width`` (missing keys take the float defaults).

    Example:
        >>> cfg = QuantConfig({"conv1": LayerConfig(4, 8, 1.0), "fc": {"weight_bits": 8}})
        >>> cfg["fc"].act_bits
        32
        >>> QuantConfig.from_json(cfg.to_json()) == cfg
        True
    """

    def __init__(self, layers: Mapping[str, LayerConfig | Mapping[str, Any]]) -> None:
        if not isinstance(layers, Mapping):
            raise ValueError(
                f"QuantConfig expects a mapping from layer name to LayerConfig, got "
                f"{type(layers).__name__}."
            )
        parsed: dict[str, LayerConfig] = {}
        for name, layer in layers.items():
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"QuantConfig: layer names must be non-empty module paths, got {name!r}."
                )
            parsed[name] = _parse_layer(name, layer)
        self._layers = parsed

    @classmethod
    def uniform(
        cls,
        layer_names: Iterable[str],
        *,
        weight_bits: int = 8,
        act_bits: int = 8,
        width: float = 1.0,
    ) -> QuantConfig:
        """The same bits and width for every named layer.

        Example:
            >>> QuantConfig.uniform(["a", "b"], weight_bits=4)["b"].weight_bits
            4
        """
        layer = LayerConfig(weight_bits=weight_bits, act_bits=act_bits, width=width)
        return cls({name: layer for name in layer_names})

    def __getitem__(self, name: str) -> LayerConfig:
        return self._layers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantConfig):
            return NotImplemented
        return self._layers == other._layers

    def __hash__(self) -> int:
        return hash(tuple(self._layers.items()))

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{name!r}: ({c.weight_bits}, {c.act_bits}, {c.width:g})"
            for name, c in self._layers.items()
        )
        return f"QuantConfig({{{inner}}})  # (weight_bits, act_bits, width)"

    def layer(self, name: str) -> LayerConfig:
        """The config of ``name``, or :data:`FLOAT_LAYER` if the config does not mention it."""
        return self._layers.get(name, FLOAT_LAYER)

    def replace(self, name: str, **changes: Any) -> QuantConfig:
        """A copy with one layer's fields changed (a layer not yet present starts as float)."""
        layers = dict(self._layers)
        layers[name] = dataclasses.replace(self.layer(name), **changes)
        return QuantConfig(layers)

    def check_layers(self, known_layers: Iterable[str]) -> None:
        """Raise ``ValueError`` if the config names a layer that the model does not have.

        Args:
            known_layers: Module paths of the model's quantizable layers.
        """
        known = list(known_layers)
        unknown = [name for name in self._layers if name not in set(known)]
        if unknown:
            raise ValueError(
                f"QuantConfig names layer(s) {unknown} that are not quantizable layers of the "
                f"model. Known quantizable layers: {known}."
            )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: layer.to_dict() for name, layer in self._layers.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> QuantConfig:
        return cls(data)

    def to_json(self, **json_kwargs: Any) -> str:
        return json.dumps({"layers": self.to_dict()}, **json_kwargs)

    @classmethod
    def from_json(cls, text: str) -> QuantConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"QuantConfig.from_json: not valid JSON ({exc}).") from exc
        if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
            raise ValueError(
                'QuantConfig.from_json expects an object {"layers": {name: {"weight_bits": '
                '..., "act_bits": ..., "width": ...}}}.'
            )
        return cls(data["layers"])


def _parse_layer(name: str, layer: LayerConfig | Mapping[str, Any]) -> LayerConfig:
    where = f"layer {name!r}"
    if isinstance(layer, LayerConfig):
        return layer
    if not isinstance(layer, Mapping):
        raise ValueError(
            f"{where}: expected a LayerConfig or a dict with keys weight_bits, act_bits, width; "
            f"got {type(layer).__name__}."
        )
    extra = set(layer) - _LAYER_KEYS
    if extra:
        raise ValueError(
            f"{where}: unknown key(s) {sorted(extra)}; allowed keys are {sorted(_LAYER_KEYS)}."
        )
    fields = {**FLOAT_LAYER.to_dict(), **layer}
    try:
        return LayerConfig(**fields)
    except ValueError as exc:
        raise ValueError(str(exc).replace("LayerConfig", where, 1)) from None
