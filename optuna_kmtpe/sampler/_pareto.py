"""The Pareto front: the one definition the sampler, space, workflow and dashboard use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna.study import StudyDirection
from optuna.study._multi_objective import _is_pareto_front


def pareto_mask(
    values: np.ndarray, directions: Sequence[StudyDirection] | None = None
) -> np.ndarray:
    """Which rows of ``values`` no other row dominates (Optuna's own test of the front).

    Args:
        values: Objective values, shape ``(n_trials, n_objectives)``, all finite.
        directions: One direction per objective; ``None``: all minimized (losses).

    Returns:
        A boolean array of length ``n_trials``. Rows with equal values are all kept.

    Example:
        >>> import numpy as np
        >>> from optuna.study import StudyDirection as D
        >>> v = np.array([[0.9, 2.0], [0.8, 1.0], [0.7, 3.0]])
        >>> pareto_mask(v, [D.MAXIMIZE, D.MINIMIZE]).tolist()
        [True, True, False]
    """
    values = np.asarray(values, dtype=float)
    n_objectives = values.shape[-1] if directions is None else len(directions)
    if values.ndim != 2 or values.shape[1] != n_objectives:
        raise ValueError(
            f"pareto_mask: values must have shape (n_trials, {n_objectives}) to match the "
            f"directions, got {values.shape}."
        )
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    if directions is not None:
        values = values * [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions]
    return _is_pareto_front(values, assume_unique_lexsorted=False)
