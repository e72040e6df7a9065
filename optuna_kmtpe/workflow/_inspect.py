"""Read stored studies back: settings, configs, exported models, sensitivity tables."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
import tempfile
from typing import TYPE_CHECKING

import optuna

from optuna_kmtpe import records as keys
from optuna_kmtpe.config import DEFAULT_LOSS
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.objectives._metrics import Metric
from optuna_kmtpe.objectives._metrics import study_quality
from optuna_kmtpe.sensitivity import SensitivityReport
from optuna_kmtpe.workflow._prepare import cached_sensitivity
from optuna_kmtpe.workflow._prepare import load_data
from optuna_kmtpe.workflow._prepare import prepare_job
from optuna_kmtpe.workflow._prepare import pretrained_model
from optuna_kmtpe.workflow._prepare import recipe_for
from optuna_kmtpe.workflow._settings import QUANTIZER_SETTINGS
from optuna_kmtpe.workflow._settings import SearchSettings
from optuna_kmtpe.workflow._sources import metric_function
from optuna_kmtpe.workflow._storage import StudyError
from optuna_kmtpe.workflow._storage import open_storage


if TYPE_CHECKING:
    from optuna_kmtpe.export import ExportCheck


# export, quant and torch are imported inside the functions that retrain or export: reading a
# study (`kmtpe report` without --export-model, `kmtpe dashboard`) never loads torch.


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


@dataclasses.dataclass(frozen=True)
class TrialExport:
    """What :func:`export_trial_model` wrote and how it checked it.

    Attributes:
        trial: The trial number.
        path: The file written.
        format: ``"qonnx"``, ``"onnx"`` or ``"json"``.
        test_accuracy: The search's quality metric (accuracy, or the user's metric) of the
            quantized model on the test split (the line ``kmtpe report`` prints).
        val_accuracy: The same metric on the validation split, the value the search scored.
        recorded_accuracy: The value the search recorded for the trial.
        mismatch: ``None`` when ``val_accuracy`` equals ``recorded_accuracy``, else why not.
        checks: The exported file run on the test split (QONNX by qonnx's executor, QDQ by
            onnxruntime) against the quantized torch model; empty for json or
            ``verify=False``.
        extra_files: Files written next to ``path`` (the hls4ml precision config).
    """

    trial: int
    path: str
    format: str
    test_accuracy: float
    val_accuracy: float
    recorded_accuracy: float | None
    mismatch: str | None
    checks: tuple[ExportCheck, ...] = ()
    extra_files: tuple[str, ...] = ()


def check_output_path(path: str | os.PathLike[str]) -> None:
    """Fail now if ``path`` cannot be written: its directory is missing, not a directory or
    read-only (probed by creating a file there, which also catches read-only file systems).

    Raises:
        ValueError: With the path and what to do.
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"Cannot write the model to {str(target)!r}: it is a directory.")
    parent = target.parent
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".probe")
    except OSError as exc:
        raise ValueError(
            f"Cannot write the model to {str(target)!r} ({exc.strerror or exc}); choose a "
            "path in a writable directory."
        ) from None
    os.close(fd)
    os.unlink(probe)


def export_trial_model(
    study: optuna.Study,
    number: int,
    path: str,
    *,
    format: str = "json",
    verify: bool = True,
) -> TrialExport:
    """Re-train a trial's config exactly as the search did and export the model it scored.

    The model comes from :func:`optuna_kmtpe.quant.run_recipe`, the runner the objective
    scores trials with, on the same float checkpoint, data order, recipe and seed; a trial whose
    QAT the search stopped early is stopped after the same epoch, so the model is the one the
    trial scored. Its validation accuracy is compared with the one the search recorded
    (:attr:`TrialExport.mismatch` says why they differ, if they do), and an ONNX export is run
    on the test split and compared with the torch model.

    Args:
        study: A study created by ``kmtpe search`` / :func:`run_search`.
        number: The trial number.
        path: Output file.
        format: ``"qonnx"`` (also writes ``<path>.hls4ml.json``, the per-layer precision
            config in hls4ml's format), ``"onnx"`` (QDQ) or ``"json"``.
        verify: Run the exported ONNX model (qonnx executor / onnxruntime) on the test split.

    Returns:
        A :class:`TrialExport`.
    """
    from optuna_kmtpe import export
    from optuna_kmtpe import quant

    export.check_format(format)
    check_output_path(path)  # before minutes of retraining, not after
    settings = stored_settings(study)
    config = trial_config(study, number)
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    job = prepare_job(settings, study, log=lambda _msg: None, progress=False)
    # The value the search recorded: accuracy, or the study's own metric.
    metric = metric_function(settings)
    score = functools.partial(quant.evaluate, metric=metric)
    result = quant.run_recipe(
        job.model,
        config,
        recipe_for(settings),
        train_loader=job.train_loader,
        val_loader=job.val_loader,
        score=score,
        example_input=job.example_input,
        graph=job.graph,
        stop_after_epoch=_stopped_after_epoch(trial),
    )
    qmodel = result.model
    val_accuracy = result.score
    test_accuracy = score(qmodel, job.test_loader)
    recorded = trial.user_attrs.get(keys.ACCURACY)
    mismatch = _accuracy_mismatch(trial, val_accuracy, recorded, quality=study_quality(study))
    metadata = {
        "trial": number,
        "test_accuracy": test_accuracy,
        "val_accuracy": val_accuracy,
        "recorded_accuracy": recorded,
        **{name: getattr(settings, name) for name in QUANTIZER_SETTINGS},
    }
    exported = export.export_model(
        qmodel, path, format=format, example_input=job.example_input, metadata=metadata
    )
    checks: tuple[ExportCheck, ...] = ()
    if verify and format != "json":
        inputs, labels = job.data.test.tensors[:2]
        regression = settings.loss != DEFAULT_LOSS  # outputs are values: compared numerically
        checks = (
            export.check_export(
                qmodel,
                exported,
                inputs,
                None if regression else labels,
                format=format,
                regression=regression,
            ),
        )
    extra: tuple[str, ...] = ()
    if format == "qonnx":
        config_path = f"{path}.hls4ml.json"
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump(export.hls4ml_config(qmodel), handle, indent=2)
        extra = (config_path,)
    return TrialExport(
        trial=number,
        path=str(path),
        format=format,
        test_accuracy=test_accuracy,
        val_accuracy=val_accuracy,
        recorded_accuracy=float(recorded) if recorded is not None else None,
        mismatch=mismatch,
        checks=checks,
        extra_files=extra,
    )


def _stopped_after_epoch(trial: optuna.trial.FrozenTrial) -> int | None:
    """The last QAT epoch of a trial the search stopped early (None: it ran every epoch)."""
    if not trial.user_attrs.get(keys.STOPPED_EARLY):
        return None
    epochs = [int(k[len(keys.EPOCH_ACCURACY) :]) for k in trial.user_attrs
              if k.startswith(keys.EPOCH_ACCURACY)]  # fmt: skip
    return max(epochs) if epochs else None


def _accuracy_mismatch(
    trial: optuna.trial.FrozenTrial,
    val_accuracy: float,
    recorded: float | None,
    *,
    quality: Metric,
) -> str | None:
    attrs = trial.user_attrs
    name = quality.name
    if recorded is None:
        return f"the search recorded no {name} for trial {trial.number} ({trial.state.name})"
    if attrs.get(keys.SKIPPED_TRAINING):
        return (
            f"the search never trained trial {trial.number} (over budget or device capacity; "
            f"it recorded {quality.format(recorded)})"
        )
    if attrs.get(keys.STOPPED_EARLY) and _stopped_after_epoch(trial) is None:
        return (
            f"the search stopped trial {trial.number}'s QAT early but recorded no epoch, so "
            "the export trains every epoch"
        )
    if abs(val_accuracy - float(recorded)) > 1e-9:
        import torch

        return (
            f"validation {name} {quality.format(val_accuracy)} differs from the "
            f"{quality.format(float(recorded))} the search recorded: training is reproducible "
            f"only with the search's torch version, thread count and device (this run: torch "
            f"{torch.__version__}, {torch.get_num_threads()} thread(s), CPU)"
        )
    return None


def sensitivity_report(settings: SearchSettings, *, progress: bool = True) -> SensitivityReport:
    """The Hessian sensitivity report of the settings' pre-trained model (cached on disk)."""
    splits = load_data(settings)
    model = pretrained_model(settings, splits)
    return cached_sensitivity(settings, splits, model, progress=progress)
