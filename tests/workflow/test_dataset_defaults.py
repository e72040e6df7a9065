"""Per-dataset defaults of SearchSettings, and the CLI flags that reach them."""

from __future__ import annotations

import pytest

from optuna_kmtpe.cli import _search_settings
from optuna_kmtpe.cli import build_parser
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow._settings import DATASET_DEFAULTS


def test_digits_defaults_are_unchanged() -> None:
    s = SearchSettings()
    assert (s.model, s.pretrain_epochs, s.hessian_max_probes, s.lr, s.data_samples) == (
        "digits_cnn",
        30,
        1000,
        0.01,
        None,
    )


def test_mnist1d_brings_its_model_and_recipe() -> None:
    s = SearchSettings(data="mnist1d")
    d = DATASET_DEFAULTS["mnist1d"]
    assert s.model == "resnet20_1d" == d.model
    assert (s.pretrain_epochs, s.hessian_max_probes, s.lr, s.data_samples) == (
        d.pretrain_epochs,
        d.hessian_max_probes,
        d.lr,
        d.data_samples,
    )
    explicit = SearchSettings(data="mnist1d", model="mlp", pretrain_epochs=3, data_samples=500)
    assert (explicit.model, explicit.pretrain_epochs, explicit.data_samples) == ("mlp", 3, 500)


def test_stored_settings_round_trip_with_resolved_values() -> None:
    s = SearchSettings(data="mnist1d", hessian_max_probes=64)
    stored = s.to_dict()
    assert stored["model"] == "resnet20_1d" and stored["data_samples"] == s.data_samples
    assert SearchSettings.from_dict(stored) == s
    # A study stored before data_samples existed still loads (digits, fixed size).
    old = SearchSettings().to_dict()
    del old["data_samples"]
    assert SearchSettings.from_dict(old) == SearchSettings()


def test_replace_data_moves_the_defaults_but_keeps_explicit_values() -> None:
    moved = SearchSettings().replace(data="mnist1d")
    assert moved == SearchSettings(data="mnist1d")
    kept = SearchSettings(pretrain_epochs=5).replace(data="mnist1d")
    assert kept.model == "resnet20_1d" and kept.pretrain_epochs == 5
    back = SearchSettings(data="mnist1d").replace(data="digits")
    assert back == SearchSettings()
    assert SearchSettings().replace(n_trials=3).model == "digits_cnn"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data_samples": 500}, "mnist1d"),
        ({"data": "mnist1d", "data_samples": 10}, "data_samples"),
        ({"lr": 0.0}, "lr"),
        ({"data": "mnist1d", "pretrain_epochs": -1}, "pretrain_epochs"),
    ],
)
def test_bad_dataset_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SearchSettings(**kwargs)  # type: ignore[arg-type]


def test_cli_data_flag_picks_the_datasets_model() -> None:
    parser = build_parser()
    s = _search_settings(parser.parse_args(["search", "--data", "mnist1d"]))
    assert s.model == "resnet20_1d" and s.data_samples == DATASET_DEFAULTS["mnist1d"].data_samples
    s = _search_settings(
        parser.parse_args(
            ["search", "--data", "mnist1d", "--data-samples", "800", "--pretrain-epochs", "2"]
        )
    )
    assert (s.data_samples, s.pretrain_epochs) == (800, 2)
    assert _search_settings(parser.parse_args(["search"])).model == "digits_cnn"


def test_toml_data_picks_the_datasets_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "job.toml"
    path.write_text('data = "mnist1d"\nn_trials = 5\n')
    s = SearchSettings.from_toml(path)
    assert s.model == "resnet20_1d" and s.n_trials == 5


def test_pretraining_runs_under_the_thread_setting(
    tmp_path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from optuna_kmtpe import quant
    from optuna_kmtpe.data import load_digits
    from optuna_kmtpe.workflow import pretrained_model

    seen: list[int] = []

    def fake_train_float(model, loader, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return model.eval()

    monkeypatch.setattr(quant, "train_float", fake_train_float)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pretrained_model(
            SearchSettings(cache_dir=str(tmp_path)), load_digits(), log=lambda _: None
        )
    finally:
        torch.set_num_threads(before)
    assert seen == [1]  # a small model trains on one thread, as its trials do
