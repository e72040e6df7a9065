"""Plotly figures built from plain data (no study needed).

Each builder returns a :class:`plotly.graph_objects.Figure` sized for a dashboard panel
(the dashboard draws custom plots in a 450 px high, half-width card) and stays small once
serialized, because the figure is stored in the study in 2 kB chunks on every refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
import statistics
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from optuna_kmtpe import records
from optuna_kmtpe.config import is_float_bits
from optuna_kmtpe.dashboard._records import TrialPoint
from optuna_kmtpe.sensitivity import LayerSensitivity


FLOAT_BITS_DISPLAY = 9
"""Where float layers (16/32 bits) are drawn on a bits axis: one step above 8 bits, labelled
``fp``, so that integer bit-widths keep a readable scale."""

_BIT_TICKS = {"tickvals": list(range(1, 10)), "ticktext": [str(b) for b in range(1, 9)] + ["fp"]}
_FIELDS = (("weight_bits", "weight bits"), ("act_bits", "activation bits"), ("width", "width"))


_AXIS_STYLE = {
    "showline": True,
    "linecolor": "#444",
    "gridcolor": "#ececec",
    "zeroline": False,
    "ticks": "outside",
    "automargin": True,
}
# A built-in plotly template adds about 7 kB to every saved figure (4 storage writes per plot
# per refresh); this one is a few hundred bytes and looks the same in the dashboard's card.
_TEMPLATE = go.layout.Template(
    layout={
        "font": {"size": 12},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "xaxis": _AXIS_STYLE,
        "yaxis": _AXIS_STYLE,
        "hoverlabel": {"align": "left"},
    }
)


def _r(value: float) -> float:
    # Six significant digits are plenty on screen and keep the stored JSON short.
    return float(f"{value:.6g}")


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        template=_TEMPLATE,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        autosize=True,
    )
    return fig


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def _bits_display(bits: int) -> int:
    return FLOAT_BITS_DISPLAY if is_float_bits(bits) else bits


def _bits_label(bits: int) -> str:
    return "fp" if is_float_bits(bits) else str(bits)


def _log_ticks(values: Sequence[float]) -> dict[str, Any]:
    """1-2-5 ticks over the positive range of ``values`` (plotly's own minor labels read as
    bare digits, ambiguous across decades)."""
    positive = [v for v in values if v > 0]
    if not positive:
        return {}
    low, high = min(positive) / 1.5, max(positive) * 1.5
    ticks = [
        m * 10.0**e
        for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for m in (1, 2, 5)
        if low <= m * 10.0**e <= high
    ]
    return {"tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]} if len(ticks) >= 2 else {}


def _layer_field(config: Mapping[str, Mapping[str, Any]], layer: str, field: str) -> Any:
    # A layer missing from a config runs in float at full width (QuantConfig semantics).
    default = {"weight_bits": 32, "act_bits": 32, "width": 1.0}[field]
    return config.get(layer, {}).get(field, default)


def config_summary(config: Mapping[str, Mapping[str, Any]] | None, *, sep: str = "<br>") -> str:
    """A compact per-layer ``w/a/width`` text of a config, for hover labels and tables.

    Example:
        >>> config_summary({"conv1": {"weight_bits": 4, "act_bits": 8, "width": 0.5}})
        'conv1: w4 a8 ×0.5'
    """
    if not config:
        return "(no config)"
    parts = []
    for layer, fields in config.items():
        w = _bits_label(fields.get("weight_bits", 32))
        a = _bits_label(fields.get("act_bits", 32))
        parts.append(f"{layer}: w{w} a{a} ×{fields.get('width', 1.0):g}")
    return sep.join(parts)


def _config_layers(points: Sequence[TrialPoint]) -> list[str]:
    return list(dict.fromkeys(layer for p in points for layer in p.config or {}))


def _sort_key(metric: str | None, maximize: bool):  # type: ignore[no-untyped-def]
    def key(p: TrialPoint) -> tuple[int, float, int]:
        if metric is None or metric not in p.metrics:
            return (1, 0.0, p.number)
        value = p.metrics[metric]
        return (0, -value if maximize else value, p.number)

    return key


def _thin(points: Sequence[TrialPoint], max_points: int) -> list[TrialPoint]:
    if len(points) <= max_points:
        return list(points)
    # Evenly spaced along the sorted front, always keeping both ends.
    step = (len(points) - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]


def layer_config_heatmap(
    points: Sequence[TrialPoint],
    *,
    layers: Sequence[str] | None = None,
    sort_by: str | None = records.ACCURACY,
    maximize: bool = True,
    max_trials: int = 40,
) -> go.Figure:
    """Per-layer weight bits, activation bits and width of the Pareto-optimal trials.

    One heatmap row per Pareto trial (sorted by ``sort_by``, best first), one column per
    layer; buttons switch between weight bits, activation bits and width. Float layers show
    as ``fp``.

    Args:
        points: Trials; only those with ``pareto`` set and a config are drawn.
        layers: Column order; defaults to the order layers first appear in the configs
            (module order, as configs are written).
        sort_by: Metric to sort rows by, best first (``None``: by trial number).
        maximize: Whether higher ``sort_by`` values are better.
        max_trials: At most this many rows, evenly spaced along the sorted front.

    Example:
        >>> p = TrialPoint(0, {"accuracy": 0.9}, {"fc": {"weight_bits": 4, "act_bits": 8,
        ...     "width": 1.0}}, pareto=True)
        >>> layer_config_heatmap([p]).data[0].z
        ([4],)
    """
    if max_trials < 2:
        raise ValueError(f"max_trials must be >= 2, got {max_trials}.")
    title = "Pareto trials: per-layer config"
    front = [p for p in points if p.pareto and p.config]
    if not front:
        return _empty(title, "No Pareto-optimal trial with a recorded config yet.")
    front = _thin(sorted(front, key=_sort_key(sort_by, maximize=maximize)), max_trials)
    columns = list(layers) if layers is not None else _config_layers(front)
    rows = [f"#{p.number}" for p in front]

    fig = go.Figure()
    # Each cell's weight bits, activation bits and width (rows: trials, columns: layers), and
    # their texts (drawn one field at a time, all three in the hover).
    cells = [
        [[_layer_field(p.config, layer, f) for f, _ in _FIELDS] for layer in columns]  # type: ignore[arg-type]
        for p in front
    ]
    labels = [
        [[_bits_label(w), _bits_label(a), f"{width:g}"] for w, a, width in row] for row in cells
    ]
    for index, (field, label) in enumerate(_FIELDS):
        is_bits = field != "width"
        z = [[_bits_display(c[index]) if is_bits else c[index] for c in row] for row in cells]
        text = [[c[index] for c in row] for row in labels]
        colorbar: dict[str, Any] = {"title": {"text": label}}
        if is_bits:
            colorbar.update(_BIT_TICKS)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=columns,
                y=rows,
                text=text,
                texttemplate="%{text}",
                customdata=labels,
                hovertemplate=(
                    "trial %{y}<br>layer %{x}<br>weight bits %{customdata[0]}, "
                    "act bits %{customdata[1]}, width %{customdata[2]}<extra></extra>"
                ),
                zmin=1 if is_bits else 0.0,
                zmax=FLOAT_BITS_DISPLAY if is_bits else 1.0,
                colorscale="Viridis",
                colorbar=colorbar,
                name=label,
                visible=index == 0,
            )
        )
    buttons = [
        {
            "label": label,
            "method": "update",
            "args": [{"visible": [j == i for j in range(len(_FIELDS))]}],
        }
        for i, (_, label) in enumerate(_FIELDS)
    ]
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "buttons": buttons,
                "x": 1.0,
                "y": 1.02,
                "xanchor": "right",
                "yanchor": "bottom",
                "showactive": True,
                "font": {"size": 11},
            }
        ]
    )
    fig.update_yaxes(autorange="reversed", title_text="trial (best first)", type="category")
    fig.update_xaxes(title_text="layer (module order)", type="category", tickangle=-30)
    _layout(fig, title)
    return fig


def sensitivity_bits_figure(
    sensitivity: Sequence[LayerSensitivity], points: Sequence[TrialPoint]
) -> go.Figure:
    """Average Hessian trace per layer next to the bits the Pareto trials assign to it.

    Layers are sorted by decreasing trace, so under the monotone constraint the assigned
    weight bits never increase from left to right. Bars: trace (log scale, ± standard error
    when the report has it); markers: mean weight bits over the Pareto trials with their
    min-max range, and mean activation bits.

    Example:
        >>> from optuna_kmtpe.sensitivity import LayerSensitivity
        >>> fc = LayerSensitivity("fc", "Linear", 640, 10, 64, 0.3, 0.0, 64, {})
        >>> fig = sensitivity_bits_figure([fc], [])
        >>> fig.data[0].x
        ('fc',)
    """
    title = "Hessian trace vs bits of the Pareto trials"
    if not sensitivity:
        return _empty(title, "No sensitivity report stored in the study.")
    ordered = sorted(sensitivity, key=lambda s: (-s.trace, s.name))
    layers = [s.name for s in ordered]
    layers_trace = [s.trace for s in ordered]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    has_stderr = any(s.trace_stderr is not None for s in ordered)
    fig.add_trace(
        go.Bar(
            x=layers,
            y=[s.trace for s in ordered],
            error_y=(
                {"type": "data", "array": [s.trace_stderr or 0.0 for s in ordered]}
                if has_stderr
                else None
            ),
            name="avg Hessian trace",
            marker_color="rgba(99,110,250,0.45)",
            hovertemplate="%{x}<br>trace %{y:.4g}<extra></extra>",
        ),
        secondary_y=False,
    )
    front = [p for p in points if p.pareto and p.config]
    if front:
        for field, label, color, symbol in (
            ("weight_bits", "weight bits (mean, min-max)", "#d62728", "circle"),
            ("act_bits", "activation bits (mean)", "#2ca02c", "diamond"),
        ):
            per_layer = [
                [_bits_display(_layer_field(p.config, layer, field)) for p in front]  # type: ignore[arg-type]
                for layer in layers
            ]
            means = [statistics.fmean(v) for v in per_layer]
            error = None
            if field == "weight_bits":
                error = {
                    "type": "data",
                    "symmetric": False,
                    "array": [max(v) - m for v, m in zip(per_layer, means)],
                    "arrayminus": [m - min(v) for v, m in zip(per_layer, means)],
                }
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=means,
                    error_y=error,
                    mode="lines+markers",
                    name=label,
                    marker={"color": color, "symbol": symbol, "size": 8},
                    line={"color": color, "dash": "solid" if field == "weight_bits" else "dot"},
                    hovertemplate="%{x}<br>" + label + " %{y:.2f}<extra></extra>",
                ),
                secondary_y=True,
            )
    fig.update_yaxes(
        title_text="avg Hessian trace", type="log", secondary_y=False, **_log_ticks(layers_trace)
    )
    fig.update_yaxes(
        title_text="bits", range=[0, FLOAT_BITS_DISPLAY + 0.5], secondary_y=True, **_BIT_TICKS
    )
    # No axis title: it would collide with the legend in the dashboard's 450 px card.
    fig.update_xaxes(type="category", tickangle=-30)
    return _layout(fig, title)


def pareto_front_figure(
    points: Sequence[TrialPoint],
    *,
    x: str = records.LATENCY_S,
    y: str = records.ACCURACY,
    color: str | None = records.ENERGY_J,
) -> go.Figure:
    """Trials in the plane of two metrics, coloured by a third, Pareto trials highlighted.

    Pareto-optimal trials (in the study's objective space) are drawn large with their full
    per-layer config in the hover; other feasible trials small; infeasible trials as grey
    crosses. Trials lacking ``x`` or ``y`` are left out.

    Args:
        points: Trials to draw.
        x: Metric on the horizontal axis.
        y: Metric on the vertical axis.
        color: Metric mapped to colour, or ``None``. Ignored when some drawn trial lacks it.

    Example:
        >>> p = TrialPoint(0, {"accuracy": 0.9, "latency_s": 1e-3}, None, pareto=True)
        >>> pareto_front_figure([p], color=None).data[0].name
        'Pareto-optimal'
    """
    title = f"Pareto front: {y} vs {x}" + (f" (colour: {color})" if color else "")
    drawn = [p for p in points if x in p.metrics and y in p.metrics]
    if not drawn:
        return _empty(title, f"No completed trial with both {x!r} and {y!r} yet.")
    feasible = [p for p in drawn if p.feasible]
    use_color = color is not None and bool(feasible) and all(color in p.metrics for p in feasible)
    fig = go.Figure()

    def full_hover(p: TrialPoint) -> str:
        lines = [f"<b>trial #{p.number}</b>"]
        lines += [f"{k}: {v:.4g}" for k, v in p.metrics.items()]
        lines.append(config_summary(p.config))
        return "<br>".join(lines)

    # Non-Pareto trials can number thousands: their hover is a template over numbers only.
    short_hover = f"<b>trial #%{{customdata}}</b><br>{x}: %{{x:.4g}}<br>{y}: %{{y:.4g}}"

    def add_group(name: str, group: list[TrialPoint], marker: dict[str, Any], full: bool) -> None:
        if not group:
            return
        fig.add_trace(
            go.Scatter(
                x=[_r(p.metrics[x]) for p in group],
                y=[_r(p.metrics[y]) for p in group],
                mode="markers",
                name=name,
                marker=marker,
                customdata=[p.number for p in group],
                hovertext=[full_hover(p) for p in group] if full else None,
                hovertemplate=("%{hovertext}" if full else short_hover) + "<extra></extra>",
            )
        )

    for name, group, full in (
        ("Pareto-optimal", [p for p in feasible if p.pareto], True),
        ("feasible", [p for p in feasible if not p.pareto], False),
    ):
        marker: dict[str, Any] = {"size": 12 if full else 7}
        if use_color:
            marker.update(color=[_r(p.metrics[color]) for p in group], coloraxis="coloraxis")  # type: ignore[index]
        else:
            marker.update(color="#1f77b4")
        marker.update({"line": {"color": "black", "width": 1.5}} if full else {"opacity": 0.6})
        add_group(name, group, marker, full)
    add_group(
        "infeasible",
        [p for p in drawn if not p.feasible],
        {"size": 7, "symbol": "x", "color": "#9e9e9e"},
        False,
    )
    if use_color:
        fig.update_layout(
            coloraxis={
                "colorscale": "Plasma",
                "colorbar": {"title": {"text": records.metric(color).axis_title}},  # type: ignore[arg-type]
            }
        )
    fig.update_xaxes(title_text=records.metric(x).axis_title)
    fig.update_yaxes(title_text=records.metric(y).axis_title)
    return _layout(fig, title)


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def sampler_split_figure(
    history: Sequence[Mapping[str, Any]],
    *,
    threshold_label: str = "loss",
    threshold_sign: float = 1.0,
) -> go.Figure:
    """The K-Means TPE split over the search: set sizes, clusters and thresholds per trial.

    Args:
        history: One dict per sampled trial, as ``optuna_kmtpe.sampler.split_history``
            returns: ``number`` (required) and any of ``k``, ``n_below`` (good set),
            ``n_middle`` (middle band, part of the bad set), ``n_above`` (bad set),
            ``threshold_good`` and ``threshold_bad`` (worst loss in the good set / middle
            band). Rows without a number are skipped; missing or ``None`` values leave gaps.
        threshold_label: What the thresholds measure, for the axis title (the objective's
            name for one objective, ``"non-domination rank"`` for several).
        threshold_sign: Multiplies the thresholds before drawing; ``-1`` turns the sampler's
            losses back into values of a maximized objective.

    Example:
        >>> fig = sampler_split_figure([{"number": 10, "k": 3, "n_below": 4, "n_above": 6}])
        >>> [t.name for t in fig.data]
        ['n_below (good set)', 'n_above (bad set)', 'k (clusters)']
    """
    title = "K-Means TPE split per trial"
    rows = sorted(
        (
            r
            for r in history
            if isinstance(r, Mapping) and _float_or_none(r.get("number")) is not None
        ),
        key=lambda r: r["number"],
    )
    if not rows:
        return _empty(title, "No split diagnostics yet (startup trials, or another sampler).")
    numbers = [int(r["number"]) for r in rows]

    def series(key: str, sign: float = 1.0) -> list[float | None]:
        values = [_float_or_none(r.get(key)) for r in rows]
        return [None if v is None else sign * v for v in values]

    thresholds = {key: series(key, threshold_sign) for key in ("threshold_good", "threshold_bad")}
    has_thresholds = any(v is not None for values in thresholds.values() for v in values)
    fig = make_subplots(
        rows=2 if has_thresholds else 1,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        specs=[[{"secondary_y": True}]] + ([[{}]] if has_thresholds else []),
        row_heights=[0.6, 0.4] if has_thresholds else None,
    )
    for key, label, color, dash in (
        ("n_below", "n_below (good set)", "#2ca02c", "solid"),
        ("n_middle", "n_middle (middle band)", "#ff7f0e", "dash"),
        ("n_above", "n_above (bad set)", "#d62728", "solid"),
    ):
        values = series(key)
        if key == "n_middle" and all(v is None for v in values):
            continue  # an optional column
        fig.add_trace(
            go.Scatter(
                x=numbers, y=values, mode="lines", name=label, line={"color": color, "dash": dash}
            ),
            row=1,
            col=1,
            secondary_y=False,
        )
    fig.add_trace(
        go.Scatter(
            x=numbers,
            y=series("k"),
            mode="lines",
            line={"shape": "hv", "color": "#636efa", "dash": "dot"},
            name="k (clusters)",
        ),
        row=1,
        col=1,
        secondary_y=True,
    )
    if has_thresholds:
        for key, label, color in (
            ("threshold_good", "good-set threshold", "#2ca02c"),
            ("threshold_bad", "middle-band threshold", "#ff7f0e"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=numbers,
                    y=thresholds[key],
                    mode="lines+markers",
                    marker={"size": 4},
                    line={"color": color, "shape": "hv"},
                    name=label,
                ),
                row=2,
                col=1,
            )
        fig.update_yaxes(title_text=threshold_label, nticks=4, row=2, col=1)
    fig.update_yaxes(title_text="trials", row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="k", row=1, col=1, secondary_y=True, showgrid=False)
    fig.update_xaxes(title_text="trial number", row=2 if has_thresholds else 1, col=1)
    return _layout(fig, title)
