"""Stable ids of the graphs the dashboard saves into a study.

Re-saving under the same id overwrites the plot instead of adding one. The attribute names the
dashboard reads live in :mod:`optuna_kmtpe.records`, with the writers'.
"""

from __future__ import annotations


GRAPH_LAYER_CONFIG = "kmtpe-layer-config"
GRAPH_SENSITIVITY = "kmtpe-sensitivity-bits"
GRAPH_PARETO = "kmtpe-pareto-hardware"
GRAPH_SAMPLER_SPLIT = "kmtpe-sampler-split"
GRAPH_IDS: tuple[str, ...] = (
    GRAPH_LAYER_CONFIG,
    GRAPH_SENSITIVITY,
    GRAPH_PARETO,
    GRAPH_SAMPLER_SPLIT,
)
