"""The notes: the study's Markdown summary of the run, rebuilt on every refresh, and each
trial's config in bits and widths (its parameters are level indices)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import statistics
from typing import Any

from optuna_kmtpe import records
from optuna_kmtpe.config import is_float_bits
from optuna_kmtpe.dashboard._figures import config_summary
from optuna_kmtpe.dashboard._records import TrialPoint
from optuna_kmtpe.records import redact_credentials


NOTE_TITLE = "K-Means TPE quantization search"
"""Heading of every generated note (raw HTML such as a comment marker would show as text)."""


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10**6:
        return f"{value:.3g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _cell(value: Any) -> str:
    # optuna-dashboard has no authentication: a storage URL stored by an older kmtpe may hold
    # its password.
    text = redact_credentials(_text(value))
    # A pipe would end the Markdown table cell; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def _mean_over_layers(config: Mapping[str, Mapping[str, Any]] | None, field: str) -> str:
    if not config:
        return ""
    values = [layer.get(field) for layer in config.values()]
    if field != "width":
        quantized = [v for v in values if isinstance(v, int) and not is_float_bits(v)]
        n_float = len(values) - len(quantized)
        if not quantized:
            return "fp"
        text = f"{statistics.fmean(quantized):.2f}"
        return text + (f" (+{n_float} fp)" if n_float else "")
    widths = [v for v in values if isinstance(v, (int, float))]
    return f"{statistics.fmean(widths):.2f}" if widths else ""


def summary_markdown(
    *,
    study_name: str,
    run: Mapping[str, Any] | None,
    points: Sequence[TrialPoint],
    metric_names: Sequence[str],
    maximize: Sequence[bool],
    state_counts: Mapping[str, int],
    max_rows: int = 10,
) -> str:
    """The Markdown body of the study note.

    Args:
        study_name: Shown in the heading.
        run: The ``kmtpe:run`` study attribute (model, data, device, objectives, space
            sizes...), one table row per key; ``None`` to omit.
        points: Completed trials, Pareto front marked.
        metric_names: Objective names, in objective order (table columns, sort key).
        maximize: Per objective, whether larger is better (rows are sorted best first by
            the first objective).
        state_counts: Number of trials per state name (``COMPLETE``, ``PRUNED``, ...).
        max_rows: At most this many Pareto trials in the table.

    Example:
        >>> text = summary_markdown(study_name="s", run={"model": "cnn"}, points=[],
        ...     metric_names=["accuracy"], maximize=[True], state_counts={"COMPLETE": 0})
        >>> "| model | cnn |" in text
        True
    """
    lines = [f"## {NOTE_TITLE}: `{study_name}`", ""]
    if run:
        lines += ["| run | |", "|---|---|"]
        lines += [f"| {_cell(key)} | {_cell(value)} |" for key, value in run.items()]
        lines.append("")

    n_feasible = sum(p.feasible for p in points)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in state_counts.items() if n)
    lines.append(f"**Trials:** {counts or 'none yet'}; {n_feasible} feasible completed.")
    numbers = [p.number for p in points]
    if numbers:
        lines.append(f"Summary refreshed after trial #{max(numbers)}.")
    lines.append("")

    front = [p for p in points if p.pareto]
    if not front:
        lines.append("_No Pareto-optimal trial yet._")
        return "\n".join(lines) + "\n"
    first = metric_names[0] if metric_names else ""
    sign = -1.0 if (maximize and maximize[0]) else 1.0
    # Best first by the first objective; trials missing it go last.
    front.sort(key=lambda p: (sign * p.metrics.get(first, float("inf") * sign), p.number))
    extra = (records.SIZE_BITS, records.BOPS, records.DSP_USED)
    extra = [k for k in extra if k not in metric_names]
    extra = [k for k in extra if any(k in p.metrics for p in front)]
    header = ["trial", *metric_names, *extra, "mean w bits", "mean a bits", "mean width"]
    lines.append(f"### Pareto-optimal trials ({len(front)})")
    lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for p in front[:max_rows]:
        row = [f"#{p.number}"]
        row += [_cell(p.metrics[m]) if m in p.metrics else "" for m in [*metric_names, *extra]]
        row += [_mean_over_layers(p.config, f) for f in ("weight_bits", "act_bits", "width")]
        lines.append("| " + " | ".join(row) + " |")
    if len(front) > max_rows:
        lines.append("")
        lines.append(f"_Showing {max_rows} of {len(front)}; see the plots and the trials table._")
    return "\n".join(lines) + "\n"


def trial_note_markdown(
    config: Mapping[str, Mapping[str, Any]], *, duplicate_of: int | None = None
) -> str:
    """The Markdown note of one trial: its per-layer weight bits, activation bits and width.

    The trial's parameters (``<layer>.w_level``, ``.a_level``, ``.width_level``) are indices
    into the candidate lists; this is what they mean.

    Args:
        config: The trial's ``config`` user attribute (``QuantConfig.to_dict()``).
        duplicate_of: The trial whose results this one reused, if any.

    Example:
        >>> print(trial_note_markdown({"conv1": {"weight_bits": 4, "act_bits": 8, "width": 0.5}}))
        **Config:** conv1: w4 a8 ×0.5
        <BLANKLINE>
        | layer | weight bits | act bits | width |
        |---|---|---|---|
        | conv1 | 4 | 8 | 0.5 |
        <BLANKLINE>
        _The parameters `<layer>.w_level`, `.a_level` and `.width_level` are indices into the
        candidate bits and widths; this table shows their values._
        <BLANKLINE>
    """
    lines = [f"**Config:** {_cell(config_summary(config, sep='; '))}", ""]
    if duplicate_of is not None:
        lines[1:1] = ["", f"Same config as trial #{duplicate_of}: its results were reused."]
    lines += ["| layer | weight bits | act bits | width |", "|---|---|---|---|"]
    for layer, fields in config.items():
        bits = [fields.get(k, 32) for k in ("weight_bits", "act_bits")]
        cells = ["fp" if is_float_bits(b) else _cell(b) for b in bits]
        lines.append(f"| {_cell(layer)} | {' | '.join(cells)} | {fields.get('width', 1.0):g} |")
    lines += [
        "",
        "_The parameters `<layer>.w_level`, `.a_level` and `.width_level` are indices into the",
        "candidate bits and widths; this table shows their values._",
    ]
    return "\n".join(lines) + "\n"
