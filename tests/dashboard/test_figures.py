"""The pure layer: Pareto marking, parsing, and each figure built from plain data."""

from __future__ import annotations

import itertools
import json

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState
import pytest

from optuna_kmtpe import records
from optuna_kmtpe.dashboard import TrialPoint
from optuna_kmtpe.dashboard import config_summary
from optuna_kmtpe.dashboard import layer_config_heatmap
from optuna_kmtpe.dashboard import pareto_front_figure
from optuna_kmtpe.dashboard import pareto_mask
from optuna_kmtpe.dashboard import sampler_split_figure
from optuna_kmtpe.dashboard import sensitivity_bits_figure
from optuna_kmtpe.dashboard import sensitivity_layers
from optuna_kmtpe.dashboard import summary_markdown
from optuna_kmtpe.dashboard._note import NOTE_TITLE
from optuna_kmtpe.dashboard._records import parse_config
from optuna_kmtpe.dashboard._records import points_from_trials
from optuna_kmtpe.sensitivity import LayerSensitivity
from optuna_kmtpe.sensitivity import SensitivityReport


MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE


def _cfg(*bits_width: tuple[int, int, float], names: tuple[str, ...] = ("a", "b", "c")) -> dict:
    return {
        n: {"weight_bits": w, "act_bits": a, "width": width}
        for n, (w, a, width) in zip(names, bits_width)
    }


def _brute_force_front(values: np.ndarray, directions: list[StudyDirection]) -> list[bool]:
    sign = np.array([-1.0 if d == MAX else 1.0 for d in directions])
    loss = values * sign
    result = []
    for i, j_range in zip(range(len(loss)), itertools.repeat(range(len(loss)))):
        dominated = any(
            all(loss[j] <= loss[i]) and any(loss[j] < loss[i]) for j in j_range if j != i
        )
        result.append(not dominated)
    return result


@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_matches_definition_with_mixed_directions_and_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct levels: many ties and duplicate points, where off-by-one domination bugs hide.
    values = rng.integers(0, 4, size=(40, 3)).astype(float)
    directions = [MAX, MIN, MIN]
    assert pareto_mask(values, directions).tolist() == _brute_force_front(values, directions)


def test_pareto_mask_keeps_duplicates_and_rejects_wrong_shape() -> None:
    values = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    assert pareto_mask(values, [MIN, MIN]).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="shape"):
        pareto_mask(values, [MIN])


def test_points_from_trials_marks_front_among_feasible_complete_trials_only() -> None:
    good_config = _cfg((4, 8, 1.0))
    trials = [
        optuna.create_trial(values=[0.9, 2.0], user_attrs={"config": good_config}),
        # Would dominate everything, but violates a constraint.
        optuna.create_trial(values=[0.99, 0.1], system_attrs={"constraints": [0.5]}),
        # Would dominate too, but the objective flagged it infeasible.
        optuna.create_trial(values=[0.98, 0.2], user_attrs={"feasible": False}),
        optuna.create_trial(values=[0.8, 1.0], user_attrs={"latency_s": 7.0, "accuracy": 0.1}),
        optuna.create_trial(values=[0.5, 5.0]),  # dominated
        optuna.create_trial(values=[float("-inf"), 1.0]),  # unusable for the front
        optuna.create_trial(state=TrialState.FAIL),
        optuna.create_trial(state=TrialState.PRUNED),
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    points = points_from_trials(trials, [MAX, MIN], ["accuracy", "latency_s"])
    by_number = {p.number: p for p in points}
    assert sorted(by_number) == [0, 1, 2, 3, 4, 5]  # failed and pruned trials are not points
    assert {p.number for p in points if p.pareto} == {0, 3}
    assert not by_number[1].feasible and not by_number[2].feasible
    assert by_number[0].config == good_config
    # The objective value wins over a user attr of the same name.
    assert by_number[3].metrics == {"accuracy": 0.8, "latency_s": 1.0}
    assert "accuracy" not in by_number[5].metrics


def test_points_from_trials_requires_one_name_per_objective() -> None:
    with pytest.raises(ValueError, match="one name per objective"):
        points_from_trials([], [MAX, MIN], ["accuracy"])


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "not json",
        {"a": {"weight_bits": 3.5}},
        {"a": {"colour": 1}},
        ["a"],
    ],
)
def test_parse_config_tolerates_malformed_attrs(raw: object) -> None:
    assert parse_config(raw) is None


def test_parse_config_accepts_dict_and_json() -> None:
    config = _cfg((4, 8, 0.5))
    assert parse_config(config) == config
    assert parse_config(json.dumps({"layers": config})) == config


def _layer(name: str, trace: float, stderr: float | None = 0.0) -> LayerSensitivity:
    return LayerSensitivity(name, "Linear", 90, 9, 10, trace, stderr, 64, {2: 1.0})  # type: ignore[arg-type]


def test_dashboard_reads_the_chunked_report_sensitivity_saved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One decoder: the dashboard reads exactly what SensitivityReport.save_to_study wrote,
    # split over several attrs, as SensitivityReport.load_from_study does.
    monkeypatch.setattr("optuna_kmtpe.sensitivity._report._MAX_ATTR_CHARS", 10)
    report = SensitivityReport(
        layers=(_layer("a", 2.0, 0.1), _layer("b", 1.0, 0.2), _layer("c", 0.5))
    )
    study = optuna.create_study()
    report.save_to_study(study)
    attrs = dict(study.user_attrs)
    assert attrs[records.STUDY_SENSITIVITY]["extra_chunks"] == 2
    assert sensitivity_layers(attrs) == list(report.layers)
    assert SensitivityReport.load_from_study(study) == report
    # A missing chunk: the dashboard shows the layers that are there; the search refuses.
    del attrs[f"{records.STUDY_SENSITIVITY}:2"]
    assert [s.name for s in sensitivity_layers(attrs)] == ["a", "b"]
    with pytest.raises(ValueError, match="incomplete"):
        SensitivityReport.from_study_attrs(attrs)
    # Nothing stored, or something unreadable, or no finite trace: nothing to draw.
    nan_trace = SensitivityReport(layers=(_layer("a", float("nan")),)).to_dict()
    for broken in (
        {},
        {records.STUDY_SENSITIVITY: "x"},
        {records.STUDY_SENSITIVITY: {"layers": [{}]}},
    ):
        assert sensitivity_layers(broken) == []
    assert sensitivity_layers({records.STUDY_SENSITIVITY: nan_trace}) == []


def _front_points() -> list[TrialPoint]:
    return [
        TrialPoint(
            5, {"accuracy": 0.80}, _cfg((2, 4, 0.5), (4, 8, 1.0), (32, 32, 1.0)), pareto=True
        ),
        TrialPoint(2, {"accuracy": 0.95}, _cfg((8, 8, 1.0), (6, 8, 0.75)), pareto=True),
        TrialPoint(7, {"accuracy": 0.90}, None, pareto=True),  # no config: not drawn
        TrialPoint(9, {"accuracy": 0.99}, _cfg((8, 8, 1.0)), pareto=False),  # not on the front
    ]


def test_heatmap_rows_are_pareto_trials_best_first_and_float_layers_show_fp() -> None:
    fig = layer_config_heatmap(_front_points())
    weight, act, width = fig.data
    assert weight.y == ("#2", "#5")
    assert weight.x == ("a", "b", "c")
    # Trial 2 has no "c": a missing layer runs in float (QuantConfig semantics).
    assert weight.z == ([8, 6, 9], [2, 4, 9])
    assert weight.text == (["8", "6", "fp"], ["2", "4", "fp"])
    assert act.z[1] == [4, 8, 9]
    assert width.z == ([1.0, 0.75, 1.0], [0.5, 1.0, 1.0])
    assert [t.visible for t in fig.data] == [True, False, False]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.args[0]["visible"] for b in buttons] == [
        [True, False, False],
        [False, True, False],
        [False, False, True],
    ]


def test_heatmap_thins_long_fronts_evenly_and_keeps_both_ends() -> None:
    points = [
        TrialPoint(i, {"accuracy": i / 100}, _cfg((4, 4, 1.0)), pareto=True) for i in range(100)
    ]
    fig = layer_config_heatmap(points, max_trials=10)
    rows = fig.data[0].y
    assert len(rows) == 10 and rows[0] == "#99" and rows[-1] == "#0"
    with pytest.raises(ValueError, match="max_trials"):
        layer_config_heatmap(points, max_trials=1)


def test_heatmap_without_front_explains_itself() -> None:
    fig = layer_config_heatmap([TrialPoint(0, {}, _cfg((4, 4, 1.0)), pareto=False)])
    assert len(fig.data) == 0
    assert "No Pareto-optimal trial" in fig.layout.annotations[0].text


def test_sensitivity_figure_orders_layers_by_trace_and_summarizes_pareto_bits() -> None:
    sensitivity = [
        _layer("a", 0.5, 0.05),
        _layer("b", 4.0, 0.2),
        _layer("c", 1.0, None),
    ]
    fig = sensitivity_bits_figure(sensitivity, _front_points())
    bars, weight, act = fig.data
    assert bars.x == ("b", "c", "a")
    assert bars.y == (4.0, 1.0, 0.5)
    assert list(bars.error_y.array) == [0.2, 0.0, 0.05]
    # Pareto configs: trial 5 (a=2, b=4, c=fp) and trial 2 (a=8, b=6, c=fp missing).
    assert list(weight.y) == [5.0, 9.0, 5.0]
    assert list(weight.error_y.array) == [1.0, 0.0, 3.0]
    assert list(weight.error_y.arrayminus) == [1.0, 0.0, 3.0]
    assert list(act.y) == [8.0, 9.0, 6.0]
    assert fig.layout.yaxis.type == "log"


def test_sensitivity_figure_without_report_or_front() -> None:
    assert "No sensitivity report" in sensitivity_bits_figure([], []).layout.annotations[0].text
    fig = sensitivity_bits_figure([_layer("a", 1.0)], [])
    assert [t.type for t in fig.data] == ["bar"]


def test_pareto_figure_groups_trials_and_puts_configs_in_pareto_hover_only() -> None:
    points = [
        TrialPoint(
            1,
            {"latency_s": 1e-3, "accuracy": 0.9, "energy_j": 2e-6},
            _cfg((4, 8, 1.0)),
            pareto=True,
        ),
        TrialPoint(2, {"latency_s": 2e-3, "accuracy": 0.8, "energy_j": 3e-6}, _cfg((8, 8, 1.0))),
        TrialPoint(
            3,
            {"latency_s": 9e-3, "accuracy": 0.99, "energy_j": 1e-6},
            _cfg((8, 8, 1.0)),
            feasible=False,
        ),
        TrialPoint(4, {"accuracy": 0.7}, None),  # no latency: cannot be placed
    ]
    fig = pareto_front_figure(points)
    assert [t.name for t in fig.data] == ["Pareto-optimal", "feasible", "infeasible"]
    pareto, feasible, infeasible = fig.data
    assert pareto.x == (1e-3,) and pareto.y == (0.9,)
    assert "a: w4 a8 ×1" in pareto.hovertext[0]
    assert feasible.hovertext is None and feasible.customdata == (2,)
    assert infeasible.marker.color == "#9e9e9e"
    assert (
        list(pareto.marker.color) == [2e-6]
        and fig.layout.coloraxis.colorbar.title.text == "energy_j [J]"
    )


def test_pareto_figure_drops_colour_when_a_trial_lacks_it_and_handles_no_data() -> None:
    points = [
        TrialPoint(1, {"latency_s": 1.0, "accuracy": 0.9, "energy_j": 2.0}, None, pareto=True),
        TrialPoint(2, {"latency_s": 2.0, "accuracy": 0.8}, None),
    ]
    fig = pareto_front_figure(points)
    assert all(t.marker.coloraxis is None for t in fig.data)
    empty = pareto_front_figure([TrialPoint(0, {"accuracy": 1.0}, None)])
    assert "No completed trial" in empty.layout.annotations[0].text


def test_split_figure_sorts_rows_and_draws_sizes_clusters_and_thresholds() -> None:
    history = [
        {
            "number": 12,
            "k": 3,
            "n_below": 4,
            "n_middle": 2,
            "n_above": 8,
            "threshold_good": -0.91,
            "threshold_bad": -0.85,
            "label": "good",
        },
        {
            "number": 10,
            "k": 2,
            "n_below": 3,
            "n_middle": 1,
            "n_above": 7,
            "threshold_good": -0.90,
            "threshold_bad": None,
        },
        {"k": 9},  # no number: skipped
        {"number": 11, "n_below": 3},  # partial row: gaps
    ]
    fig = sampler_split_figure(history, threshold_label="accuracy", threshold_sign=-1.0)
    by_name = {t.name: t for t in fig.data}
    assert by_name["n_below (good set)"].x == (10, 11, 12)
    assert by_name["n_below (good set)"].y == (3.0, 3.0, 4.0)
    assert by_name["n_middle (middle band)"].y == (1.0, None, 2.0)
    assert by_name["k (clusters)"].y == (2.0, None, 3.0)
    # Losses of a maximized objective are drawn back as objective values.
    assert by_name["good-set threshold"].y == (0.90, None, 0.91)
    assert by_name["middle-band threshold"].y == (None, None, 0.85)
    assert by_name["good-set threshold"].yaxis != by_name["n_below (good set)"].yaxis
    assert fig.layout.yaxis3.title.text == "accuracy"


def test_split_figure_without_thresholds_or_rows() -> None:
    fig = sampler_split_figure([{"number": 1, "k": 2, "n_below": 1, "n_above": 3}])
    assert [t.name for t in fig.data] == [
        "n_below (good set)",
        "n_above (bad set)",
        "k (clusters)",
    ]
    assert "No split diagnostics" in sampler_split_figure([]).layout.annotations[0].text


def test_figures_stay_small_enough_to_refresh_often() -> None:
    # 40 Pareto trials x 20 layers and 500 plain trials: the figures the callback rewrites.
    rng = np.random.default_rng(0)
    layers = tuple(f"layer{i}.conv" for i in range(20))
    points = [
        TrialPoint(
            i,
            {
                "accuracy": float(rng.random()),
                "latency_s": float(rng.random()),
                "energy_j": float(rng.random()),
            },
            _cfg(*[(4, 8, 1.0)] * 20, names=layers),
            pareto=i < 40,
        )
        for i in range(540)
    ]
    heatmap = layer_config_heatmap(points).to_json()
    pareto = pareto_front_figure(points).to_json()
    assert len(heatmap) < 120_000
    # Non-Pareto trials cost numbers, not per-trial hover text.
    assert len(pareto) < 120_000


def test_config_summary_and_note_table() -> None:
    assert config_summary(None) == "(no config)"
    assert config_summary(_cfg((1, 32, 0.25)), sep="; ") == "a: w1 afp ×0.25"
    points = [
        TrialPoint(
            3,
            {"accuracy": 0.91, "latency_s": 1e-3, "size_bits": 1e5},
            _cfg((4, 8, 1.0), (8, 32, 0.5)),
            pareto=True,
        ),
        TrialPoint(8, {"accuracy": 0.97, "latency_s": 2e-3}, _cfg((8, 8, 1.0)), pareto=True),
        TrialPoint(9, {"accuracy": 0.5, "latency_s": 9e-3}, None),
        TrialPoint(10, {"accuracy": 0.99, "latency_s": 9e-3}, None, feasible=False),
    ]
    text = summary_markdown(
        study_name="s",
        run={"model": "a|b", "space_size": {"before": 4.3e9, "after": 21_000_000}},
        points=points,
        metric_names=["accuracy", "latency_s"],
        maximize=[True, False],
        state_counts={"COMPLETE": 4, "FAIL": 1, "RUNNING": 0},
        max_rows=1,
    )
    lines = text.splitlines()
    assert lines[0] == f"## {NOTE_TITLE}: `s`"
    assert "| model | a\\|b |" in lines  # a pipe must not break the table
    assert "| space_size | before: 4.3e+09, after: 2.1e+07 |" in lines
    assert "**Trials:** 4 complete, 1 fail; 3 feasible completed." in lines
    header = next(line for line in lines if line.startswith("| trial"))
    assert header == (
        "| trial | accuracy | latency_s | size_bits | mean w bits | mean a bits | mean width |"
    )
    rows = [line for line in lines if line.startswith("| #")]
    assert rows == ["| #8 | 0.97 | 0.002 |  | 8.00 | 8.00 | 1.00 |"]  # best accuracy first
    assert "Showing 1 of 2" in text
    text = summary_markdown(
        study_name="s",
        run=None,
        points=points[2:],
        metric_names=["accuracy"],
        maximize=[True],
        state_counts={},
    )
    assert "_No Pareto-optimal trial yet._" in text and "| run |" not in text
