"""``MonotoneSearchSpace``: per-layer Optuna distributions whose configs respect sensitivity."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import IntDistribution

from optuna_kmtpe import geometry
from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.config import check_bit_choices
from optuna_kmtpe.config import check_bits
from optuna_kmtpe.config import check_width_choices
from optuna_kmtpe.config import is_float_bits
from optuna_kmtpe.sensitivity import SensitivityReport
from optuna_kmtpe.space import _budgets
from optuna_kmtpe.space._budgets import Levels
from optuna_kmtpe.space._describe import describe
from optuna_kmtpe.space._hawq import FrontierPoint
from optuna_kmtpe.space._hawq import frontier
from optuna_kmtpe.space._order import count_monotone
from optuna_kmtpe.space._order import is_monotone
from optuna_kmtpe.space._order import project_monotone
from optuna_kmtpe.space._order import trace_order


WEIGHT_SUFFIX = ".w_level"
ACT_SUFFIX = ".a_level"
WIDTH_SUFFIX = ".width_level"
SUFFIXES = (WEIGHT_SUFFIX, ACT_SUFFIX, WIDTH_SUFFIX)
"""The parameter name of a layer's weight, activation and width level: ``name + suffix``."""


class MonotoneSearchSpace:
    """Per-layer bit-width (and width) choices that never give a more sensitive layer fewer bits.

    **Order.** Layer ``i`` must get at least as many weight bits as layer ``j`` when its average
    Hessian trace is significantly larger: ``T_i - s*SE_i > T_j + s*SE_j`` with
    ``s = order_sigma`` (disjoint +-s standard-error intervals). Layers whose traces are within
    noise are not ordered, so Hutchinson noise never becomes a hard, wrong constraint. With
    activation traces in the report (``compute_sensitivity(..., activations=True)``) the
    activation bits follow the same rule on the activation traces; otherwise they are free.

    **Pruning.** With ``size_budget_bits``, a weight choice is removed from a layer when no
    monotone config that uses it fits the budget (even with every other layer at its smallest
    choice and every prunable layer at its smallest width). Because forcing a layer to ``b``
    bits forces every more sensitive layer to ``>= b``, the surviving choices of each layer are
    a prefix of ``weight_bits``, longer for more sensitive layers. Configs the sampler draws may
    still exceed the budget: check :meth:`fits_budget` in the objective (as a constraint or by
    pruning the trial). With ``budgets`` and a ``cost_fn`` (any cost that never falls when a
    layer gets more bits or more width, like every cost of the FPGA model), the same rule prunes
    weight bits, activation bits and widths: a choice goes when even the cheapest config that
    uses it exceeds a budget. :meth:`nearest_feasible` moves a config inside the budgets.

    **Parametrization (what TPE sees).** Every trial suggests the *same* distributions: one
    ``IntDistribution(0, k_i - 1)`` per layer and operand, a *level* indexing the layer's
    allowed choices (``"<layer>.w_level"``, ``"<layer>.a_level"``, ``"<layer>.width_level"``;
    layers with a single choice suggest nothing). Levels are integers, so TPE's kernels see that
    level 3 is near level 2. The levels are then projected onto the monotone set by
    :func:`~optuna_kmtpe.space._order.project_monotone` (midpoint of the smallest monotone
    config above and the largest below). The projection is the identity on monotone configs,
    so (a) every monotone config is reachable, (b) :meth:`params_for` returns a config's own
    levels, which makes warm starts (``study.enqueue_trial``) reproduce exactly, and (c) once
    good trials cluster on monotone levels, TPE's per-parameter densities model the
    configurations themselves rather than an encoding. Non-monotone draws are not wasted: they
    land on a nearby monotone config, and each layer's level still moves its own bits in the
    same direction. Alternatives considered: sampling in sensitivity order with bounds that
    depend on earlier draws (dynamic distributions, which TPE cannot model), a "tier" or
    increment encoding (one parameter shifts many layers, which independent TPE models poorly),
    and rejecting non-monotone draws (the monotone fraction of a 20-layer space is tiny).

    Args:
        report: Per-layer sensitivities (:class:`~optuna_kmtpe.sensitivity.SensitivityReport`).
        weight_bits: Candidate weight bit-widths (1..8; 16/32 keep a layer in float).
        act_bits: Candidate input-activation bit-widths, or ``None`` to fix them at
            ``default_act_bits``.
        widths: Candidate width fractions for prunable layers, or ``None`` (full width).
        prunable_layers: Layers whose width may change (names, or ``ChannelGraph.prunable``);
            required when ``widths`` is given. Other layers keep width 1.0.
        producers: ``ChannelGraph.producers``: the layer whose output channels feed each
            layer's input, so that sizes account for input channels removed upstream.
        size_budget_bits: Largest model size (weight bits) a config may have; enables pruning.
        budgets: Upper limits on the costs ``cost_fn`` returns (metric name -> limit, e.g.
            ``{"latency_s": 2e-5}``); enables pruning by every cost. Needs ``cost_fn``.
        cost_fn: ``config -> {metric: value}``, costs that never fall when a layer gets more
            bits or width (e.g. ``hardware_cost_fn(fpga, shapes)(config).metrics``).
        order_sigma: Standard errors that separate two ordered layers (0 orders by the means).
        default_act_bits: Activation bits when ``act_bits`` is ``None``.
        layers: Restrict the space to these layers (default: all layers of the report);
            layers left out stay float.

    Example:
        >>> import optuna
        >>> from optuna_kmtpe.sensitivity import LayerSensitivity, SensitivityReport
        >>> def layer(name, trace):
        ...     return LayerSensitivity(name, "Linear", 100, 10, 10, trace, trace / 100, 64,
        ...                             {b: 1.0 / 4**b for b in (2, 4, 8)})
        >>> report = SensitivityReport(layers=(layer("a", 1.0), layer("b", 0.1)))
        >>> space = MonotoneSearchSpace(report, weight_bits=(2, 4, 8), act_bits=None)
        >>> space.size_before, space.size_after  # 3 x 3 configs, 6 with bits_a >= bits_b
        (9, 6)
        >>> config = space.suggest(optuna.trial.FixedTrial({"a.w_level": 0, "b.w_level": 2}))
        >>> config["a"].weight_bits >= config["b"].weight_bits
        True
    """

    def __init__(
        self,
        report: SensitivityReport,
        *,
        weight_bits: Sequence[int] = (2, 3, 4, 6, 8),
        act_bits: Sequence[int] | None = (4, 8),
        widths: Sequence[float] | None = None,
        prunable_layers: Iterable[str] | Mapping[str, bool] | None = None,
        producers: Mapping[str, str | None] | None = None,
        size_budget_bits: float | None = None,
        order_sigma: float = 2.0,
        default_act_bits: int = 8,
        layers: Sequence[str] | None = None,
        budgets: Mapping[str, float] | None = None,
        cost_fn: Callable[[QuantConfig], Mapping[str, float]] | None = None,
    ) -> None:
        if not isinstance(report, SensitivityReport):
            raise ValueError(
                "report must be a SensitivityReport (compute_sensitivity(...) or "
                f"SensitivityReport.load_from_study(study)), got {type(report).__name__}."
            )
        self.report = report
        names = list(report.names) if layers is None else list(layers)
        if not names:
            raise ValueError("The search space needs at least one layer.")
        unknown = [name for name in names if name not in report.names]
        if unknown:
            raise ValueError(
                f"layers {unknown} are not in the report; its layers are {list(report.names)}."
            )
        self.layer_names: tuple[str, ...] = tuple(names)
        self.weight_bits = check_bit_choices(weight_bits, field="weight_bits")
        missing = [
            b for b in self.weight_bits if not is_float_bits(b) and b not in report.weight_bits
        ]
        if missing:
            raise ValueError(
                f"The report has no weight perturbation for bits {missing}; recompute it with "
                f"compute_sensitivity(..., weight_bits=...) including them."
            )
        self.act_bits = None if act_bits is None else check_bit_choices(act_bits, field="act_bits")
        check_bits(default_act_bits, field="default_act_bits")
        self.default_act_bits = default_act_bits
        self.widths = None if widths is None else check_width_choices(widths)
        self.order_sigma = float(order_sigma)
        self.size_budget_bits = size_budget_bits
        self.budgets: dict[str, float] = dict(budgets or {})
        if self.budgets and cost_fn is None:
            raise ValueError(
                "budgets need cost_fn, the config -> {metric: value} map they limit (e.g. "
                "hardware_cost_fn(fpga, shapes)(config).metrics)."
            )
        self.cost_fn = cost_fn

        if self.widths is not None and prunable_layers is None:
            raise ValueError(
                "widths needs prunable_layers: pass channel_graph(model, x).prunable (or the "
                "names of layers whose output channels may be removed)."
            )
        if isinstance(prunable_layers, Mapping):
            prunable = {name for name, ok in prunable_layers.items() if ok}
        else:
            prunable = set(prunable_layers or ())
        self.prunable: frozenset[str] = frozenset(
            name for name in names if self.widths is not None and name in prunable
        )
        self.producers = dict(producers or {})

        stats = [report[name] for name in names]
        index = {name: i for i, name in enumerate(names)}
        producer_index = [index.get(self.producers.get(name)) for name in names]  # type: ignore[arg-type]
        # The space knows weight counts, not shapes: input channels are counted in units of the
        # producer's output channels, so a layer keeps that fraction of its inputs.
        self._layout = geometry.ChannelLayout(
            out_channels=[s.out_channels for s in stats],
            in_channels=[1 if p is None else stats[p].out_channels for p in producer_index],
            producers=producer_index,
        )
        self._n_params = [s.n_params for s in stats]
        no_order = tuple(frozenset() for _ in names)
        self.weight_below = trace_order(report, names, sigma=self.order_sigma)
        self.act_below = no_order
        if self.act_bits is not None and all(s.act_trace is not None for s in stats):
            self.act_below = trace_order(report, names, sigma=self.order_sigma, activations=True)

        full_cap = len(self.weight_bits) - 1
        self.weight_caps: tuple[int, ...] = tuple(full_cap for _ in names)
        if self.size_budget_bits is not None:
            smallest = [min(self.widths) if n in self.prunable else 1.0 for n in names]  # type: ignore[arg-type]
            kept = _budgets.kept_weights(self._layout, self._n_params, smallest)
            self.weight_caps = _budgets.size_caps(
                kept, self.weight_bits, self.weight_below, self.size_budget_bits
            )
        act_cap = 0 if self.act_bits is None else len(self.act_bits) - 1
        self.act_caps: tuple[int, ...] = tuple(act_cap for _ in names)
        width_cap = 0 if self.widths is None else len(self.widths) - 1
        self.width_caps = tuple(width_cap if name in self.prunable else 0 for name in names)
        orders = (self.weight_below, self.act_below, no_order)
        excess = lambda levels: self.budget_excess(self._levels_config(levels))  # noqa: E731
        if self.budgets:
            caps = _budgets.budget_caps(self._caps, orders, excess, self.budgets)
            self.weight_caps, self.act_caps, self.width_caps = caps

        width_product = (width_cap + 1) ** len(self.prunable)
        act_count = count_monotone([act_cap] * len(names), self.act_below)
        self.size_before: int = (len(self.weight_bits) * (act_cap + 1)) ** len(
            names
        ) * width_product
        self.size_monotone: int = (
            count_monotone([full_cap] * len(names), self.weight_below) * act_count * width_product
        )
        self.size_after: int = (
            count_monotone(self.weight_caps, self.weight_below)
            * count_monotone(self.act_caps, self.act_below)
            * math.prod(cap + 1 for cap in self.width_caps)
        )
        self.size_within_budgets: int | None = (
            _budgets.estimate_fitting(self._caps, orders, excess, self.size_after)
            if self.budgets
            else None
        )
        """Estimated configs of :attr:`size_after` that fit every budget (None: no budgets)."""

    @property
    def _caps(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return self.weight_caps, self.act_caps, self.width_caps

    # Levels <-> configs ------------------------------------------------------------------------
    def _levels_config(self, levels: Levels) -> QuantConfig:
        """The config of weight, activation and width levels (taken as they are)."""
        w_levels, a_levels, width_levels = levels
        layers = {}
        for i, name in enumerate(self.layer_names):
            width = 1.0
            if name in self.prunable and self.widths is not None:
                width = self.widths[width_levels[i]]
            act = self.default_act_bits if self.act_bits is None else self.act_bits[a_levels[i]]
            layers[name] = LayerConfig(
                weight_bits=self.weight_bits[w_levels[i]], act_bits=act, width=width
            )
        return QuantConfig(layers)

    def _projected_config(self, levels: Levels) -> QuantConfig:
        """The config of any levels, bits projected onto the orders (what a trial gets)."""
        return self._levels_config(
            (
                project_monotone(levels[0], self.weight_below),
                project_monotone(levels[1], self.act_below),
                levels[2],
            )
        )

    def _choice_levels(self, config: QuantConfig) -> tuple[list[int], list[int], list[int]]:
        """Weight, activation and width levels of ``config``'s choices (caps not checked)."""
        w_levels, a_levels, width_levels = [], [], []
        for name in self.layer_names:
            layer = config.layer(name)
            w_levels.append(_index(self.weight_bits, layer.weight_bits, name, "weight_bits"))
            if self.act_bits is None:
                if layer.act_bits != self.default_act_bits:
                    raise ValueError(
                        f"Layer {name!r}: act_bits={layer.act_bits}, but this space fixes "
                        f"activations at {self.default_act_bits} bits."
                    )
                a_levels.append(0)
            else:
                a_levels.append(_index(self.act_bits, layer.act_bits, name, "act_bits"))
            if name in self.prunable and self.widths is not None:
                width_levels.append(_index(self.widths, layer.width, name, "width"))
            elif layer.width != 1.0:
                raise ValueError(f"Layer {name!r} is not prunable here: its width must be 1.0.")
            else:
                width_levels.append(0)
        return w_levels, a_levels, width_levels

    def _paired_act_level(self, weight_bits: int) -> int:
        """The smallest activation choice with at least ``weight_bits`` (else the largest)."""
        assert self.act_bits is not None
        return next(
            (k for k, bits in enumerate(self.act_bits) if bits >= weight_bits),
            len(self.act_bits) - 1,
        )

    # Optuna interface ---------------------------------------------------------------------------
    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """The fixed distributions every trial suggests (name -> ``IntDistribution`` of levels)."""
        return {
            name + suffix: IntDistribution(0, caps[i])
            for i, name in enumerate(self.layer_names)
            for suffix, caps in zip(SUFFIXES, self._caps)
            if caps[i] > 0
        }

    def suggest(self, trial: optuna.trial.BaseTrial) -> QuantConfig:
        """Suggest every level from its fixed distribution and return the monotone config."""
        params = {
            name: trial.suggest_int(name, dist.low, dist.high)  # type: ignore[attr-defined]
            for name, dist in self.distributions.items()
        }
        return self.config_from_params(params)

    def config_from_params(self, params: Mapping[str, int]) -> QuantConfig:
        """The config of a trial's params (``trial.params``); missing levels count as 0."""
        return self._projected_config(
            [
                [_level(params, name + suffix, caps[i]) for i, name in enumerate(self.layer_names)]
                for suffix, caps in zip(SUFFIXES, self._caps)
            ]
        )

    def params_for(self, config: QuantConfig) -> dict[str, int]:
        """The trial params that make :meth:`suggest` return ``config`` (for ``enqueue_trial``).

        Raises:
            ValueError: If ``config`` is outside the space (a bit-width or width that is not a
                choice, a pruned choice, or a violated order).
        """
        levels = self._choice_levels(config)
        budget = "budgets" if self.budgets else "size budget"
        for i, name in enumerate(self.layer_names):
            layer = config.layer(name)
            for field, value, level, cap, choices in (
                ("weights", f"{layer.weight_bits}-bit", levels[0][i], self.weight_caps[i],
                 self.weight_bits),
                ("activations", f"{layer.act_bits}-bit", levels[1][i], self.act_caps[i],
                 self.act_bits),
                ("width", f"{layer.width:g}", levels[2][i], self.width_caps[i], self.widths),
            ):  # fmt: skip
                if level > cap:
                    raise ValueError(
                        f"Layer {name!r}: {value} {field} were pruned by the {budget} "
                        f"(allowed: {list((choices or ())[: cap + 1])})."
                    )
        if not is_monotone(levels[0], self.weight_below):
            raise ValueError("The config's weight bits violate the sensitivity order.")
        if not is_monotone(levels[1], self.act_below):
            raise ValueError("The config's activation bits violate the sensitivity order.")
        return {
            name + suffix: kind_levels[i]
            for i, name in enumerate(self.layer_names)
            for suffix, kind_levels, caps in zip(SUFFIXES, levels, self._caps)
            if caps[i] > 0
        }

    def pair_activation_bits(self, config: QuantConfig) -> QuantConfig:
        """``config`` with each layer's activation bits lowered or raised to match its weights.

        Each layer gets the smallest activation choice that is at least its weight bit-width
        (the largest choice if none is), then the activation levels are projected onto the
        activation order like any trial's. On hardware whose multipliers pack by the wider
        operand (``p(b_w, b_a)`` of the FPGA model), a config with narrow weights and 8-bit
        activations costs as much as 8-bit weights; pairing lets the weight savings of a
        HAWQ-V2 selection reach latency and energy.

        Args:
            config: A config of the space's choices.

        Returns:
            ``config`` with paired activation bits; ``config`` itself when activations are not
            searched. Choices pruned by budgets are not lowered (see :meth:`nearest_feasible`).

        Raises:
            ValueError: If ``config`` uses a bit-width or width that is not a choice.

        Example:
            >>> from optuna_kmtpe.sensitivity import LayerSensitivity, SensitivityReport
            >>> bits_error = {2: 4.0, 8: 0.0}
            >>> layer = LayerSensitivity("fc", "Linear", 100, 10, 10, 1.0, 0.01, 64, bits_error)
            >>> space = MonotoneSearchSpace(
            ...     SensitivityReport(layers=(layer,)), weight_bits=(2, 8), act_bits=(4, 8)
            ... )
            >>> space.pair_activation_bits(QuantConfig.uniform(["fc"], weight_bits=2)).layer("fc")
            LayerConfig(weight_bits=2, act_bits=4, width=1.0)
        """
        w_levels, _, width_levels = self._choice_levels(config)
        if self.act_bits is None:
            return config
        a_levels = [self._paired_act_level(config.layer(n).weight_bits) for n in self.layer_names]
        return self._levels_config(
            (w_levels, project_monotone(a_levels, self.act_below), width_levels)
        )

    # Sizes and budgets ---------------------------------------------------------------------------
    def size_bits(self, config: QuantConfig) -> float:
        """Weight storage of ``config`` in bits, counting removed channels (float = 32 bits):
        :func:`optuna_kmtpe.geometry.budget_size_bits`, not the recorded ``size_bits``."""
        layers = [config.layer(name) for name in self.layer_names]
        weights = _budgets.kept_weights(self._layout, self._n_params, [c.width for c in layers])
        return sum(
            geometry.budget_size_bits(kept, c.weight_bits) for c, kept in zip(layers, weights)
        )

    def budget_excess(self, config: QuantConfig) -> dict[str, float]:
        """The costs of ``config`` that exceed :attr:`budgets` (metric -> value; empty: fits)."""
        if not self.budgets:
            return {}
        costs = self.cost_fn(config)  # type: ignore[misc]
        return {
            name: float(costs[name])
            for name, limit in self.budgets.items()
            if float(costs[name]) > limit
        }

    def fits_budget(self, config: QuantConfig) -> bool:
        """Whether ``config`` fits ``size_budget_bits`` and every one of :attr:`budgets`."""
        if self.size_budget_bits is not None and self.size_bits(config) > self.size_budget_bits:
            return False
        return not self.budget_excess(config)

    def nearest_feasible(self, config: QuantConfig) -> QuantConfig | None:
        """``config`` if it fits every budget, else a nearby config of the space that does.

        Choices pruned by the budgets are first lowered to the largest that remain; then, one
        step at a time, the step that removes the most excess (summed over budgets, relative
        to each limit) is taken: one layer's weight bits one choice lower (its activation
        bits paired down with them, :meth:`pair_activation_bits`), its activation bits or its
        width one choice lower. Ties go to bits before widths and to the least sensitive
        layer (smallest trace), which HAWQ predicts costs the least accuracy.

        Args:
            config: Any config of the space's choices (pruned ones included).

        Returns:
            A config inside the space that fits, or None if no sequence of steps finds one.
        """
        paired = None
        if self.act_bits is not None:
            paired = lambda level: self._paired_act_level(self.weight_bits[level])  # noqa: E731
        return _budgets.nearest_feasible(
            self._choice_levels(config),
            self._caps,
            build=self._projected_config,
            excess=self._relative_excess,
            sensitivity=[self.report[name].trace for name in self.layer_names],
            paired_act_level=paired,
        )

    def _relative_excess(self, config: QuantConfig) -> float:
        """How far ``config`` is over its budgets: the sum of ``value / limit - 1``."""
        over = self.budget_excess(config)
        if self.size_budget_bits is not None:
            size = self.size_bits(config)
            if size > self.size_budget_bits:
                over["size_bits (space)"] = size
        limits = {**self.budgets, "size_bits (space)": self.size_budget_bits or 1.0}
        return sum(value / limits[name] - 1.0 for name, value in over.items())

    # HAWQ-V2 and display ---------------------------------------------------------------------
    def hawq_v2_frontier(
        self, *, method: str = "auto", omega: str = "trace"
    ) -> list[FrontierPoint]:
        """HAWQ-V2 frontier restricted to this space's configs (monotone, pruned, full width,
        activations at the largest choice), ordered by size; every config is in the space.
        ``omega="quadratic"`` uses the exact second-order terms instead of traces."""
        act = self.default_act_bits if self.act_bits is None else self.act_bits[-1]
        return frontier(
            self.report,
            self.layer_names,
            self.weight_bits,
            self.weight_caps,
            self.weight_below,
            act,
            method,
            omega,
        )

    def describe(self) -> str:
        """A table of the space: per layer its trace, what it must dominate, and its choices."""
        return describe(self)

    def __repr__(self) -> str:
        return (
            f"MonotoneSearchSpace(layers={len(self.layer_names)}, weight_bits={self.weight_bits}, "
            f"act_bits={self.act_bits}, widths={self.widths}, size_after={self.size_after})"
        )


def _level(params: Mapping[str, Any], key: str, cap: int) -> int:
    value = params.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= cap:
        raise ValueError(f"Parameter {key}={value!r} is not a level in 0..{cap}.")
    return value


def _index(choices: Sequence[Any], value: Any, name: str, field: str) -> int:
    for k, choice in enumerate(choices):
        if choice == value:
            return k
    raise ValueError(f"Layer {name!r}: {field}={value!r} is not one of {list(choices)}.")
