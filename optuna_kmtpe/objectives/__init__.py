"""Objective factories: model + data + search space + FPGA model -> an Optuna objective.

The objective computes hardware costs first (cheap) and trains only feasible configs (QAT or
PTQ, expensive). It returns any subset of :data:`METRICS` and exposes matching study
directions and metric names.
"""

from __future__ import annotations

from optuna_kmtpe import records
from optuna_kmtpe.objectives._factory import ScalarizedObjective
from optuna_kmtpe.objectives._factory import hardware_cost_fn
from optuna_kmtpe.objectives._factory import make_objective
from optuna_kmtpe.objectives._factory import quantized_accuracy_fn
from optuna_kmtpe.objectives._forecast import HessianAccuracyPrior
from optuna_kmtpe.objectives._forecast import KnownCosts
from optuna_kmtpe.objectives._forecast import measured_pruning_changes
from optuna_kmtpe.objectives._forecast import sampler_forecast
from optuna_kmtpe.objectives._metrics import COST_METRICS
from optuna_kmtpe.objectives._objective import CostRecord
from optuna_kmtpe.objectives._objective import EarlyStopRule
from optuna_kmtpe.objectives._objective import MPQObjective
from optuna_kmtpe.objectives._objective import StopTraining
from optuna_kmtpe.objectives._warmstart import enqueue_warm_starts
from optuna_kmtpe.objectives._warmstart import warm_start_configs
from optuna_kmtpe.objectives._warmstart import warm_start_study
from optuna_kmtpe.objectives._warmstart import warm_starts_inside
from optuna_kmtpe.records import METRICS
from optuna_kmtpe.records import Metric


def __getattr__(name: str) -> object:
    # The recipe is owned by quant (torch); importing objectives stays torch-free.
    if name == "TrainingRecipe":
        from optuna_kmtpe.quant import TrainingRecipe

        return TrainingRecipe
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COST_METRICS",
    "CostRecord",
    "EarlyStopRule",
    "HessianAccuracyPrior",
    "KnownCosts",
    "METRICS",
    "MPQObjective",
    "Metric",
    "ScalarizedObjective",
    "StopTraining",
    "TrainingRecipe",
    "enqueue_warm_starts",
    "warm_start_configs",
    "warm_start_study",
    "warm_starts_inside",
    "hardware_cost_fn",
    "make_objective",
    "measured_pruning_changes",
    "quantized_accuracy_fn",
    "records",
    "sampler_forecast",
]
