"""Attribute names the dashboard helpers read (shared with the objective) and graph ids.

The attribute names live in :mod:`optuna_kmtpe.records`, written by the objective and read here.
"""

from __future__ import annotations

from optuna_kmtpe.records import ACCURACY
from optuna_kmtpe.records import BOPS
from optuna_kmtpe.records import CONFIG
from optuna_kmtpe.records import CONSTRAINTS
from optuna_kmtpe.records import DSP_USED
from optuna_kmtpe.records import ENERGY_J
from optuna_kmtpe.records import FEASIBLE
from optuna_kmtpe.records import LATENCY_S
from optuna_kmtpe.records import LAYER_ENERGY_J
from optuna_kmtpe.records import LAYER_LATENCY_S
from optuna_kmtpe.records import SIZE_BITS
from optuna_kmtpe.records import STUDY_RUN
from optuna_kmtpe.records import STUDY_SENSITIVITY
from optuna_kmtpe.records import THROUGHPUT_IPS
from optuna_kmtpe.records import TRAIN_TIME_S
from optuna_kmtpe.records import TRIAL_METRIC_KEYS


__all__ = [
    "ACCURACY", "BOPS", "CONFIG", "CONSTRAINTS", "DSP_USED", "ENERGY_J", "FEASIBLE",
    "GRAPH_IDS", "GRAPH_LAYER_CONFIG", "GRAPH_PARETO", "GRAPH_SAMPLER_SPLIT",
    "GRAPH_SENSITIVITY", "LATENCY_S", "LAYER_ENERGY_J", "LAYER_LATENCY_S", "SIZE_BITS",
    "STUDY_RUN", "STUDY_SENSITIVITY", "THROUGHPUT_IPS", "TRAIN_TIME_S", "TRIAL_METRIC_KEYS",
]  # fmt: skip

# Stable graph ids: re-saving under the same id overwrites the plot instead of adding one.
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
