"""Warm starts: known-good configs enqueued before the sampler takes over."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import optuna

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import QuantConfig


def enqueue_warm_starts(
    study: optuna.Study,
    configs: Sequence[tuple[str, QuantConfig]],
    params_for: Callable[[QuantConfig], dict[str, Any]],
) -> int:
    """Enqueue configs (uniform 8/4-bit, HAWQ-V2 selections, ...) as the study's first trials.

    Idempotent: a study that already holds the warm starts (a resumed run, or a second worker)
    gets nothing enqueued again.

    Args:
        study: The study.
        configs: ``(label, config)`` pairs; the label is stored as user attr ``warm_start``.
        params_for: The search space's config -> trial params map (e.g.
            ``MonotoneSearchSpace.params_for``). Configs the space cannot express are skipped.

    Returns:
        The number of trials enqueued.
    """
    if study.user_attrs.get(keys.STUDY_WARM_STARTED):
        return 0
    enqueued = 0
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for label, config in configs:
        try:
            params = params_for(config)
        except ValueError:
            continue
        signature = tuple(sorted(params.items()))
        if signature in seen:
            continue
        seen.add(signature)
        study.enqueue_trial(params, user_attrs={keys.WARM_START: label}, skip_if_exists=True)
        enqueued += 1
    study.set_user_attr(keys.STUDY_WARM_STARTED, True)
    return enqueued
