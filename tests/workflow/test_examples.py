from __future__ import annotations

import importlib.util
from pathlib import Path
import subprocess
import sys
from types import ModuleType

import optuna
import pytest

from optuna_kmtpe import records as keys


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_digits_api_example_runs_a_real_search(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # the example writes digits_example.db in the working directory
    study = _load("digits_search").main(n_trials=8)
    assert (tmp_path / "digits_example.db").exists()
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(study.trials) == 8 and complete
    assert study.metric_names == ["accuracy", "latency_s", "energy_j"]
    # The HAWQ-V2 warm starts come first, with activation bits paired to their weight bits.
    warm = [t for t in study.trials if keys.WARM_START in t.user_attrs]
    assert warm
    for trial in warm:
        for layer in trial.user_attrs[keys.CONFIG].values():
            assert layer["act_bits"] == min(a for a in (4, 6, 8) if a >= layer["weight_bits"])
    assert max(t.values[0] for t in complete) > 0.9
    out = capsys.readouterr().out
    assert "latency" in out
    # Progress while the trials run: one line per finished trial, as `kmtpe search` prints.
    lines = [line for line in out.splitlines() if "] trial " in line]
    assert len(lines) == 8 and lines[-1].startswith("[")
    assert any("accuracy " in line and "latency_s " in line for line in lines)


def test_cifar10_example_explains_a_missing_dataset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Nothing is downloaded without --download: without torchvision, or without the files in
    # --data-dir, the example ends with one message that says what to do, not a traceback.
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "cifar10_resnet20.py"),
            "--data-dir",
            str(tmp_path / "cifar"),
            "--trials",
            "1",
            "--storage",
            f"sqlite:///{tmp_path / 'c.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "vision" in result.stderr or "download" in result.stderr
    assert not (tmp_path / "cifar").exists() or not any((tmp_path / "cifar").iterdir())
