"""Fixtures of the dashboard tests: synthetic quantization studies in SQLite, sampler stand-in."""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import optuna
import pytest


# Make tests/ (the reusable _services.py) and this folder (_synthetic.py) importable whatever
# pytest's import mode.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.dirname(_HERE), _HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _synthetic import build_synthetic_study  # noqa: E402
from _synthetic import synthetic_split_history  # noqa: E402


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'dashboard.db'}"


@pytest.fixture
def synthetic_study(sqlite_url: str) -> optuna.Study:
    return build_synthetic_study(sqlite_url)


@pytest.fixture
def fake_split_history(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Install ``optuna_kmtpe.sampler.split_history`` returning synthetic rows.

    Patches the real sampler package when it exists, else a stand-in module, so the adapter's
    lazy import is what gets exercised.
    """
    try:
        import optuna_kmtpe.sampler as sampler_module
    except ImportError:
        sampler_module = types.ModuleType("optuna_kmtpe.sampler")
        monkeypatch.setitem(sys.modules, "optuna_kmtpe.sampler", sampler_module)
    history = synthetic_split_history(range(10, 24))
    monkeypatch.setattr(sampler_module, "split_history", lambda study: history, raising=False)
    return history


@pytest.fixture
def dashboard_app() -> Any:
    """A factory: the real optuna-dashboard WSGI application over a storage (URL or object)."""
    import optuna_dashboard

    def make(storage: str | optuna.storages.BaseStorage) -> Any:
        return optuna_dashboard.wsgi(storage)

    return make
