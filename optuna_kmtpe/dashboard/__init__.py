"""optuna-dashboard helpers: per-layer plots and a run summary saved into the study.

Importing this package needs optuna, plotly and optuna-dashboard, never torch.

Example:
    >>> import optuna
    >>> from optuna_kmtpe.dashboard import DashboardCallback, publish_dashboard
    >>> study = optuna.create_study(directions=["maximize", "minimize"])
    >>> study.set_metric_names(["accuracy", "latency_s"])
    >>> study.add_trial(optuna.create_trial(values=[0.9, 1e-3]))
    >>> publish_dashboard(study)
    ['kmtpe-pareto-hardware']
"""

from __future__ import annotations

from optuna_kmtpe.dashboard import _keys as keys
from optuna_kmtpe.dashboard._figures import config_summary
from optuna_kmtpe.dashboard._figures import layer_config_heatmap
from optuna_kmtpe.dashboard._figures import pareto_front_figure
from optuna_kmtpe.dashboard._figures import sampler_split_figure
from optuna_kmtpe.dashboard._figures import sensitivity_bits_figure
from optuna_kmtpe.dashboard._keys import GRAPH_IDS
from optuna_kmtpe.dashboard._note import summary_markdown
from optuna_kmtpe.dashboard._publish import DashboardCallback
from optuna_kmtpe.dashboard._publish import load_split_history
from optuna_kmtpe.dashboard._publish import publish_dashboard
from optuna_kmtpe.dashboard._records import TrialPoint
from optuna_kmtpe.dashboard._records import sensitivity_layers
from optuna_kmtpe.dashboard._records import trial_points
from optuna_kmtpe.records import record_constraints
from optuna_kmtpe.sampler import pareto_mask


__all__ = [
    "DashboardCallback",
    "GRAPH_IDS",
    "TrialPoint",
    "config_summary",
    "keys",
    "layer_config_heatmap",
    "load_split_history",
    "pareto_front_figure",
    "pareto_mask",
    "publish_dashboard",
    "record_constraints",
    "sampler_split_figure",
    "sensitivity_layers",
    "sensitivity_bits_figure",
    "summary_markdown",
    "trial_points",
]
