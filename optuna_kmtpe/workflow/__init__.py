"""The study workflow behind the ``kmtpe`` command, usable from Python too.

``run_search(SearchSettings())`` runs the embedded digits job end to end: cached float
pre-training, Hessian sensitivity stored in the study, the monotone space, the FPGA model,
warm starts, K-Means TPE, and dashboard graphs refreshed during the search.
"""

from __future__ import annotations

from optuna_kmtpe.objectives._warmstart import warm_start_configs
from optuna_kmtpe.workflow._inspect import TrialExport
from optuna_kmtpe.workflow._inspect import export_trial_model
from optuna_kmtpe.workflow._inspect import load_stored_settings
from optuna_kmtpe.workflow._inspect import load_study
from optuna_kmtpe.workflow._inspect import sensitivity_report
from optuna_kmtpe.workflow._inspect import stored_settings
from optuna_kmtpe.workflow._inspect import trial_config
from optuna_kmtpe.workflow._prepare import SearchJob
from optuna_kmtpe.workflow._prepare import build_space
from optuna_kmtpe.workflow._prepare import prepare_job
from optuna_kmtpe.workflow._prepare import pretrained_model
from optuna_kmtpe.workflow._prepare import recipe_for
from optuna_kmtpe.workflow._run import run_search
from optuna_kmtpe.workflow._samplers import forecast_for
from optuna_kmtpe.workflow._samplers import make_sampler
from optuna_kmtpe.workflow._settings import SearchSettings
from optuna_kmtpe.workflow._settings import default_cache_dir
from optuna_kmtpe.workflow._storage import StudyError
from optuna_kmtpe.workflow._storage import open_storage
from optuna_kmtpe.workflow._tables import format_pareto_table
from optuna_kmtpe.workflow._tables import pareto_rows
from optuna_kmtpe.workflow._tables import trial_progress


__all__ = [
    "SearchJob",
    "SearchSettings",
    "StudyError",
    "TrialExport",
    "build_space",
    "default_cache_dir",
    "export_trial_model",
    "forecast_for",
    "format_pareto_table",
    "load_stored_settings",
    "load_study",
    "make_sampler",
    "open_storage",
    "pareto_rows",
    "prepare_job",
    "pretrained_model",
    "recipe_for",
    "run_search",
    "trial_progress",
    "sensitivity_report",
    "stored_settings",
    "trial_config",
    "warm_start_configs",
]
