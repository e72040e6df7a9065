"""Block-isolated Hutchinson trace estimation and power iteration on Hessian blocks.

The functions here see a Hessian block only through a Hessian-vector product ``hvp(v)``, so the
algorithm (probing, running statistics, stopping) is independent of how products are computed.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import math

import torch


HVP = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class RunningStats:
    """Welford's running mean and variance of scalar samples."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    products: int = 0
    exact: bool = False

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    @property
    def stderr(self) -> float:
        if self.exact:
            return 0.0
        if self.count < 2:
            return math.inf
        return math.sqrt(max(self.m2, 0.0) / (self.count - 1) / self.count)

    def converged(self, target_rel_err: float) -> bool:
        """Whether the standard error is at most ``target_rel_err`` times ``|mean|``.

        A block whose samples are all exactly zero (no curvature at all) counts as converged.
        """
        if self.exact:
            return True
        if self.count < 2:
            return False
        if self.mean == 0.0 and self.m2 == 0.0:
            return True
        return self.stderr <= target_rel_err * abs(self.mean)


def rademacher_like(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random +-1 tensor shaped like ``tensor``, drawn on the CPU (device-independent seeds)."""
    bits = torch.randint(0, 2, tensor.shape, generator=generator, dtype=torch.int8)
    return (bits.to(tensor.dtype) * 2 - 1).to(tensor.device)


def hutchinson_traces(
    hvps: Sequence[HVP | None],
    shapes: Sequence[torch.Tensor],
    *,
    target_rel_err: float,
    min_probes: int,
    max_probes: int,
    generator: torch.Generator,
    deflation_rank: int = 0,
    on_round: Callable[[int], None] | None = None,
) -> list[RunningStats]:
    """Estimate ``Tr(H_l)`` for each Hessian block ``l`` by (deflated) Hutchinson.

    Each block gets its own Rademacher probe ``v_l`` (zero outside the block), so the estimate
    ``v_l^T H_ll v_l`` carries no cross-block noise.

    With ``deflation_rank = k > 0`` each block first sketches its dominant subspace as in
    Hutch++ (Meyer et al. 2021): ``Q = orth(H S)`` for ``k`` Rademacher columns ``S``, takes
    ``Tr(Q^T H Q)`` exactly (``k`` more products) and runs Hutchinson only on the deflated
    remainder ``(I - QQ^T) H (I - QQ^T)``. The estimate stays unbiased, and because layer
    Hessians concentrate their Frobenius mass in a few directions, the per-probe noise drops by
    about 10x (100x fewer probes for the same error). Blocks with at most ``2k`` entries are
    computed exactly from unit vectors (standard error 0).

    Blocks are probed in rounds; a block stops once it has ``min_probes`` residual samples and
    its standard error is below ``target_rel_err`` times its mean, or at ``max_probes`` samples.

    Args:
        hvps: Per block, ``v -> H_ll v``, or ``None`` for a block with no curvature (trace 0).
        shapes: Per block, a tensor whose shape, dtype and device the probes copy.
        target_rel_err: Relative standard error at which a block stops.
        min_probes: Residual samples every block takes before it may stop.
        max_probes: Cap on the residual samples of any block.
        generator: Seeded CPU generator for the probes.
        deflation_rank: Size ``k`` of the sketched subspace (0: plain Hutchinson).
        on_round: Called after each round with the number of blocks still active.

    Returns:
        Per block, running statistics whose ``mean`` estimates ``Tr(H_ll)`` and whose
        ``stderr`` is its standard error; ``count`` is the number of Hessian-vector products.
    """
    stats = [RunningStats() for _ in hvps]
    offsets = [0.0] * len(hvps)
    bases: list[torch.Tensor | None] = [None] * len(hvps)
    active = []
    for index, hvp in enumerate(hvps):
        numel = shapes[index].numel()
        if hvp is None:
            stats[index] = RunningStats(exact=True)  # no curvature: the trace is exactly 0
        elif deflation_rank > 0 and numel <= 2 * deflation_rank:
            stats[index] = _exact_trace(hvp, shapes[index])
        else:
            if deflation_rank > 0:
                offsets[index], bases[index] = _deflate(
                    hvp, shapes[index], deflation_rank, generator
                )
            active.append(index)
    while active:
        still_active = []
        for index in active:
            hvp = hvps[index]
            assert hvp is not None
            probe = rademacher_like(shapes[index], generator)
            basis = bases[index]
            if basis is not None:
                flat = probe.flatten()
                probe = (flat - basis @ (basis.T @ flat)).reshape(probe.shape)
            value = float(torch.dot(probe.flatten(), hvp(probe).flatten()))
            stats[index].add(offsets[index] + value)
            done = stats[index].count >= max_probes or (
                stats[index].count >= min_probes and stats[index].converged(target_rel_err)
            )
            if not done:
                still_active.append(index)
        active = still_active
        if on_round is not None:
            on_round(len(active))
    for index, basis in enumerate(bases):  # a deflated block took 2k products more
        stats[index].products = stats[index].count + (0 if basis is None else 2 * deflation_rank)
    return stats


def _exact_trace(hvp: HVP, like: torch.Tensor) -> RunningStats:
    total = 0.0
    flat = torch.zeros(like.numel(), dtype=like.dtype, device=like.device)
    for position in range(like.numel()):
        flat.zero_()
        flat[position] = 1.0
        total += float(hvp(flat.reshape(like.shape)).flatten()[position])
    return RunningStats(count=like.numel(), mean=total, exact=True)


def _deflate(
    hvp: HVP, like: torch.Tensor, rank: int, generator: torch.Generator
) -> tuple[float, torch.Tensor]:
    """``Tr(Q^T H Q)`` and ``Q`` (n x rank, orthonormal) for ``Q = orth(H S)``."""
    sketch = torch.stack(
        [hvp(rademacher_like(like, generator)).flatten() for _ in range(rank)], dim=1
    )
    basis, _ = torch.linalg.qr(sketch)
    captured = 0.0
    for column in basis.T:
        captured += float(torch.dot(column, hvp(column.reshape(like.shape)).flatten()))
    return captured, basis


def power_iteration(
    hvp: Callable[[list[torch.Tensor | None]], list[torch.Tensor | None]],
    shapes: Sequence[torch.Tensor],
    *,
    max_iter: int,
    tol: float,
    generator: torch.Generator,
) -> list[float]:
    """Top eigenvalue of each Hessian block by power iteration, all blocks in lockstep.

    Args:
        hvp: Maps one vector per block to ``H_ll v_l`` per block (one call per iteration, so a
            caller can share one gradient graph among all blocks); blocks that have converged
            get ``None`` and must map to ``None``.
        shapes: Per block, a tensor whose shape, dtype and device the vectors copy.
        max_iter: Iterations at most.
        tol: A block stops when its Rayleigh quotient changes by less than ``tol`` relatively.
        generator: Seeded CPU generator for the start vectors.

    Returns:
        Per block, the Rayleigh quotient of the last iterate (the eigenvalue of largest
        magnitude, with its sign).
    """
    vectors = []
    for shape in shapes:
        start = torch.randn(shape.shape, generator=generator, dtype=shape.dtype).to(shape.device)
        vectors.append(start / start.norm())
    eigenvalues = [math.nan] * len(shapes)
    done = [False] * len(shapes)
    for _ in range(max_iter):
        products = hvp([None if finished else v for v, finished in zip(vectors, done)])
        for index, (vector, product) in enumerate(zip(vectors, products)):
            if done[index] or product is None:
                continue
            value = float(torch.dot(vector.flatten(), product.flatten()))
            previous = eigenvalues[index]
            eigenvalues[index] = value
            norm = product.norm()
            if norm == 0:
                done[index] = True
                continue
            vectors[index] = product / norm
            if not math.isnan(previous) and abs(value - previous) <= tol * abs(value) + 1e-30:
                done[index] = True
        if all(done):
            break
    return eigenvalues
