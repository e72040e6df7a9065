"""What optuna-dashboard serves for a kmtpe study, checked through its real WSGI application."""

from __future__ import annotations

import json
import logging
from typing import Any

from _synthetic import LAYERS
from _synthetic import METRIC_NAMES
from _synthetic import build_synthetic_study
from _synthetic import wsgi_request
import optuna
from optuna.storages import RDBStorage
import pytest

from optuna_kmtpe import records
from optuna_kmtpe.dashboard import GRAPH_IDS
from optuna_kmtpe.dashboard import DashboardCallback
from optuna_kmtpe.dashboard import keys
from optuna_kmtpe.dashboard import publish_dashboard
from optuna_kmtpe.dashboard import record_constraints
from optuna_kmtpe.dashboard import trial_points
from optuna_kmtpe.dashboard._note import NOTE_TITLE


def _study_detail(app: Any, study: optuna.Study) -> dict[str, Any]:
    code, detail = wsgi_request(app, f"/api/studies/{study._study_id}")
    assert code == 200, detail
    return detail


def _graphs(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}


def test_published_study_exposes_graphs_names_attrs_and_note(
    synthetic_study: optuna.Study, fake_split_history: list, dashboard_app: Any
) -> None:
    saved = publish_dashboard(synthetic_study)
    assert sorted(saved) == sorted(GRAPH_IDS)

    detail = _study_detail(dashboard_app(synthetic_study._storage), synthetic_study)
    assert detail["objective_names"] == METRIC_NAMES
    graphs = _graphs(detail)
    assert sorted(graphs) == sorted(GRAPH_IDS)

    front = {p.number for p in trial_points(synthetic_study) if p.pareto}
    heatmap = graphs[keys.GRAPH_LAYER_CONFIG]
    assert {int(row[1:]) for row in heatmap["data"][0]["y"]} == front
    assert heatmap["data"][0]["x"] == list(LAYERS)
    pareto_trace = graphs[keys.GRAPH_PARETO]["data"][0]
    assert pareto_trace["name"] == "Pareto-optimal" and set(pareto_trace["customdata"]) == front
    assert graphs[keys.GRAPH_SENSITIVITY]["data"][0]["x"][0] == "features.0"  # largest trace
    split = {t["name"]: t for t in graphs[keys.GRAPH_SAMPLER_SPLIT]["data"]}
    assert split["k (clusters)"]["x"] == [row["number"] for row in fake_split_history]

    study_attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
    assert "digits_cnn" in study_attrs[records.STUDY_RUN]
    body = detail["note"]["body"]
    assert body.startswith(f"## {NOTE_TITLE}: `synthetic-mpq`") and "xczu3eg" in body
    for number in front:
        assert f"| #{number} |" in body

    trial = next(t for t in detail["trials"] if t["number"] == 0)
    trial_attrs = {a["key"] for a in trial["user_attrs"]}
    assert {
        records.CONFIG,
        records.ACCURACY,
        records.LATENCY_S,
        records.ENERGY_J,
        records.FEASIBLE,
    } <= trial_attrs


def test_republishing_overwrites_graphs_instead_of_adding_them(
    sqlite_url: str, dashboard_app: Any
) -> None:
    study = build_synthetic_study(sqlite_url, n_trials=6, seed=1)
    publish_dashboard(study)
    first = _graphs(_study_detail(dashboard_app(sqlite_url), study))
    more = build_synthetic_study(optuna.storages.InMemoryStorage(), n_trials=15, seed=2)
    for trial in more.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        study.add_trial(trial)
    publish_dashboard(study)

    second = _graphs(_study_detail(dashboard_app(sqlite_url), study))
    assert sorted(second) == sorted(first)  # same ids, no duplicates
    assert second[keys.GRAPH_PARETO] != first[keys.GRAPH_PARETO]
    n_points = sum(len(t["x"]) for t in second[keys.GRAPH_PARETO]["data"])
    assert n_points == len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))


def test_study_without_kmtpe_attrs_gets_only_what_its_data_supports(
    sqlite_url: str, dashboard_app: Any
) -> None:
    study = optuna.create_study(storage=sqlite_url, directions=["maximize", "minimize"])
    study.set_metric_names(["f1", "cost"])
    for value in (0.5, 0.7, 0.6):
        study.add_trial(optuna.create_trial(values=[value, 1.0 - value]))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL))

    # No hardware attrs: the Pareto plot falls back to the objectives, nothing else is drawn.
    assert publish_dashboard(study) == [keys.GRAPH_PARETO]
    detail = _study_detail(dashboard_app(sqlite_url), study)
    pareto = _graphs(detail)[keys.GRAPH_PARETO]
    assert pareto["layout"]["xaxis"]["title"]["text"] == "cost"
    assert pareto["layout"]["yaxis"]["title"]["text"] == "f1"
    assert "1 fail" in detail["note"]["body"]


def test_callback_refreshes_during_a_real_search_and_survives_bad_trials(
    sqlite_url: str, dashboard_app: Any
) -> None:
    study = optuna.create_study(
        storage=sqlite_url,
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.set_metric_names(["accuracy", "latency_s"])
    callback = DashboardCallback(every_n_trials=3)
    seen_during_search: list[int] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        bits = trial.suggest_categorical("bits", [2, 4, 8])
        if trial.number == 4:
            raise ValueError("simulated NaN loss")
        system_attrs = study._storage.get_study_system_attrs(study._study_id)
        graphs = [k for k in system_attrs if k.startswith("dashboard:plot_data:")]
        seen_during_search.append(len(graphs))
        latency = bits * 1e-4
        if trial.number % 5 == 1:
            return 0.5, latency  # infeasible-like trial that records nothing
        trial.set_user_attr(
            records.CONFIG, {"conv": {"weight_bits": bits, "act_bits": 8, "width": 1.0}}
        )
        trial.set_user_attr(records.ACCURACY, 0.9 + bits / 100)
        trial.set_user_attr(records.LATENCY_S, latency)
        trial.set_user_attr(records.ENERGY_J, bits * 1e-7)
        return 0.9 + bits / 100, latency

    study.optimize(objective, n_trials=9, callbacks=[callback], catch=(ValueError,))
    assert callback.n_refreshes == 3  # after the 3rd, 6th and 9th finished trials
    assert seen_during_search[0] == 0 and seen_during_search[-1] > 0  # refreshed mid-search
    graphs = _graphs(_study_detail(dashboard_app(sqlite_url), study))
    assert set(graphs) == {keys.GRAPH_LAYER_CONFIG, keys.GRAPH_PARETO}


def test_callback_skips_unchanged_writes_and_never_stops_the_search(
    sqlite_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = build_synthetic_study(sqlite_url, n_trials=8)
    storage = study._storage
    writes: list[str] = []
    original = storage.set_study_system_attr

    def counting(study_id: int, key: str, value: Any) -> None:
        writes.append(key)
        original(study_id, key, value)

    monkeypatch.setattr(storage, "set_study_system_attr", counting)
    callback = DashboardCallback(every_n_trials=1)
    frozen = study.trials[0]
    callback(study, frozen)
    assert writes, "the first refresh must write the plots and the note"
    n_first = len(writes)
    callback(study, frozen)
    assert len(writes) == n_first  # nothing changed, nothing rewritten

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("storage hiccup")

    monkeypatch.setattr(storage, "get_all_trials", broken)
    optuna_logger = logging.getLogger("optuna")
    monkeypatch.setattr(optuna_logger, "propagate", True)
    with caplog.at_level(logging.WARNING, logger="optuna"):
        callback(study, frozen)  # must not raise
    assert callback.n_refreshes == 3
    assert "storage hiccup" in caplog.text


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_callback_validates_every_n_trials(every: Any) -> None:
    with pytest.raises(ValueError, match="every_n_trials"):
        DashboardCallback(every_n_trials=every)


def test_record_constraints_fills_the_dashboard_gap_without_double_counting(
    sqlite_url: str, dashboard_app: Any
) -> None:
    study = optuna.create_study(storage=sqlite_url, directions=["maximize", "minimize"])

    helper_trial = study.ask()
    assert record_constraints(helper_trial, {"latency_s": 2e-5, "dsp": -10.0}) is False
    study.tell(helper_trial, [0.99, 1e-4])
    feasible_trial = study.ask()
    assert record_constraints(feasible_trial, {"latency_s": -1e-5, "dsp": -3.0}) is True
    study.tell(feasible_trial, [0.9, 2e-4])
    native_trial = study.ask()
    native_trial.set_constraint("latency_s", 2e-5)
    study.tell(native_trial, [0.95, 1e-4])

    frozen = study.get_trials()
    # Optuna sees each constraint exactly once, and treats the violating trial as infeasible.
    assert frozen[0].constraints == {"0": 2e-5, "1": -10.0}
    assert frozen[0].user_attrs[records.CONSTRAINTS] == {"latency_s": 2e-5, "dsp": -10.0}
    assert [t.number for t in study.best_trials] == [1]

    detail = _study_detail(dashboard_app(RDBStorage(sqlite_url)), study)
    constraints = {t["number"]: t["constraints"] for t in detail["trials"]}
    assert constraints[0] == [2e-5, -10.0]
    assert constraints[1] == [-1e-5, -3.0]
    # The gap itself: if this starts failing, optuna-dashboard reads Optuna 5 constraints and
    # record_constraints can go back to Trial.set_constraint.
    assert constraints[2] == []


def test_record_constraints_rejects_bad_input_and_mixing_with_set_constraint() -> None:
    study = optuna.create_study()
    trial = study.ask()
    for bad in ({}, {"": 1.0}, {"x": float("nan")}, {"x": "high"}, [("x", 1.0)]):
        with pytest.raises(ValueError):
            record_constraints(trial, bad)  # type: ignore[arg-type]
    trial.set_constraint("latency_s", 1.0)
    with pytest.raises(ValueError, match="counts twice"):
        record_constraints(trial, {"latency_s": 1.0})


def test_journal_file_storage_opened_by_path_like_the_cli_does(
    tmp_path: Any, fake_split_history: list, dashboard_app: Any
) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna_dashboard._storage_url import get_storage

    path = str(tmp_path / "kmtpe.log")
    study = build_synthetic_study(JournalStorage(JournalFileBackend(path)), n_trials=8)
    publish_dashboard(study)
    # `optuna-dashboard ./kmtpe.log` resolves a plain path the same way.
    detail = _study_detail(dashboard_app(get_storage(path)), study)
    assert sorted(_graphs(detail)) == sorted(GRAPH_IDS)
    assert detail["objective_names"] == METRIC_NAMES


@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]])
def test_split_plot_of_a_real_kmeans_tpe_search(
    sqlite_url: str, dashboard_app: Any, directions: list[str]
) -> None:
    from optuna_kmtpe import KMeansTPESampler
    from optuna_kmtpe.sampler import split_history

    study = optuna.create_study(
        storage=sqlite_url,
        directions=directions,
        sampler=KMeansTPESampler(seed=0, n_startup_trials=4),
    )
    study.set_metric_names(["accuracy", "latency_s"][: len(directions)])

    def objective(trial: optuna.Trial) -> Any:
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        return x if len(directions) == 1 else (x, y + (1 - x) ** 2)

    study.optimize(objective, n_trials=8)
    assert keys.GRAPH_SAMPLER_SPLIT in publish_dashboard(study)
    history = split_history(study)
    assert [h["number"] for h in history] == list(range(4, 8))

    graph = _graphs(_study_detail(dashboard_app(sqlite_url), study))[keys.GRAPH_SAMPLER_SPLIT]
    traces = {t["name"]: t for t in graph["data"]}
    assert traces["k (clusters)"]["x"] == list(range(4, 8))
    assert traces["k (clusters)"]["y"] == [h["k"] for h in history]
    good = traces["good-set threshold"]["y"]
    if len(directions) == 1:
        # A maximized objective: the sampler's losses are drawn back as accuracy values.
        assert good == [
            None if h["threshold_good"] is None else -h["threshold_good"] for h in history
        ]
        assert graph["layout"]["yaxis3"]["title"]["text"] == "accuracy"
    else:
        assert graph["layout"]["yaxis3"]["title"]["text"] == "non-domination rank"


def test_each_trial_note_shows_its_bits_and_widths_and_a_user_edit_is_kept(
    synthetic_study: optuna.Study, dashboard_app: Any
) -> None:
    """Issue 14 item 14: a trial page shows level indices as parameters; its note, shown first,
    gives the bits and widths."""
    publish_dashboard(synthetic_study)
    app = dashboard_app(synthetic_study._storage)
    trials = {t["number"]: t for t in _study_detail(app, synthetic_study)["trials"]}
    noted = 0
    for trial in synthetic_study.get_trials():
        body = trials[trial.number]["note"]["body"]
        if records.CONFIG not in trial.user_attrs:  # a trial without attributes: no note
            assert body == ""
            continue
        noted += 1
        for layer, fields in trial.user_attrs[records.CONFIG].items():
            row = f"| {layer} | {fields['weight_bits']} | {fields['act_bits']} | "
            assert row + f"{fields['width']:g} |" in body
        assert body.startswith("**Config:** features.0: w")
    assert noted >= 20

    # A note the user edited in the dashboard (version 2) is never overwritten.
    trial_id = synthetic_study.trials[0]._trial_id
    code, _ = wsgi_request(
        app,
        f"/api/studies/{synthetic_study._study_id}/{trial_id}/note",
        method="PUT",
        body={"version": 2, "body": "my own note"},
    )
    assert code == 204
    publish_dashboard(synthetic_study)
    assert _study_detail(app, synthetic_study)["trials"][0]["note"]["body"] == "my own note"


def test_callback_notes_each_finished_trial_at_once(tmp_path: Any, dashboard_app: Any) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'notes.db'}")

    def objective(trial: optuna.Trial) -> float:
        bits = [2, 4, 8][trial.suggest_int("conv.w_level", 0, 2)]
        trial.set_user_attr(records.CONFIG, {"conv": {"weight_bits": bits, "act_bits": 8}})
        return float(bits)

    study.optimize(objective, n_trials=3, callbacks=[DashboardCallback(every_n_trials=100)])
    app = dashboard_app(study._storage)
    for trial, served in zip(study.trials, _study_detail(app, study)["trials"]):
        bits = trial.user_attrs[records.CONFIG]["conv"]["weight_bits"]
        assert f"| conv | {bits} | 8 | 1 |" in served["note"]["body"]


def test_kmtpe_wsgi_serves_the_dashboard_with_the_kmtpe_plots_first(
    synthetic_study: optuna.Study, dashboard_app: Any
) -> None:
    from optuna_kmtpe.dashboard._serve import KMTPE_FIRST_CSS
    from optuna_kmtpe.dashboard._serve import kmtpe_wsgi

    app = kmtpe_wsgi(synthetic_study._storage)
    code, page = wsgi_request(app, f"/dashboard/studies/{synthetic_study._study_id}")
    assert (
        code == 200
        and KMTPE_FIRST_CSS in page
        and page.index(KMTPE_FIRST_CSS) < page.index("</head>")
    )
    plain = dashboard_app(synthetic_study._storage)
    assert KMTPE_FIRST_CSS not in wsgi_request(plain, "/dashboard")[1]
    # The API is the dashboard's own, byte for byte.
    path = f"/api/studies/{synthetic_study._study_id}"
    assert wsgi_request(app, path) == wsgi_request(plain, path)
