"""The monotone bit-width search space and HAWQ-V2 selection, from a sensitivity report.

Imports optuna and the report as plain data, never torch: a worker that only samples configs
(or a dashboard) does not need the model.

Example:
    >>> from optuna_kmtpe.sensitivity import LayerSensitivity, SensitivityReport
    >>> layer = LayerSensitivity("fc", "Linear", 100, 10, 10, 1.0, 0.01, 64, {2: 4.0, 8: 0.01})
    >>> MonotoneSearchSpace(SensitivityReport(layers=(layer,)), weight_bits=(2, 8)).size_after
    4
"""

from __future__ import annotations

from optuna_kmtpe.space._hawq import FrontierPoint
from optuna_kmtpe.space._hawq import hawq_v2_frontier
from optuna_kmtpe.space._hawq import hawq_v2_select
from optuna_kmtpe.space._order import count_monotone
from optuna_kmtpe.space._order import project_monotone
from optuna_kmtpe.space._order import sensitivity_order
from optuna_kmtpe.space._space import MonotoneSearchSpace


__all__ = [
    "FrontierPoint",
    "MonotoneSearchSpace",
    "count_monotone",
    "hawq_v2_frontier",
    "hawq_v2_select",
    "project_monotone",
    "sensitivity_order",
]
