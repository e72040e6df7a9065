"""The printed table of a :class:`~optuna_kmtpe.space.MonotoneSearchSpace`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna_kmtpe.records import SIZE_BITS


if TYPE_CHECKING:
    from optuna_kmtpe.space._space import MonotoneSearchSpace

_HEADER = "layer|rank|Tr/n|+-SE|params|>= #layers|weight bits|act bits|widths".split("|")


def describe(space: MonotoneSearchSpace) -> str:
    """Per layer its trace, what it must dominate and its choices; then budgets and counts."""
    names = space.layer_names
    rank = sorted(range(len(names)), key=lambda i: -space.report[names[i]].trace)
    position = {i: r + 1 for r, i in enumerate(rank)}
    acts = [space.default_act_bits] if space.act_bits is None else list(space.act_bits)
    rows = [_HEADER]
    for i, name in enumerate(names):
        stats = space.report[name]
        widths = [1.0]
        if name in space.prunable and space.widths:
            widths = list(space.widths[: space.width_caps[i] + 1])
        rows.append(
            [
                name,
                str(position[i]),
                f"{stats.trace:.3e}",
                f"{stats.trace_stderr:.1e}",
                str(stats.n_params),
                str(len(space.weight_below[i])),
                ",".join(map(str, space.weight_bits[: space.weight_caps[i] + 1])),
                ",".join(map(str, acts[: space.act_caps[i] + 1])),
                ",".join(f"{w:g}" for w in widths),
            ]
        )
    column_widths = [max(len(row[c]) for row in rows) for c in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, column_widths)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    limits = dict(space.budgets)
    if space.size_budget_bits is not None:
        limits.setdefault(SIZE_BITS, space.size_budget_bits)
    budgets = ", ".join(f"{name} <= {limit:g}" for name, limit in limits.items()) or "none"
    within = space.size_within_budgets
    lines += [
        "",
        f"order_sigma={space.order_sigma:g}, budgets: {budgets}",
        f"configs: {space.size_before:.4g} unconstrained -> {space.size_monotone:.4g} monotone "
        f"-> {space.size_after:.4g} after pruning (exact: {space.size_after})"
        + ("" if within is None else f" -> about {within:.3g} within the budgets (sampled)"),
    ]
    return "\n".join(lines)
