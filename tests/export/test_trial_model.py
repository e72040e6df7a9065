"""export_trial_model rebuilds exactly the model the search's objective scored (QAT and PTQ)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from optuna_kmtpe import quant
from optuna_kmtpe import records as keys
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import export_trial_model
from optuna_kmtpe.workflow import load_study
from optuna_kmtpe.workflow import run_search
from optuna_kmtpe.workflow._inspect import _stopped_after_epoch
from optuna_kmtpe.workflow._inspect import stored_settings


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["qat", "ptq"])
def test_the_exported_model_is_the_objectives_model(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[quant.RecipeResult] = []
    runner = quant.run_recipe

    def recording_runner(*args: Any, **kwargs: Any) -> quant.RecipeResult:
        built.append(runner(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(quant, "run_recipe", recording_runner)
    storage = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    settings = SearchSettings(
        storage=storage,
        n_trials=1,
        mode=mode,
        qat_epochs=1,
        pretrain_epochs=2,
        hessian_max_probes=8,
        range_method="max",
        cache_dir=str(tmp_path / "cache"),
    )
    run_search(settings, log=lambda _msg: None, progress=False)
    assert len(built) == 1
    trial_model = built[0].model
    study = load_study(storage, "kmtpe")
    assert stored_settings(study).range_method == "max"  # stored with the run's settings
    result = export_trial_model(study, 0, str(tmp_path / "model.json"), verify=False)
    metadata = json.loads((tmp_path / "model.json").read_text())
    assert metadata["range_method"] == "max" and metadata["rounding"] == "nearest"
    assert result.mismatch is None and result.val_accuracy == result.recorded_accuracy
    exported = built[-1].model
    assert exported.state_dict().keys() == trial_model.state_dict().keys()
    for name, tensor in trial_model.state_dict().items():
        assert torch.equal(tensor, exported.state_dict()[name]), name
    inputs = torch.rand(16, 1, 8, 8)
    assert torch.equal(trial_model(inputs), exported(inputs))


def test_an_early_stopped_trial_is_replayed_to_its_last_epoch() -> None:
    def trial(**attrs: Any) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(value=0.5, user_attrs=attrs)

    stopped = {keys.STOPPED_EARLY: True, keys.EPOCH_ACCURACY + "0": 0.4}
    assert _stopped_after_epoch(trial(**stopped, **{keys.EPOCH_ACCURACY + "1": 0.5})) == 1
    assert _stopped_after_epoch(trial(**{keys.EPOCH_ACCURACY + "1": 0.5})) is None
