"""Read back the split the sampler recorded on each trial."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import numpy as np
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import TrialState

from optuna_kmtpe.sampler._sampler import SPLIT_ATTR_KEY


if TYPE_CHECKING:
    from optuna.study import Study


def split_history(study: Study) -> list[dict[str, Any]]:
    """Return the k-means split the sampler used for each trial, in trial order.

    Only trials sampled by the model (after the startup trials) carry a split. Each dict has:

    - ``number``: the trial number;
    - ``k``: clusters used; ``n_below``, ``n_middle``, ``n_above``, ``n_running``: sizes of the
      good set, of the middle band (inside the bad set), of the whole bad set, and how many
      RUNNING trials were in it, when the trial was sampled;
    - ``threshold_good`` / ``threshold_bad``: the worst loss in the good set / in the middle band
      (single objective: the objective value, negated when maximizing; several objectives: the
      non-domination rank); ``None`` when undefined or infinite;
    - ``state``: the trial's state now, and ``label``: where the trial itself falls under the
      thresholds of the latest split: ``"good"``, ``"middle"``, ``"bad"``, ``"infeasible"``, or
      ``None`` when it has not completed.

    Args:
        study: Any study sampled by :class:`~optuna_kmtpe.KMeansTPESampler`.

    Returns:
        One dict per trial that carries the ``"kmtpe:split"`` user attribute.

    Example:

        .. testcode::

            import optuna
            from optuna_kmtpe import KMeansTPESampler
            from optuna_kmtpe.sampler import split_history

            study = optuna.create_study(sampler=KMeansTPESampler(seed=0, n_startup_trials=5))
            study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=12)
            history = split_history(study)
            assert [h["number"] for h in history] == list(range(5, 12))
    """
    trials = study.get_trials(deepcopy=False)
    with_split = [t for t in trials if SPLIT_ATTR_KEY in t.user_attrs]
    if not with_split:
        return []
    latest = with_split[-1].user_attrs[SPLIT_ATTR_KEY]
    good, bad = latest.get("threshold_good"), latest.get("threshold_bad")

    losses: dict[int, float] = {}
    complete = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and not any(v > 0 for v in t.constraints.values())
    ]
    if complete:
        signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        values = np.array([t.values for t in complete], dtype=float) * signs
        scores = values[:, 0] if values.shape[1] == 1 else _fast_non_domination_rank(values)
        losses = {t.number: float(s) for t, s in zip(complete, scores)}

    history = []
    for trial in with_split:
        record: dict[str, Any] = {"number": trial.number, **trial.user_attrs[SPLIT_ATTR_KEY]}
        record["state"] = trial.state.name
        if trial.number in losses:
            loss = losses[trial.number]
            if good is not None and loss <= good:
                record["label"] = "good"
            elif bad is not None and loss <= bad:
                record["label"] = "middle"
            else:
                record["label"] = "bad"
        elif trial.state == TrialState.COMPLETE:
            record["label"] = "infeasible"
        else:
            record["label"] = None
        history.append(record)
    return history
