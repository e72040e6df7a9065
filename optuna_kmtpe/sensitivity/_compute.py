"""``compute_sensitivity``: per-layer Hessian traces of a model on calibration batches."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
import copy
import functools
import math
import time
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend
from torch.nn.attention import sdpa_kernel

from optuna_kmtpe._progress import progress_bar
from optuna_kmtpe.config import check_bit_choices
from optuna_kmtpe.config import check_bits
from optuna_kmtpe.config import is_float_bits
from optuna_kmtpe.geometry import kept_channels
from optuna_kmtpe.graph import layer_channels
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.quant import UniformQuantizer
from optuna_kmtpe.quant._apply import channel_keep_order
from optuna_kmtpe.records import STUDY_SENSITIVITY
from optuna_kmtpe.sensitivity._hutchinson import RunningStats
from optuna_kmtpe.sensitivity._hutchinson import hutchinson_traces
from optuna_kmtpe.sensitivity._hutchinson import power_iteration
from optuna_kmtpe.sensitivity._report import LayerSensitivity
from optuna_kmtpe.sensitivity._report import SensitivityReport


Batch = tuple[torch.Tensor, torch.Tensor]
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DEFAULT_WEIGHT_BITS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)


def compute_sensitivity(
    model: nn.Module,
    batches_or_loader: Iterable[Batch] | Batch,
    *,
    criterion: Criterion | None = None,
    num_batches: int = 2,
    target_rel_err: float = 0.01,
    max_probes: int = 1000,
    min_probes: int = 16,
    deflation_rank: int = 16,
    seed: int = 0,
    weight_bits: Sequence[int] = DEFAULT_WEIGHT_BITS,
    activations: bool = False,
    act_bits: Sequence[int] = (),
    widths: Sequence[float] = (),
    eigenvalues: bool = False,
    eig_max_iter: int = 50,
    eig_tol: float = 1e-3,
    layers: Sequence[str] | None = None,
    progress: bool = True,
) -> SensitivityReport:
    """Per-layer average Hessian traces ``Tr(H_i)/n_i`` of ``model``'s loss (HAWQ-V2).

    For each quantizable layer ``i`` (Conv1d, Conv2d, Linear) the trace of the Hessian block of
    the loss with respect to that layer's weight is estimated by Hutchinson's method with
    Rademacher probes drawn *per layer* (a probe shared by all layers adds the cross-layer
    blocks' variance and is useless for small layers). The loss is the mean of ``criterion``
    over the first ``num_batches`` calibration batches; its Hessian is the mean of the batch
    Hessians, so each batch's gradient graph is built once (``torch.autograd.grad`` with
    ``create_graph=True``), reused by every probe of every layer, and freed before the next
    batch.

    Conventions (they change the ranking of layers, so they are fixed and recorded in
    ``report.settings``): the model runs in eval mode, so BatchNorm uses its running statistics
    and Dropout is off; traces are taken with respect to the layer weights as stored (not
    BatchNorm-folded), which is what :mod:`optuna_kmtpe.quant` quantizes.

    Stopping: a layer stops probing a batch when it has ``min_probes`` probes and the relative
    standard error of that batch's estimate is below ``target_rel_err * sqrt(num_batches)`` (so
    the combined estimate meets ``target_rel_err`` when batches agree), or at ``max_probes``.
    The reported standard error is the combined one; compare ``rel_stderr`` to the target.

    The model is never modified: the work happens on a deep copy.

    Args:
        model: The trained network.
        batches_or_loader: A ``DataLoader`` or any iterable of ``(inputs, targets)``, or one
            ``(inputs, targets)`` pair. Only the first ``num_batches`` batches are used.
        criterion: Loss with mean reduction; defaults to ``nn.CrossEntropyLoss()``.
        num_batches: Calibration batches (128-512 samples each is typical).
        target_rel_err: Target relative standard error of every layer's trace.
        max_probes: Cap on probes per layer per batch.
        min_probes: Probes per layer per batch before the stopping rule applies (at most
            ``max_probes``).
        deflation_rank: Directions of each layer's Hessian taken exactly before probing the
            rest (Hutch++-style deflation, ``2 * deflation_rank`` extra products per layer and
            batch; about 100x fewer probes for the same error on the built-in models). Layers
            with at most ``2 * deflation_rank`` weights are computed exactly. 0 gives plain
            Hutchinson.
        seed: Seed of the probes.
        weight_bits: Weight bit-widths whose perturbation ``||Q_b(W) - W||^2`` and exact
            second-order loss change ``0.5 * dW^T H dW`` (``dW = Q_b(W) - W``, one
            Hessian-vector product per layer, bit-width and batch) the report stores
            (per-channel symmetric, from :class:`optuna_kmtpe.quant.UniformQuantizer`).
        activations: Also estimate the trace with respect to each layer's *input* activation
            (the operand that ``act_bits`` quantizes), per element and averaged over inputs.
        act_bits: Activation bit-widths whose exact second-order loss change
            ``0.5 * da^T H_a da`` the report stores per layer (``act_quadratic``), with
            ``da = Q_b(a) - a`` for the layer's input ``a`` quantized asymmetrically over each
            batch's min-max range (as :class:`optuna_kmtpe.quant.ActivationQuantizer`
            calibrates it). One Hessian-vector product per layer, bit-width and batch; it
            does not need ``activations=True``. Float widths (16, 32) give 0.
        widths: Width fractions whose second-order loss change of pruning the report stores
            per layer (``width_quadratic``): ``0.5 * dW^T H dW`` with ``dW = -W`` on the output
            channels that width removes (the smallest L1 norms, ``kept_channels`` rounding, as
            :func:`optuna_kmtpe.quant.apply_config` prunes). It covers the layer's own weights
            only, not what the removed channels fed downstream. Widths >= 1 give 0.
        eigenvalues: Also compute each weight block's top eigenvalue by power iteration.
        eig_max_iter: Power iterations at most.
        eig_tol: Relative change of the eigenvalue at which power iteration stops.
        layers: Restrict to these module paths (default: every quantizable layer).
        progress: Show a tqdm progress bar.

    Returns:
        A :class:`SensitivityReport` with one entry per layer, in module order.

    Example:
        >>> import torch
        >>> from optuna_kmtpe.models import MLP
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> batch = (torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,)))
        >>> report = compute_sensitivity(MLP(), batch, max_probes=64, progress=False)
        >>> report.names
        ('net.1', 'net.3', 'net.5')
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}.")
    if not target_rel_err > 0:
        raise ValueError(f"target_rel_err must be > 0 (e.g. 0.01 for 1%), got {target_rel_err}.")
    if min_probes < 2 or max_probes < 2:
        raise ValueError(
            f"min_probes and max_probes must be >= 2 (a standard error needs 2 probes), got "
            f"min_probes={min_probes}, max_probes={max_probes}."
        )
    check_bit_choices(weight_bits, field="weight_bits", allow_float=False)
    for bits in act_bits:
        check_bits(bits, field="act_bits")
    min_probes = min(min_probes, max_probes)
    if deflation_rank < 0:
        raise ValueError(
            f"deflation_rank must be >= 0 (0: plain Hutchinson), got {deflation_rank}."
        )
    loss_fn: Criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    batches = _take_batches(batches_or_loader, num_batches)
    started = time.perf_counter()

    work = copy.deepcopy(model)
    work.eval()
    all_layers = quantizable_layers(work)
    names = list(all_layers) if layers is None else list(layers)
    unknown = [name for name in names if name not in all_layers]
    if unknown:
        raise ValueError(
            f"layers {unknown} are not quantizable layers of the model; choose from "
            f"{list(all_layers)}."
        )
    modules = [all_layers[name] for name in names]
    for param in work.parameters():
        param.requires_grad_(False)
    weights = [module.weight for module in modules]
    for weight in weights:
        weight.requires_grad_(True)
    device = weights[0].device
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    sqrt_b = math.sqrt(len(batches))

    generator = torch.Generator().manual_seed(seed)
    quant_errors = _quantization_errors(weights, weight_bits)
    prune_errors = _pruning_errors(weights, widths)
    capture_acts = activations or bool(act_bits)
    # The second-order terms per layer, summed over batches: 0 where a layer has no curvature.
    quadratic, act_quadratic, width_quadratic = (
        [dict.fromkeys(sorted(set(keys)), 0.0) for _ in weights]
        for keys in (weight_bits, act_bits, widths)
    )
    weight_stats: list[list[RunningStats]] = []
    act_stats: list[list[RunningStats]] = []
    act_numel: list[int] = []
    losses: list[float] = []

    rounds_per_batch = max_probes * (2 if activations else 1)
    with progress_bar(
        total=len(batches) * rounds_per_batch,
        disable=not progress,
        desc="Hessian traces",
        unit="round",
    ) as bar:
        traces = functools.partial(
            hutchinson_traces,
            target_rel_err=target_rel_err * sqrt_b,
            min_probes=min_probes,
            max_probes=max_probes,
            generator=generator,
            on_round=lambda _active: bar.update(1),
        )
        for x, y in batches:
            graph = _GradientGraph(work, modules, weights, loss_fn, x, y, capture_acts)
            losses.append(graph.loss_value)
            done_before = bar.n
            weight_stats.append(
                traces(graph.weight_hvps(), weights, deflation_rank=deflation_rank)
            )
            if activations:
                act_numel = [int(act[0].numel()) for act in graph.acts]
                act_stats.append(traces(graph.act_hvps(), graph.acts))
            for index, hvp in enumerate(graph.weight_hvps()):
                _add_quadratic(quadratic[index], hvp, quant_errors[index], len(batches))
                _add_quadratic(width_quadratic[index], hvp, prune_errors[index], len(batches))
            if act_bits:
                for index, hvp in enumerate(graph.act_hvps()):
                    errors = _activation_errors(graph.acts[index], act_bits)
                    _add_quadratic(act_quadratic[index], hvp, errors, len(batches))
            bar.update(done_before + rounds_per_batch - bar.n)
            del graph

    eig: list[float | None] = [None] * len(modules)
    if eigenvalues:
        eig = list(
            _top_eigenvalues(
                work, modules, weights, loss_fn, batches, generator, eig_max_iter, eig_tol
            )
        )

    perturbations = [
        {bits: float((delta**2).sum()) for bits, delta in errors.items()}
        for errors in quant_errors
    ]
    results = []
    for index, (name, module) in enumerate(zip(names, modules)):
        n_params = int(weights[index].numel())
        trace, stderr, probes = _combine([stats[index] for stats in weight_stats])
        out_channels, in_channels, _, _ = layer_channels(module)
        act_trace = act_stderr = numel = None
        if activations:
            numel = act_numel[index]
            total, total_err, _ = _combine([stats[index] for stats in act_stats])
            act_trace, act_stderr = total / numel, total_err / numel
        results.append(
            LayerSensitivity(
                name=name,
                kind=type(module).__name__,
                n_params=n_params,
                out_channels=out_channels,
                in_channels=in_channels,
                trace=trace / n_params,
                trace_stderr=stderr / n_params,
                num_probes=probes,
                perturbation=perturbations[index],
                quadratic=quadratic[index],
                act_quadratic=act_quadratic[index],
                width_quadratic=width_quadratic[index],
                act_trace=act_trace,
                act_trace_stderr=act_stderr,
                act_numel=numel,
                eigenvalue=eig[index],
            )
        )
    settings: dict[str, Any] = {
        "num_batches": len(batches),
        "num_samples": int(sum(x.shape[0] for x, _ in batches)),
        "target_rel_err": target_rel_err,
        "min_probes": min_probes,
        "max_probes": max_probes,
        "deflation_rank": deflation_rank,
        "seed": seed,
        "mode": "eval",
        "weights": "as stored (BatchNorm not folded)",
        "criterion": type(loss_fn).__name__,
        "loss": sum(losses) / len(losses),
        "seconds": round(time.perf_counter() - started, 3),
        "torch": torch.__version__,
    }
    return SensitivityReport(layers=tuple(results), settings=settings)


def _take_batches(source: Iterable[Batch] | Batch, num_batches: int) -> list[Batch]:
    if (
        isinstance(source, (tuple, list))
        and len(source) == 2
        and all(isinstance(t, torch.Tensor) for t in source)
    ):
        return [(source[0], source[1])]
    batches: list[Batch] = []
    for item in source:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(
                "Each calibration batch must be an (inputs, targets) pair, as a DataLoader over "
                f"a TensorDataset yields; got {type(item).__name__}."
            )
        batches.append((item[0], item[1]))
        if len(batches) == num_batches:
            break
    if not batches:
        raise ValueError("batches_or_loader yielded no batch; pass a non-empty DataLoader.")
    return batches


class _GradientGraph:
    """One calibration batch's gradient, kept differentiable so every HVP reuses it."""

    def __init__(
        self,
        model: nn.Module,
        modules: Sequence[nn.Module],
        weights: Sequence[torch.Tensor],
        loss_fn: Criterion,
        x: torch.Tensor,
        y: torch.Tensor,
        activations: bool,
    ) -> None:
        self.weights = list(weights)
        self.acts: list[torch.Tensor] = []
        handles = []
        if activations:
            # The first layer's input is the model input: make it part of the graph.
            x = x.detach().clone().requires_grad_(True)
            captured: dict[int, torch.Tensor] = {}

            def make_hook(index: int) -> Callable[..., None]:
                def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
                    captured.setdefault(index, inputs[0])

                return hook

            handles = [
                module.register_forward_pre_hook(make_hook(i)) for i, module in enumerate(modules)
            ]
        try:
            # Fused attention kernels (flash, memory-efficient) have no double backward; the
            # math kernel computes the same attention with differentiable ops.
            with sdpa_kernel(SDPBackend.MATH):
                loss = loss_fn(model(x), y)
        finally:
            for handle in handles:
                handle.remove()
        if activations:
            missing = [i for i in range(len(modules)) if i not in captured]
            if missing:
                raise ValueError(
                    "Some quantizable layers were not called in the forward pass; pass "
                    "layers=[...] to measure only the layers the model uses."
                )
            self.acts = [captured[i] for i in range(len(modules))]
        self.loss_value = float(loss.detach())
        targets = self.weights + self.acts
        grads = torch.autograd.grad(loss, targets, create_graph=True, allow_unused=True)
        self.weight_grads = list(grads[: len(self.weights)])
        self.act_grads = list(grads[len(self.weights) :])

    @staticmethod
    def _hvp(grad: torch.Tensor | None, target: torch.Tensor) -> Callable[..., Any] | None:
        if grad is None or not grad.requires_grad:
            return None  # the loss is at most linear in this block: zero curvature

        def hvp(vector: torch.Tensor) -> torch.Tensor:
            (product,) = torch.autograd.grad(
                grad, target, grad_outputs=vector, retain_graph=True, allow_unused=True
            )
            return torch.zeros_like(target) if product is None else product

        return hvp

    def weight_hvps(self) -> list[Callable[..., Any] | None]:
        return [self._hvp(g, w) for g, w in zip(self.weight_grads, self.weights)]

    def act_hvps(self) -> list[Callable[..., Any] | None]:
        return [self._hvp(g, a) for g, a in zip(self.act_grads, self.acts)]


def _combine(stats: Sequence[RunningStats]) -> tuple[float, float, int]:
    """Mean over batches of per-batch trace estimates, its standard error, and probes used."""
    count = len(stats)
    mean = sum(s.mean for s in stats) / count
    variance = sum(0.0 if s.converged(0.0) else s.stderr**2 for s in stats)
    return mean, math.sqrt(variance) / count, sum(s.products for s in stats)


def _top_eigenvalues(
    model: nn.Module,
    modules: Sequence[nn.Module],
    weights: Sequence[torch.Tensor],
    loss_fn: Criterion,
    batches: Sequence[Batch],
    generator: torch.Generator,
    max_iter: int,
    tol: float,
) -> list[float]:
    # One batch: its gradient graph is built once and serves every iteration.
    single = None
    if len(batches) == 1:
        single = _GradientGraph(model, modules, weights, loss_fn, *batches[0], False)

    def hvp(vectors: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        totals: list[torch.Tensor | None] = [None] * len(vectors)
        for x, y in batches:
            graph = single or _GradientGraph(model, modules, weights, loss_fn, x, y, False)
            for index, (product_fn, vector) in enumerate(zip(graph.weight_hvps(), vectors)):
                if vector is None:
                    continue
                product = (
                    torch.zeros_like(vector) if product_fn is None else product_fn(vector)
                ) / len(batches)
                totals[index] = product if totals[index] is None else totals[index] + product
        return totals

    return power_iteration(hvp, weights, max_iter=max_iter, tol=tol, generator=generator)


def _add_quadratic(
    table: dict[Any, float],
    hvp: Callable[..., Any] | None,
    deltas: dict[Any, torch.Tensor],
    n_batches: int,
) -> None:
    """Add this batch's ``0.5 * d^T H d / n_batches`` for each perturbation ``d``."""
    if hvp is None:
        return  # zero curvature: the table keeps 0
    for key, delta in deltas.items():
        if bool(delta.any()):
            table[key] += 0.5 * float((delta * hvp(delta)).sum()) / n_batches


def _quantization_errors(
    weights: Sequence[torch.Tensor], bits_list: Sequence[int]
) -> list[dict[int, torch.Tensor]]:
    """``Q_b(W) - W`` per layer and candidate bit-width (per-channel symmetric)."""
    quantizer = UniformQuantizer()
    with torch.no_grad():
        return [
            {bits: quantizer.fake_quantize_weight(w, bits) - w for bits in sorted(set(bits_list))}
            for w in (weight.detach() for weight in weights)
        ]


def _pruning_errors(
    weights: Sequence[torch.Tensor], widths: Sequence[float]
) -> list[dict[float, torch.Tensor]]:
    """``-W`` on the output channels each width removes (smallest L1 norms), 0 elsewhere."""
    errors = []
    with torch.no_grad():
        for weight in weights:
            w = weight.detach()
            order = channel_keep_order(w)
            per_width = {}
            for width in sorted(set(widths)):
                delta = torch.zeros_like(w)
                if width < 1.0:
                    removed = order[kept_channels(w.shape[0], width) :]
                    delta[removed] = -w[removed]
                per_width[float(width)] = delta
            errors.append(per_width)
    return errors


def _activation_errors(act: torch.Tensor, bits_list: Sequence[int]) -> dict[int, torch.Tensor]:
    """``Q_b(a) - a`` for an activation batch, asymmetric over the batch's min-max range."""
    quantizer = UniformQuantizer()
    errors = {}
    with torch.no_grad():
        a = act.detach()
        low, high = a.min(), a.max()
        for bits in sorted(set(bits_list)):
            if is_float_bits(bits):
                errors[bits] = torch.zeros_like(a)
                continue
            scale, zero_point = quantizer.activation_qparams(low, high, bits)
            errors[bits] = quantizer.fake_quantize_activation(a, bits, scale, zero_point) - a
    return errors


def load_or_compute_sensitivity(
    study: Any,
    model: nn.Module,
    batches_or_loader: Iterable[Batch] | Batch,
    *,
    key: str = STUDY_SENSITIVITY,
    **kwargs: Any,
) -> SensitivityReport:
    """The study's stored report, or a new one computed and stored (for every worker).

    The first worker of a distributed or resumed study computes the report and saves it in the
    study's user attributes; the others load it. Two workers starting at the same moment may
    both compute it (the results agree up to probe noise, and the later one is kept).

    Args:
        study: The ``optuna.Study`` that holds (or will hold) the report.
        model: The trained network.
        batches_or_loader: Calibration data, as for :func:`compute_sensitivity`.
        key: User-attribute key of the report.
        **kwargs: Passed to :func:`compute_sensitivity`.

    Raises:
        ValueError: If the stored report describes other layers than the model has.

    Example:
        >>> import optuna, torch
        >>> from optuna_kmtpe.models import MLP
        >>> study = optuna.create_study()
        >>> batch = (torch.zeros(8, 1, 8, 8), torch.zeros(8, dtype=torch.long))
        >>> first = load_or_compute_sensitivity(study, MLP(), batch, max_probes=4, progress=False)
        >>> load_or_compute_sensitivity(study, MLP(), batch) == first
        True
    """
    stored = SensitivityReport.load_from_study(study, key=key)
    expected = list(kwargs.get("layers") or quantizable_layers(model))
    if stored is not None:
        if list(stored.names) != expected:
            raise ValueError(
                f"The study's sensitivity report (user attr {key!r}) describes layers "
                f"{list(stored.names)}, but the model's are {expected}; use a new study or "
                f"another key."
            )
        return stored
    report = compute_sensitivity(model, batches_or_loader, **kwargs)
    report.save_to_study(study, key=key)
    return report
