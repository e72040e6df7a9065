"""The runnable examples in the dashboard package's docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest


MODULES = [
    "optuna_kmtpe.dashboard",
    "optuna_kmtpe.records",
    "optuna_kmtpe.dashboard._figures",
    "optuna_kmtpe.dashboard._note",
    "optuna_kmtpe.dashboard._publish",
    "optuna_kmtpe.dashboard._records",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    finally:
        optuna.logging.set_verbosity(optuna.logging.INFO)
    assert result.failed == 0
    assert result.attempted > 0


def test_dashboard_package_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import optuna_kmtpe.dashboard; "
        "assert 'torch' not in sys.modules, 'optuna_kmtpe.dashboard imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_repo_root())


def _repo_root() -> str:
    import os

    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
