from __future__ import annotations

import optuna

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.workflow import format_pareto_table
from optuna_kmtpe.workflow import pareto_rows


def _trial(values: list[float], bits: int, warm_start: str = "") -> optuna.trial.FrozenTrial:
    config = QuantConfig.uniform(["conv", "fc"], weight_bits=bits, act_bits=8)
    attrs = {keys.CONFIG: config.to_dict(), "accuracy": values[0], "latency_s": values[1]}
    if warm_start:
        attrs[keys.WARM_START] = warm_start
    return optuna.trial.create_trial(values=values, user_attrs=attrs)


def test_same_config_trials_are_one_row_and_dominated_trials_are_left_out() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_s"])
    study.add_trial(_trial([0.99, 4e-5], 8, warm_start="uniform-w8a8"))
    study.add_trial(_trial([0.97, 2e-5], 4))
    study.add_trial(_trial([0.97, 2e-5], 4))  # the same config proposed again
    study.add_trial(_trial([0.90, 3e-5], 2))  # dominated by trial 1
    rows = pareto_rows(study)
    assert [(row["trial"], row["same_config_trials"]) for row in rows] == [(0, []), (1, [2])]
    table = format_pareto_table(rows)
    assert "0 (uniform-w8a8)" in table and "1=2 " in table
    assert "99.00%" in table and "w4-4 a8-8 x1-1" in table
