"""``MonotoneSearchSpace``: per-layer Optuna distributions whose configs respect sensitivity."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any
from typing import NamedTuple

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import IntDistribution

from optuna_kmtpe import geometry
from optuna_kmtpe.config import ALLOWED_BITS
from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.config import check_bits
from optuna_kmtpe.config import is_float_bits
from optuna_kmtpe.records import SIZE_BITS
from optuna_kmtpe.sensitivity import SensitivityReport
from optuna_kmtpe.space import _hawq
from optuna_kmtpe.space._order import above_sets
from optuna_kmtpe.space._order import count_monotone
from optuna_kmtpe.space._order import is_monotone
from optuna_kmtpe.space._order import project_monotone
from optuna_kmtpe.space._order import sensitivity_order


WEIGHT_SUFFIX = ".w_level"
ACT_SUFFIX = ".a_level"
WIDTH_SUFFIX = ".width_level"


class FrontierPoint(NamedTuple):
    """One point of a HAWQ-V2 frontier: model size in bits, Omega, and the config."""

    size_bits: float
    omega: float
    config: QuantConfig


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
        self.weight_bits = _check_bits_list(weight_bits, "weight_bits")
        missing = [
            b for b in self.weight_bits if not is_float_bits(b) and b not in report.weight_bits
        ]
        if missing:
            raise ValueError(
                f"The report has no weight perturbation for bits {missing}; recompute it with "
                f"compute_sensitivity(..., weight_bits=...) including them."
            )
        self.act_bits = None if act_bits is None else _check_bits_list(act_bits, "act_bits")
        check_bits(default_act_bits, field="default_act_bits")
        self.default_act_bits = default_act_bits
        self.widths = None if widths is None else _check_widths(widths)
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
        self.weight_below = sensitivity_order(
            [s.trace for s in stats], [s.trace_stderr for s in stats], sigma=self.order_sigma
        )
        if self.act_bits is not None and all(s.act_trace is not None for s in stats):
            self.act_below = sensitivity_order(
                [float(s.act_trace) for s in stats],  # type: ignore[arg-type]
                [float(s.act_trace_stderr or 0.0) for s in stats],
                sigma=self.order_sigma,
            )
        else:
            self.act_below = tuple(frozenset() for _ in names)

        full_cap = len(self.weight_bits) - 1
        self.weight_caps: tuple[int, ...] = self._prune_caps(full_cap)
        act_cap = 0 if self.act_bits is None else len(self.act_bits) - 1
        self.act_caps: tuple[int, ...] = tuple(act_cap for _ in names)
        width_cap = 0 if self.widths is None else len(self.widths) - 1
        self.width_caps: tuple[int, ...] = tuple(
            width_cap if name in self.prunable else 0 for name in names
        )
        if self.budgets:
            self.weight_caps, self.act_caps, self.width_caps = self._budget_caps()

        width_product = 1
        for name in names:
            width_product *= width_cap + 1 if name in self.prunable else 1
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
            self._estimate_within_budgets() if self.budgets else None
        )
        """Estimated configs of :attr:`size_after` that fit every budget (None: no budgets)."""

    # Construction helpers ---------------------------------------------------------------------
    def _min_width(self, name: str) -> float:
        return min(self.widths) if self.widths is not None and name in self.prunable else 1.0

    def _kept_weights(self, widths: Mapping[str, float]) -> list[float]:
        """Weights left in each layer at ``widths``: ``n_params`` x the fractions of its output
        channels and of its producer's (:meth:`~optuna_kmtpe.geometry.ChannelLayout.pruned`)."""
        layout = self._layout
        pruned = layout.pruned([widths.get(name, 1.0) for name in self.layer_names])
        ratios = (pruned.out_channels[0] / layout.out_channels) * (
            pruned.in_channels[0] / layout.in_channels
        )
        return [
            self.report[name].n_params * ratio
            for name, ratio in zip(self.layer_names, ratios.tolist())
        ]

    def _prune_caps(self, full_cap: int) -> tuple[int, ...]:
        if self.size_budget_bits is None:
            return tuple(full_cap for _ in self.layer_names)
        min_widths = {name: self._min_width(name) for name in self.layer_names}
        costs = self._kept_weights(min_widths)
        bits = [geometry.float32_bits(b) for b in self.weight_bits]
        floor = bits[0] * sum(costs)
        if floor > self.size_budget_bits:
            raise ValueError(
                f"size_budget_bits={self.size_budget_bits:g} is below the smallest model this "
                f"space can build ({floor:g} bits, every layer at {self.weight_bits[0]} bits and "
                f"minimal width); raise the budget or add smaller weight_bits."
            )
        above = above_sets(self.weight_below)
        caps = []
        for i in range(len(self.layer_names)):
            forced = above[i] | {i}
            cap = 0
            for level in range(full_cap + 1):
                size = sum(
                    (bits[level] if j in forced else bits[0]) * costs[j] for j in range(len(costs))
                )
                if size <= self.size_budget_bits:
                    cap = level
            caps.append(cap)
        return tuple(caps)

    def _levels_config(
        self, w_levels: Sequence[int], a_levels: Sequence[int], width_levels: Sequence[int]
    ) -> QuantConfig:
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

    def _budget_caps(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Caps of each layer's weight, activation and width levels under :attr:`budgets`.

        A level stays when the cheapest config using it fits: that layer (and, for bits, every
        layer the order forces up with it) at the level, everything else at its smallest
        choice. With costs that never fall as bits or widths grow, a pruned level is in no
        feasible config.
        """
        n = len(self.layer_names)
        zeros = [0] * n
        floor = self.budget_excess(self._levels_config(zeros, zeros, zeros))
        if floor:
            over = ", ".join(f"{m}={value:g} > {self.budgets[m]:g}" for m, value in floor.items())
            raise ValueError(
                f"The budgets are below the cheapest config this space can build ({over}, every "
                "layer at its smallest bits and width); raise them or add smaller choices."
            )

        def caps(
            current: Sequence[int], forced_sets: Sequence[frozenset[int]], kind: int
        ) -> tuple[int, ...]:
            result = []
            for i in range(n):
                cap = 0
                for level in range(1, current[i] + 1):
                    levels = [level if j in forced_sets[i] or j == i else 0 for j in range(n)]
                    args = [zeros, zeros, zeros]
                    args[kind] = levels
                    if not self.budget_excess(self._levels_config(*args)):
                        cap = level
                result.append(cap)
            return tuple(result)

        no_order = tuple(frozenset() for _ in range(n))
        return (
            caps(self.weight_caps, above_sets(self.weight_below), 0),
            caps(self.act_caps, above_sets(self.act_below), 1),
            caps(self.width_caps, no_order, 2),
        )

    def _estimate_within_budgets(self, samples: int = 2000, seed: int = 0) -> int:
        """Configs after pruning that fit the budgets, estimated from uniform samples.

        Per-choice pruning is exact for single choices but not for their combinations; the
        joint count is a fraction of :attr:`size_after`, measured on ``samples`` uniform draws
        of the pruned levels that respect the order (deterministic: a fixed ``seed``).
        """
        rng = np.random.default_rng(seed)
        inside = fits = 0
        for _ in range(samples):
            w = [int(rng.integers(0, cap + 1)) for cap in self.weight_caps]
            a = [int(rng.integers(0, cap + 1)) for cap in self.act_caps]
            x = [int(rng.integers(0, cap + 1)) for cap in self.width_caps]
            if not (is_monotone(w, self.weight_below) and is_monotone(a, self.act_below)):
                continue
            inside += 1
            fits += not self.budget_excess(self._levels_config(w, a, x))
        return round(self.size_after * fits / inside) if inside else self.size_after

    # Optuna interface ---------------------------------------------------------------------------
    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """The fixed distributions every trial suggests (name -> ``IntDistribution`` of levels)."""
        dists: dict[str, BaseDistribution] = {}
        for i, name in enumerate(self.layer_names):
            if self.weight_caps[i] > 0:
                dists[name + WEIGHT_SUFFIX] = IntDistribution(0, self.weight_caps[i])
            if self.act_caps[i] > 0:
                dists[name + ACT_SUFFIX] = IntDistribution(0, self.act_caps[i])
            if self.width_caps[i] > 0:
                dists[name + WIDTH_SUFFIX] = IntDistribution(0, self.width_caps[i])
        return dists

    def suggest(self, trial: optuna.trial.BaseTrial) -> QuantConfig:
        """Suggest every level from its fixed distribution and return the monotone config."""
        params = {
            name: trial.suggest_int(name, dist.low, dist.high)  # type: ignore[attr-defined]
            for name, dist in self.distributions.items()
        }
        return self.config_from_params(params)

    def config_from_params(self, params: Mapping[str, int]) -> QuantConfig:
        """The config of a trial's params (``trial.params``); missing levels count as 0."""
        w_levels = [
            self._level(params, name + WEIGHT_SUFFIX, self.weight_caps[i])
            for i, name in enumerate(self.layer_names)
        ]
        a_levels = [
            self._level(params, name + ACT_SUFFIX, self.act_caps[i])
            for i, name in enumerate(self.layer_names)
        ]
        width_levels = [
            self._level(params, name + WIDTH_SUFFIX, self.width_caps[i])
            for i, name in enumerate(self.layer_names)
        ]
        return self._levels_config(
            project_monotone(w_levels, self.weight_below),
            project_monotone(a_levels, self.act_below),
            width_levels,
        )

    @staticmethod
    def _level(params: Mapping[str, Any], key: str, cap: int) -> int:
        value = params.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= cap:
            raise ValueError(f"Parameter {key}={value!r} is not a level in 0..{cap}.")
        return value

    def _choice_levels(self, config: QuantConfig) -> tuple[list[int], list[int], list[int]]:
        """Weight, activation and width levels of ``config``'s choices (caps not checked)."""
        w_levels, a_levels, width_levels = [], [], []
        for name in self.layer_names:
            layer = config.layer(name)
            w_levels.append(self._index(self.weight_bits, layer.weight_bits, name, "weight_bits"))
            if self.act_bits is None:
                if layer.act_bits != self.default_act_bits:
                    raise ValueError(
                        f"Layer {name!r}: act_bits={layer.act_bits}, but this space fixes "
                        f"activations at {self.default_act_bits} bits."
                    )
                a_levels.append(0)
            else:
                a_levels.append(self._index(self.act_bits, layer.act_bits, name, "act_bits"))
            if name in self.prunable and self.widths is not None:
                width_levels.append(self._index(self.widths, layer.width, name, "width"))
            elif layer.width != 1.0:
                raise ValueError(f"Layer {name!r} is not prunable here: its width must be 1.0.")
            else:
                width_levels.append(0)
        return w_levels, a_levels, width_levels

    def params_for(self, config: QuantConfig) -> dict[str, int]:
        """The trial params that make :meth:`suggest` return ``config`` (for ``enqueue_trial``).

        Raises:
            ValueError: If ``config`` is outside the space (a bit-width or width that is not a
                choice, a pruned choice, or a violated order).
        """
        w_levels, a_levels, width_levels = self._choice_levels(config)
        budget = "budgets" if self.budgets else "size budget"
        for i, name in enumerate(self.layer_names):
            layer = config.layer(name)
            for field, value, level, cap, choices in (
                ("weights", f"{layer.weight_bits}-bit", w_levels[i], self.weight_caps[i],
                 self.weight_bits),
                ("activations", f"{layer.act_bits}-bit", a_levels[i], self.act_caps[i],
                 self.act_bits),
                ("width", f"{layer.width:g}", width_levels[i], self.width_caps[i], self.widths),
            ):  # fmt: skip
                if level > cap:
                    raise ValueError(
                        f"Layer {name!r}: {value} {field} were pruned by the {budget} "
                        f"(allowed: {list((choices or ())[: cap + 1])})."
                    )
        if not is_monotone(w_levels, self.weight_below):
            raise ValueError("The config's weight bits violate the sensitivity order.")
        if not is_monotone(a_levels, self.act_below):
            raise ValueError("The config's activation bits violate the sensitivity order.")
        params = {}
        for i, name in enumerate(self.layer_names):
            if self.weight_caps[i] > 0:
                params[name + WEIGHT_SUFFIX] = w_levels[i]
            if self.act_caps[i] > 0:
                params[name + ACT_SUFFIX] = a_levels[i]
            if self.width_caps[i] > 0:
                params[name + WIDTH_SUFFIX] = width_levels[i]
        return {key: params[key] for key in self.distributions}

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
        a_levels = []
        for name in self.layer_names:
            weight_bits = config.layer(name).weight_bits
            a_levels.append(
                next(
                    (k for k, bits in enumerate(self.act_bits) if bits >= weight_bits),
                    len(self.act_bits) - 1,
                )
            )
        return self._levels_config(
            w_levels, project_monotone(a_levels, self.act_below), width_levels
        )

    @staticmethod
    def _index(choices: Sequence[Any], value: Any, name: str, field: str) -> int:
        for k, choice in enumerate(choices):
            if choice == value:
                return k
        raise ValueError(f"Layer {name!r}: {field}={value!r} is not one of {list(choices)}.")

    # Sizes -----------------------------------------------------------------------------------
    def size_bits(self, config: QuantConfig) -> float:
        """Weight storage of ``config`` in bits, counting removed channels (float = 32 bits):
        :func:`optuna_kmtpe.geometry.budget_size_bits`, not the recorded ``size_bits``."""
        weights = self._kept_weights({name: config.layer(name).width for name in self.layer_names})
        return sum(
            geometry.budget_size_bits(kept, config.layer(name).weight_bits)
            for name, kept in zip(self.layer_names, weights)
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
        w_levels, a_levels, width_levels = self._choice_levels(config)
        levels = [
            [min(v, cap) for v, cap in zip(w_levels, self.weight_caps)],
            [min(v, cap) for v, cap in zip(a_levels, self.act_caps)],
            [min(v, cap) for v, cap in zip(width_levels, self.width_caps)],
        ]

        def build(state: Sequence[Sequence[int]]) -> QuantConfig:
            return self._levels_config(
                project_monotone(state[0], self.weight_below),
                project_monotone(state[1], self.act_below),
                state[2],
            )

        def excess(candidate: QuantConfig) -> float:
            over = self.budget_excess(candidate)
            if self.size_budget_bits is not None:
                size = self.size_bits(candidate)
                if size > self.size_budget_bits:
                    over["size_bits (space)"] = size
            limits = {**self.budgets, "size_bits (space)": self.size_budget_bits or 1.0}
            return sum(value / limits[name] - 1.0 for name, value in over.items())

        sensitivity = [self.report[name].trace for name in self.layer_names]
        current = build(levels)
        remaining = excess(current)
        while remaining > 0:
            best: tuple[tuple[float, int, float], list[list[int]], QuantConfig] | None = None
            for i in range(len(self.layer_names)):
                for kind in range(3):
                    if levels[kind][i] == 0:
                        continue
                    state = [list(row) for row in levels]
                    state[kind][i] -= 1
                    if kind == 0 and self.act_bits is not None:
                        bits = self.weight_bits[state[0][i]]
                        paired = next(
                            (k for k, b in enumerate(self.act_bits) if b >= bits),
                            len(self.act_bits) - 1,
                        )
                        state[1][i] = min(state[1][i], paired)
                    candidate = build(state)
                    if candidate == current:
                        continue
                    key = (excess(candidate), kind == 2, sensitivity[i])
                    if best is None or key < best[0]:
                        best = (key, state, candidate)
            if best is None:
                return None
            (remaining, _, _), levels, current = best
        return current

    # HAWQ-V2 ---------------------------------------------------------------------------------
    def hawq_v2_frontier(
        self, *, method: str = "auto", omega: str = "trace"
    ) -> list[FrontierPoint]:
        """HAWQ-V2 frontier restricted to this space's configs (monotone, pruned, full width,
        activations at the largest choice), ordered by size; every config is in the space.
        ``omega="quadratic"`` uses the exact second-order terms instead of traces."""
        names, bits, sizes, omegas = _tables(
            self.report, self.weight_bits, self.layer_names, omega
        )
        points = _hawq.pareto_monotone(
            sizes, omegas, self.weight_caps, self.weight_below, method=method
        )
        act = self.default_act_bits if self.act_bits is None else self.act_bits[-1]
        return [
            FrontierPoint(p.size, p.omega, _levels_config(names, bits, p.levels, act))
            for p in points
        ]

    # Display ---------------------------------------------------------------------------------
    def describe(self) -> str:
        """A table of the space: per layer its trace, what it must dominate, and its choices."""
        rank = sorted(
            range(len(self.layer_names)), key=lambda i: -self.report[self.layer_names[i]].trace
        )
        position = {i: r + 1 for r, i in enumerate(rank)}
        rows = [
            [
                "layer",
                "rank",
                "Tr/n",
                "+-SE",
                "params",
                ">= #layers",
                "weight bits",
                "act bits",
                "widths",
            ]
        ]
        for i, name in enumerate(self.layer_names):
            stats = self.report[name]
            acts = [self.default_act_bits] if self.act_bits is None else list(self.act_bits)
            widths = [1.0]
            if name in self.prunable and self.widths:
                widths = list(self.widths[: self.width_caps[i] + 1])
            rows.append(
                [
                    name,
                    str(position[i]),
                    f"{stats.trace:.3e}",
                    f"{stats.trace_stderr:.1e}",
                    str(stats.n_params),
                    str(len(self.weight_below[i])),
                    ",".join(map(str, self.weight_bits[: self.weight_caps[i] + 1])),
                    ",".join(map(str, acts[: self.act_caps[i] + 1])),
                    ",".join(f"{w:g}" for w in widths),
                ]
            )
        widths_col = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths_col)) for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        limits = dict(self.budgets)
        if self.size_budget_bits is not None:
            limits.setdefault(SIZE_BITS, self.size_budget_bits)
        budgets = ", ".join(f"{name} <= {limit:g}" for name, limit in limits.items()) or "none"
        lines += [
            "",
            f"order_sigma={self.order_sigma:g}, budgets: {budgets}",
            f"configs: {self.size_before:.4g} unconstrained -> {self.size_monotone:.4g} monotone "
            f"-> {self.size_after:.4g} after pruning (exact: {self.size_after})"
            + (
                ""
                if self.size_within_budgets is None
                else f" -> about {self.size_within_budgets:.3g} within the budgets (sampled)"
            ),
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MonotoneSearchSpace(layers={len(self.layer_names)}, weight_bits={self.weight_bits}, "
            f"act_bits={self.act_bits}, widths={self.widths}, size_after={self.size_after})"
        )


def _check_bits_list(values: Sequence[int], field: str) -> tuple[int, ...]:
    values = tuple(values)
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{field} must be distinct ints from {ALLOWED_BITS}, got {list(values)}.")
    for bits in values:
        check_bits(bits, field=field)
    return tuple(sorted(values))


def _check_widths(values: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if (
        not values
        or any(not (0 < v <= 1) or not math.isfinite(v) for v in values)
        or len(set(values)) != len(values)
    ):
        raise ValueError(f"widths must be distinct fractions in (0, 1], got {list(values)}.")
    return tuple(sorted(values))


# Module-level HAWQ-V2 API ---------------------------------------------------------------------
def _tables(
    report: SensitivityReport,
    weight_bits: Sequence[int],
    layers: Sequence[str] | None,
    omega: str = "trace",
) -> tuple[list[str], tuple[int, ...], list[list[float]], list[list[float]]]:
    names = list(report.names) if layers is None else list(layers)
    bits = _check_bits_list(weight_bits, "weight_bits")
    sizes = [[geometry.budget_size_bits(report[n].n_params, b) for b in bits] for n in names]
    omegas = [[report[n].omega(b, kind=omega) for b in bits] for n in names]
    return names, bits, sizes, omegas


def hawq_v2_frontier(
    report: SensitivityReport,
    *,
    weight_bits: Sequence[int] = (2, 3, 4, 6, 8),
    order_sigma: float | None = None,
    act_bits: int = 8,
    layers: Sequence[str] | None = None,
    method: str = "auto",
    omega: str = "trace",
) -> list[FrontierPoint]:
    """Pareto frontier of Omega against model size (HAWQ-V2), ordered by size.

    ``Omega(config) = sum_i Tr(H_i)/n_i * ||Q_{b_i}(W_i) - W_i||^2`` and size
    ``= sum_i b_i * n_i`` (weights only). Without ``order_sigma`` (HAWQ-V2 proper) layers choose
    independently and the frontier comes from an exact dynamic program merging per-layer
    choices with dominance pruning. With ``order_sigma`` the configs must also respect the
    sensitivity order of :class:`MonotoneSearchSpace`; the frontier is then exact by
    enumeration for small spaces, else by a sweep of integer programs (``scipy.optimize.milp``,
    HiGHS, gap 0), one per frontier point. ``omega="quadratic"`` replaces each layer's
    ``trace * ||dW||^2`` by the exact ``0.5 * dW^T H dW`` stored in the report.

    Example:
        >>> from optuna_kmtpe.sensitivity import LayerSensitivity, SensitivityReport
        >>> def layer(name, trace):
        ...     return LayerSensitivity(name, "Linear", 100, 10, 10, trace, 0.0, 64,
        ...                             {b: 1.0 / 4**b for b in (2, 4, 8)})
        >>> report = SensitivityReport(layers=(layer("a", 1.0), layer("b", 0.1)))
        >>> [p.size_bits for p in hawq_v2_frontier(report, weight_bits=(2, 4, 8))]
        [400.0, 600.0, 800.0, 1200.0, 1600.0]
    """
    names, bits, sizes, omegas = _tables(report, weight_bits, layers, omega)
    caps = [len(bits) - 1] * len(names)
    if order_sigma is None:
        points = _hawq.pareto_independent(sizes, omegas, caps)
    else:
        below = sensitivity_order(
            [report[n].trace for n in names],
            [report[n].trace_stderr for n in names],
            sigma=order_sigma,
        )
        points = _hawq.pareto_monotone(sizes, omegas, caps, below, method=method)
    return [
        FrontierPoint(p.size, p.omega, _levels_config(names, bits, p.levels, act_bits))
        for p in points
    ]


def hawq_v2_select(
    report: SensitivityReport,
    size_budget_bits: float,
    *,
    weight_bits: Sequence[int] = (2, 3, 4, 6, 8),
    order_sigma: float | None = None,
    act_bits: int = 8,
    layers: Sequence[str] | None = None,
    method: str = "auto",
    omega: str = "trace",
) -> QuantConfig:
    """The config of minimal Omega whose weights fit ``size_budget_bits`` (HAWQ-V2 selection).

    Ties in Omega go to the smaller model. See :func:`hawq_v2_frontier` for the method.

    Raises:
        ValueError: If even the smallest config exceeds the budget.
    """
    names, bits, sizes, omegas = _tables(report, weight_bits, layers, omega)
    caps = [len(bits) - 1] * len(names)
    below = None
    if order_sigma is not None:
        below = sensitivity_order(
            [report[n].trace for n in names],
            [report[n].trace_stderr for n in names],
            sigma=order_sigma,
        )
    point = _hawq.select(sizes, omegas, caps, below, size_budget_bits, method=method)
    if point is None:
        smallest = sum(row[0] for row in sizes)
        raise ValueError(
            f"size_budget_bits={size_budget_bits:g} is below the smallest config "
            f"({smallest:g} bits at {bits[0]} bits everywhere); raise the budget."
        )
    return _levels_config(names, bits, point.levels, act_bits)


def _levels_config(
    names: Sequence[str], bits: Sequence[int], levels: Sequence[int], act_bits: int
) -> QuantConfig:
    return QuantConfig(
        {
            name: LayerConfig(weight_bits=bits[level], act_bits=act_bits, width=1.0)
            for name, level in zip(names, levels)
        }
    )
