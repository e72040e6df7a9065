"""Warm starts: known-good configs enqueued before the sampler takes over.

:func:`warm_start_study` is the one policy, used by ``kmtpe search``, ``optuna_kmtpe.search``
and ``benchmarks/mpq_search.py``: uniform 8/4-bit configs, then either one pruned config per
prunable layer (on the cheapest uniform config the forecast cannot tell from full precision) or,
when no width is searched or too many layers are prunable, HAWQ-V2 selections
(:func:`warm_start_configs`),
moved inside the budgets, dropped where the forecast says they add
nothing (:func:`warm_starts_inside`), at most as many as the study will run, enqueued once
(:func:`enqueue_warm_starts`).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import optuna

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import QuantConfig


PRUNED_WARM_START_SHARE = 0.1
"""The share of a study's trials the one-pruned-layer warm starts may take (see
:func:`warm_start_configs`): digits, 3 of 60 trials, gained; MNIST-1D, 9 of 40, lost."""


def warm_start_configs(
    space: Any,
    *,
    weight_bits: Sequence[int],
    act_bits: Sequence[int],
    n_trials: int | None = None,
    forecast: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> list[tuple[str, QuantConfig]]:
    """Uniform 8-bit and 4-bit configs, then what the sampler cannot know before training.

    When widths are searched and the prunable layers are at most a tenth of ``n_trials``
    (:data:`PRUNED_WARM_START_SHARE`): one config per prunable layer, uniform 4-bit with that layer
    alone at its smallest width. Pruning is where the forecast knows least (the Hessian's
    pruning terms cover only the layer's own weights and rank the layers wrongly on digits) and
    where the cheap configs are, so without these trials the first model-chosen ones go to the
    cheapest, most pruned configs and fail (digits: 76-86% after QAT). Measured on digits
    (10 paired seeds x 60 trials, ``benchmarks/mpq_search.py``): hypervolume at 20 trials
    0.0381 against 0.0353 with the HAWQ-V2 selections, TPE's 60-trial hypervolume reached in
    34 trials instead of 44 (docs/sampler.md). With more prunable layers they cost too much of
    the budget: on MNIST-1D (9 prunable layers, 40 trials) they lowered the hypervolume at
    every budget. With a ``forecast``, the 4-bit base of these configs (and the uniform one)
    becomes the cheapest uniform config whose forecast drop is within the forecast's own prior
    uncertainty (:func:`cheapest_safe_uniform`): digits, uniform 3-bit weights and 4-bit
    activations, which add hypervolume themselves while they measure the widths.

    Otherwise: HAWQ-V2 selections at 3 size budgets. Under budgets, a config that
    breaks one is replaced by the nearest config that fits (:func:`warm_starts_within_budgets`,
    which ``log`` tells).

    HAWQ-V2 selections respect the space's sensitivity order, so every one of them is a config
    the space can express (and ``params_for`` reproduces it exactly). Their activation bits are
    paired with their weight bits (:meth:`MonotoneSearchSpace.pair_activation_bits`) so that
    the selections are cheaper on the FPGA, not only smaller.
    """
    layers = list(space.layer_names)
    configs: list[tuple[str, QuantConfig]] = []
    n_pruned = len(width_layers(space))
    use_pruned = n_pruned > 0 and (
        n_trials is None or n_pruned <= PRUNED_WARM_START_SHARE * n_trials
    )
    base = cheapest_safe_uniform(space, forecast, weight_bits, act_bits) if use_pruned else None
    for bits in (8, 4):
        if bits in weight_bits:
            config = base if bits == 4 and base is not None else _uniform(layers, bits, act_bits)
            first = config[layers[0]]
            configs.append((f"uniform-w{first.weight_bits}a{first.act_bits}", config))
    pruned = (
        pruning_warm_starts(space, weight_bits=weight_bits, act_bits=act_bits, base=base)
        if use_pruned
        else []
    )
    # The space's own frontier: its (budget-pruned, monotone) configs, so each one is enqueueable.
    frontier = [] if pruned else space.hawq_v2_frontier()
    for fraction in (0.25, 0.5, 0.75):
        if frontier:
            point = frontier[min(len(frontier) - 1, int(fraction * len(frontier)))]
            # HAWQ-V2 chooses weight bits; with 8-bit activations the DSPs could not pack and
            # the selection would cost as much as uniform 8-bit (benchmarks/mpq_search.py:
            # paired warm starts gain about 8% hypervolume at 20 trials on digits).
            config = space.pair_activation_bits(point.config)
            configs.append((f"hawq-v2-{int(fraction * 100)}%", config))
    configs += pruned
    if getattr(space, "budgets", None) or getattr(space, "size_budget_bits", None) is not None:
        configs = warm_starts_within_budgets(configs, space, log=log)
    return configs


def pruning_warm_starts(
    space: Any,
    *,
    weight_bits: Sequence[int],
    act_bits: Sequence[int],
    base: QuantConfig | None = None,
) -> list[tuple[str, QuantConfig]]:
    """One config per prunable layer: ``base`` (default uniform 4-bit, or the widest searched
    bits) with that layer alone at its smallest width; ``[]`` when no width is searched.

    Example:
        >>> from types import SimpleNamespace
        >>> space = SimpleNamespace(layer_names=("a", "b"), widths=(0.5, 1.0), prunable={"a"})
        >>> [(label, c["a"].width, c["b"].width) for label, c in pruning_warm_starts(
        ...     space, weight_bits=[4, 8], act_bits=[4, 8])]
        [('pruned-a-w0.5', 0.5, 1.0)]
    """
    names = width_layers(space)
    if not names:
        return []
    if base is None:
        bits = 4 if 4 in weight_bits else max(weight_bits)
        base = _uniform(list(space.layer_names), bits, act_bits)
    smallest = min(space.widths)
    return [(f"pruned-{name}-w{smallest:g}", base.replace(name, width=smallest)) for name in names]


def width_layers(space: Any) -> list[str]:
    """The layers whose width the space searches, in layer order (the space leaves
    ``prunable`` empty when it searches no widths)."""
    prunable = getattr(space, "prunable", ())
    return [name for name in space.layer_names if name in prunable]


def cheapest_safe_uniform(
    space: Any,
    forecast: Mapping[str, Any] | None,
    weight_bits: Sequence[int],
    act_bits: Sequence[int],
) -> QuantConfig | None:
    """The uniform config of least cost whose forecast is as good as uniform max-bit's within
    the forecast's prior uncertainty (``predictor.prior_std``), or ``None`` without a forecast.

    A forecast drop smaller than the prior's own uncertainty is no evidence of a loss, so the
    cheaper config is as safe a base for the warm starts as uniform 4-bit and adds more
    hypervolume itself. Cost: the sum of the exact costs, each relative to the reference point.
    Measured on digits (10 paired seeds x 60 trials, ``benchmarks/mpq_search.py``): uniform
    3-bit weights with 4-bit activations as the base, hypervolume at 10 trials 0.0371 against
    0.0345 with 4-bit; uniform 2-bit weights (forecast 2 points down, outside the uncertainty)
    lost at every budget.

    Example:
        >>> cheapest_safe_uniform(None, None, [2, 4, 8], [4, 8]) is None
        True
    """
    if forecast is None:
        return None
    predictor = forecast.get("predictor")
    prior = getattr(predictor, "prior_mean", None)
    prior_std = getattr(predictor, "prior_std", None)
    if prior is None or prior_std is None:  # a user's predictor without a prior
        return None
    known, reference = forecast["known_objectives"], forecast["reference_point"]
    signs = [
        -1.0 if keys.METRICS[name].direction == "maximize" else 1.0
        for name in known.metrics
        if keys.METRICS[name].source != keys.COST
    ]
    layers = list(space.layer_names)

    def forecast_losses(config: QuantConfig) -> list[float]:
        """The prior's forecast of each training objective, as a loss (lower is better)."""
        return [sign * v for sign, v in zip(signs, prior(space.params_for(config)), strict=True)]

    widest = forecast_losses(
        QuantConfig.uniform(layers, weight_bits=max(weight_bits), act_bits=max(act_bits))
    )
    best: tuple[float, QuantConfig] | None = None
    for w in sorted(weight_bits):
        for a in sorted(act_bits):
            config = QuantConfig.uniform(layers, weight_bits=w, act_bits=a)
            losses = forecast_losses(config)
            if any(v - top > prior_std for v, top in zip(losses, widest)):
                continue
            costs = known.cost_fn(config).metrics
            cost = sum(
                float(costs[name]) / float(limit)
                for name, limit in zip(known.metrics, reference)
                if keys.METRICS[name].source == keys.COST
            )
            if best is None or cost < best[0]:
                best = (cost, config)
    return None if best is None else best[1]


def _uniform(layers: list[str], bits: int, act_bits: Sequence[int]) -> QuantConfig:
    """Uniform ``bits``-bit weights, activations at the same bits when searched (else the
    widest searched): the uniform warm starts and the base of the pruned ones."""
    act = bits if bits in act_bits else max(act_bits)
    return QuantConfig.uniform(layers, weight_bits=bits, act_bits=act)


def warm_starts_within_budgets(
    configs: Sequence[tuple[str, QuantConfig]],
    space: Any,
    *,
    log: Callable[[str], None] = print,
) -> list[tuple[str, QuantConfig]]:
    """``configs`` with each one that breaks a budget replaced by the nearest one that fits.

    A warm start the budgets rule out would only be recorded as infeasible (never trained), and
    one whose choices the budgets pruned cannot even be enqueued: either way the sampler would
    start with less. Each is replaced by :meth:`MonotoneSearchSpace.nearest_feasible` (labelled
    ``"<label> within budget"``) and the replacement is logged; a config with no feasible
    neighbour is dropped, and that is logged too.

    Args:
        configs: ``(label, config)`` warm starts.
        space: The search space (its ``budgets`` and ``size_budget_bits`` are the limits).
        log: Where the replacement lines go.

    Returns:
        The warm starts to enqueue, in the same order.
    """
    kept = []
    for label, config in configs:
        if space.fits_budget(config):
            try:
                space.params_for(config)
            except ValueError:
                pass  # a choice the budgets pruned: move it as well
            else:
                kept.append((label, config))
                continue
        nearest = space.nearest_feasible(config)
        if nearest is None:
            log(f"Warm start {label} breaks the budgets and has no feasible neighbour: skipped.")
            continue
        kept.append((f"{label} within budget", nearest))
        log(f"Warm start {label} breaks the budgets: replaced by the nearest config that fits.")
    return kept


def costliest_config(
    layers: Sequence[str], weight_bits: Sequence[int], act_bits: Sequence[int]
) -> QuantConfig:
    """Uniform max-bit weights and activations at full width: the costliest config."""
    return QuantConfig.uniform(list(layers), weight_bits=max(weight_bits), act_bits=max(act_bits))


def warm_starts_inside(
    configs: Sequence[tuple[str, QuantConfig]],
    forecast: Mapping[str, Any] | None,
    costliest: QuantConfig | None = None,
) -> list[tuple[str, QuantConfig]]:
    """The warm starts that can add hypervolume inside the forecast's region of interest.

    A config whose exact cost reaches the reference point on any cost metric adds nothing to
    the hypervolume the sampler maximizes, whatever its accuracy, and neither does one that
    costs as much as the ``costliest`` config on every cost metric (uniform max-bit itself,
    inside the region only on costs the bits do not move): training it spends a trial.
    Without a forecast every config is kept.

    Args:
        configs: ``(label, config)`` pairs.
        forecast: The options of :func:`~optuna_kmtpe.objectives.sampler_forecast` (or
            ``None``).
        costliest: The space's costliest config (:func:`costliest_config`), if known.
    """
    if forecast is None:
        return list(configs)
    known = forecast["known_objectives"]
    reference = forecast["reference_point"]
    names = [n for n in known.metrics if keys.METRICS[n].source == keys.COST]
    limits = dict(zip(known.metrics, reference))

    def better(name: str, value: float, than: float) -> bool:
        return value > than if keys.METRICS[name].direction == "maximize" else value < than

    top = known.cost_fn(costliest).metrics if costliest is not None else None
    kept = []
    for label, config in configs:
        costs = known.cost_fn(config).metrics
        inside = all(better(n, float(costs[n]), limits[n]) for n in names)
        cheaper = top is None or any(better(n, float(costs[n]), float(top[n])) for n in names)
        if inside and cheaper:
            kept.append((label, config))
    return kept


def enqueue_warm_starts(
    study: optuna.Study,
    configs: Sequence[tuple[str, QuantConfig]],
    params_for: Callable[[QuantConfig], dict[str, Any]],
) -> int:
    """Enqueue configs (uniform 8/4-bit, HAWQ-V2 selections, ...) as the study's first trials.

    Idempotent: a study that already holds the warm starts (a resumed run, or a second worker)
    gets nothing enqueued again.

    Args:
        study: The study.
        configs: ``(label, config)`` pairs; the label is stored as user attr ``warm_start``.
        params_for: The search space's config -> trial params map (e.g.
            ``MonotoneSearchSpace.params_for``). Configs the space cannot express are skipped.

    Returns:
        The number of trials enqueued.
    """
    if study.user_attrs.get(keys.STUDY_WARM_STARTED):
        return 0
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for label, config in configs:
        try:
            params = params_for(config)
        except ValueError:
            continue
        signature = tuple(sorted(params.items()))
        if signature in seen:
            continue
        seen.add(signature)
        study.enqueue_trial(params, user_attrs={keys.WARM_START: label}, skip_if_exists=True)
    study.set_user_attr(keys.STUDY_WARM_STARTED, True)
    return len(seen)


def warm_start_study(
    study: optuna.Study,
    space: Any,
    *,
    weight_bits: Sequence[int],
    act_bits: Sequence[int],
    forecast: Mapping[str, Any] | None = None,
    max_trials: int | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Enqueue the search's warm starts: the one policy (see the module docstring).

    Args:
        study: The study (nothing is enqueued if it already holds its warm starts).
        space: The search space (``MonotoneSearchSpace``).
        weight_bits: The weight bit-widths searched.
        act_bits: The activation bit-widths searched.
        forecast: The sampler's forecast options (:func:`sampler_forecast`), or ``None``.
        max_trials: The trials the study will run: an unused warm start would stay WAITING.
        log: Where budget replacements are told.

    Returns:
        The number of trials enqueued.
    """
    configs = warm_start_configs(
        space,
        weight_bits=weight_bits,
        act_bits=act_bits,
        n_trials=max_trials,
        forecast=forecast,
        log=log,
    )
    # With the forecast on, uniform max-bit costs as much as the reference point and adds
    # nothing (digits, 10 seeds: hypervolume at 10 trials 0.0351 without it, 0.0306 with it).
    configs = warm_starts_inside(
        configs, forecast, costliest_config(space.layer_names, weight_bits, act_bits)
    )
    return enqueue_warm_starts(study, configs[:max_trials], space.params_for)
