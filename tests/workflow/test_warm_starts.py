"""``kmtpe search`` and ``optuna_kmtpe.search`` enqueue the same warm starts: one policy
(``optuna_kmtpe.objectives.warm_start_study``) behind both."""

from __future__ import annotations

from pathlib import Path
import sys
import textwrap
from typing import Any

import optuna
from optuna.trial import TrialState
import pytest
import torch

import optuna_kmtpe
from optuna_kmtpe import cli
from optuna_kmtpe import records as keys


_PROJECT = """
import torch
from torch import nn
from torch.utils.data import TensorDataset


def data(seed=0):
    x = torch.randn(240, 12, generator=torch.Generator().manual_seed(seed))
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x[:160], y[:160]), TensorDataset(x[160:], y[160:])


def model(input_shape, num_classes):
    return nn.Sequential(
        nn.Linear(input_shape[0], 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )
"""


def _warm_starts(storage: str) -> list[tuple[str, dict[str, Any]]]:
    study = optuna.load_study(study_name="kmtpe", storage=storage)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return [
        (t.user_attrs[keys.WARM_START], t.system_attrs["fixed_params"])
        for t in sorted(waiting, key=lambda t: t.number)
    ]


def test_the_cli_and_the_python_api_enqueue_the_same_warm_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "warm_project.py").write_text(textwrap.dedent(_PROJECT))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KMTPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.delitem(sys.modules, "warm_project", raising=False)
    import warm_project  # type: ignore[import-not-found]

    torch.manual_seed(0)
    model = warm_project.model((12,), 2)
    torch.save(model.state_dict(), tmp_path / "float.pt")
    # Only the warm starts are compared: no trial runs, they stay WAITING in each study.
    monkeypatch.setattr(optuna.Study, "optimize", lambda self, *args, **kwargs: None)
    fast: dict[str, Any] = {"n_trials": 8, "qat_epochs": 1, "hessian_max_probes": 8}

    cli_db = f"sqlite:///{tmp_path / 'cli.db'}"
    argv = [
        "--verbose",  # leaves the process's log levels alone (other tests read them)
        "search", "--model", "warm_project:model", "--data", "warm_project:data",
        "--checkpoint", "float.pt", "--trials", "8", "--qat-epochs", "1",
        "--hessian-max-probes", "8", "--threads", "1", "--quiet", "--storage", cli_db,
    ]  # fmt: skip
    assert cli.main(argv) == 0

    api_db = f"sqlite:///{tmp_path / 'api.db'}"
    train, val = warm_project.data()
    optuna_kmtpe.search(
        model, train, val, storage=api_db, torch_threads=1, log=lambda _line: None,
        progress=False, **fast,
    )  # fmt: skip

    from_cli = _warm_starts(cli_db)
    # uniform-w8a8 lies on the forecast's reference point; 2 prunable layers are more than a
    # tenth of 8 trials, so HAWQ-V2 selections rather than one pruned layer each
    assert [label for label, _ in from_cli] == [
        "uniform-w4a4",
        "hawq-v2-25%",
        "hawq-v2-50%",
        "hawq-v2-75%",
    ]
    assert _warm_starts(api_db) == from_cli


def test_warm_starts_stop_at_the_trials_the_study_runs_and_are_enqueued_once() -> None:
    from optuna_kmtpe.objectives import warm_start_study
    from optuna_kmtpe.sensitivity import LayerSensitivity
    from optuna_kmtpe.sensitivity import SensitivityReport
    from optuna_kmtpe.space import MonotoneSearchSpace

    layers = tuple(
        LayerSensitivity(f"l{i}", "Linear", 100 * (i + 1), 8, 8, 0.1 / (i + 1), 1e-4, 64,
                         {b: 4.0**-b for b in (2, 4, 8)})
        for i in range(3)
    )  # fmt: skip
    space = MonotoneSearchSpace(SensitivityReport(layers=layers), weight_bits=(2, 4, 8))
    study = optuna.create_study()
    bits = {"weight_bits": (2, 4, 8), "act_bits": (8,)}
    assert warm_start_study(study, space, max_trials=2, **bits) == 2
    assert [t.user_attrs[keys.WARM_START] for t in study.trials] == [
        "uniform-w8a8",
        "uniform-w4a8",
    ]
    assert warm_start_study(study, space, **bits) == 0  # a resumed run: nothing again
