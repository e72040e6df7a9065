"""The dashboard fed by the project's real objective (MPQObjective), with cheap stand-in parts.

The space, cost model and training are replaced by formulas so the test runs in seconds; what is
real is what matters here: the attributes, constraints and metric names the objective writes,
and what optuna-dashboard then serves.
"""

from __future__ import annotations

import json
from typing import Any

from _synthetic import wsgi_request
import optuna
import pytest

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.dashboard import DashboardCallback
from optuna_kmtpe.dashboard import keys
from optuna_kmtpe.dashboard import publish_dashboard
from optuna_kmtpe.dashboard import trial_points


objectives = pytest.importorskip(
    "optuna_kmtpe.objectives", reason="the objectives package lands on main with the CLI"
)

LAYERS = ("conv1", "conv2", "fc")


class _BitsSpace:
    def suggest(self, trial: optuna.Trial) -> QuantConfig:
        return QuantConfig(
            {
                name: {
                    "weight_bits": trial.suggest_categorical(f"{name}.w", [2, 4, 8]),
                    "act_bits": 8,
                    "width": 1.0,
                }
                for name in LAYERS
            }
        )


def _costs(config: QuantConfig) -> Any:
    bits = [config[name].weight_bits for name in LAYERS]
    layer_latency = {name: 1e-6 * b for name, b in zip(LAYERS, bits)}
    return objectives.CostRecord(
        metrics={"latency_s": sum(layer_latency.values()), "energy_j": 1e-7 * sum(bits)},
        layer_latency_s=layer_latency,
        layer_energy_j={name: 1e-7 * b for name, b in zip(LAYERS, bits)},
    )


def _accuracy(config: QuantConfig, report_epoch: Any) -> float:
    accuracy = 1.0 - sum(0.1 / config[name].weight_bits for name in LAYERS)
    report_epoch(0, accuracy)
    return accuracy


@pytest.mark.slow
def test_dashboard_shows_a_search_run_through_the_real_objective(
    sqlite_url: str, dashboard_app: Any
) -> None:
    objective = objectives.MPQObjective(
        space=_BitsSpace(),
        cost_fn=_costs,
        accuracy_fn=_accuracy,
        metrics=("accuracy", "latency_s", "energy_j"),
        budgets={"latency_s": 15e-6},  # configs above 5 bits on average are infeasible
        early_stop=None,
    )
    study = optuna.create_study(
        storage=sqlite_url,
        directions=objective.directions,
        sampler=optuna.samplers.RandomSampler(seed=3),
    )
    study.set_metric_names(objective.metric_names)
    study.optimize(objective, n_trials=12, callbacks=[DashboardCallback(every_n_trials=4)])
    assert sorted(publish_dashboard(study)) == sorted([keys.GRAPH_LAYER_CONFIG, keys.GRAPH_PARETO])

    points = {p.number: p for p in trial_points(study)}
    infeasible = {n for n, p in points.items() if not p.feasible}
    assert infeasible, "the seed must give some over-budget configs"
    assert all(not points[n].pareto for n in infeasible)

    code, detail = wsgi_request(dashboard_app(sqlite_url), f"/api/studies/{study._study_id}")
    assert code == 200
    assert detail["objective_names"] == ["accuracy", "latency_s", "energy_j"]
    for trial in detail["trials"]:
        # The dashboard sees the latency violation of every trial (legacy list attr).
        assert trial["constraints"], f"trial {trial['number']} shows no constraints"
        assert (trial["constraints"][0] > 0) == (trial["number"] in infeasible)
    graphs = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
    pareto_traces = {t["name"]: t for t in graphs[keys.GRAPH_PARETO]["data"]}
    assert set(pareto_traces["infeasible"]["customdata"]) == infeasible
    heatmap_rows = graphs[keys.GRAPH_LAYER_CONFIG]["data"][0]["y"]
    assert {int(r[1:]) for r in heatmap_rows} == {n for n, p in points.items() if p.pareto}
