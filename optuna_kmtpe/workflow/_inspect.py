"""Read stored studies back: settings, configs, exported models, sensitivity tables."""

from __future__ import annotations

import json
from typing import Any

import optuna

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.workflow._prepare import cached_sensitivity
from optuna_kmtpe.workflow._prepare import load_data
from optuna_kmtpe.workflow._prepare import prepare_job
from optuna_kmtpe.workflow._prepare import pretrained_model
from optuna_kmtpe.workflow._run import StudyError
from optuna_kmtpe.workflow._run import open_storage
from optuna_kmtpe.workflow._settings import SearchSettings


def load_study(storage_url: str, study_name: str) -> optuna.Study:
    """Load a study, with an error that lists the studies present when the name is wrong."""
    storage = open_storage(storage_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if study_name not in names:
        raise StudyError(
            f"No study {study_name!r} in {storage_url!r}; studies there: {names or 'none'}."
        )
    return optuna.load_study(study_name=study_name, storage=storage)


def load_stored_settings(storage_url: str, study_name: str) -> SearchSettings:
    """The settings a study was started with (user attr ``kmtpe:run``)."""
    return stored_settings(load_study(storage_url, study_name))


def stored_settings(study: optuna.Study) -> SearchSettings:
    data = study.user_attrs.get(keys.STUDY_RUN)
    if data is None:
        raise StudyError(
            f"Study {study.study_name!r} was not created by kmtpe (no {keys.STUDY_RUN!r} attr)."
        )
    return SearchSettings.from_dict(data)


def trial_config(study: optuna.Study, number: int) -> QuantConfig:
    """The config a trial evaluated."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise StudyError(f"Study {study.study_name!r} has no trial {number}.")
    config = trials[number].user_attrs.get(keys.CONFIG)
    if config is None:
        raise StudyError(
            f"Trial {number} has no stored config (state {trials[number].state.name})."
        )
    return QuantConfig(config)


def export_trial_model(study: optuna.Study, number: int, path: str) -> float:
    """Re-train a trial's config exactly as the search did and write the quantized model.

    Training is deterministic on the CPU (same float checkpoint, recipe and seed), so the model
    is the one the trial scored. The file is JSON: integer weights, scales and zero points per
    layer, plus the config.

    Returns:
        Test accuracy of the exported model.
    """
    from optuna_kmtpe import quant

    settings = stored_settings(study)
    config = trial_config(study, number)
    job = prepare_job(settings, study, log=lambda _msg: None, progress=False)
    qmodel = quant.apply_config(job.model, config, example_input=job.example_input)
    quant.calibrate(qmodel, job.train_loader, num_batches=4)
    if settings.mode == "qat":
        qmodel = quant.qat_finetune(
            qmodel,
            job.train_loader,
            epochs=settings.qat_epochs,
            lr=settings.lr,
            seed=settings.seed,
            progress=False,
        )
    accuracy = quant.evaluate(qmodel, job.test_loader)
    exported = quant.export_quantized(qmodel, config)
    exported["test_accuracy"] = accuracy
    exported["trial"] = number
    with open(path, "w") as f:
        json.dump(exported, f)
    return accuracy


def sensitivity_report(settings: SearchSettings, *, progress: bool = True) -> Any:
    """The Hessian sensitivity report of the settings' pre-trained model (cached on disk)."""
    splits = load_data(settings)
    model = pretrained_model(settings, splits)
    return cached_sensitivity(settings, splits, model, progress=progress)
