"""Every runnable example in the package's docstrings stays true, and the layering holds."""

from __future__ import annotations

import doctest
import importlib
import os
from pathlib import Path
import pkgutil
import subprocess
import sys

import optuna
import pytest

import optuna_kmtpe


MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(optuna_kmtpe.__path__, "optuna_kmtpe.")
    if not info.name.endswith(".cli")
)

# What must import without torch (DESIGN section 2): the sampler is for ANY Optuna study, and
# the config, records, space, cost model, dashboard, workflow and CLI entry import torch only
# when used.
TORCH_FREE = [
    "optuna_kmtpe",
    "optuna_kmtpe.config",
    "optuna_kmtpe.geometry",
    "optuna_kmtpe._registry",
    "optuna_kmtpe.records",
    "optuna_kmtpe.sampler",
    "optuna_kmtpe.space",
    "optuna_kmtpe.hardware",
    "optuna_kmtpe.dashboard",
    "optuna_kmtpe.objectives",
    "optuna_kmtpe.workflow",  # `kmtpe report` and `kmtpe dashboard` read studies without torch
    "optuna_kmtpe.cli",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        module = importlib.import_module(name)
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        result = doctest.testmod(module, optionflags=flags, report=True)
    finally:
        optuna.logging.set_verbosity(optuna.logging.INFO)
    assert result.failed == 0


def test_most_public_modules_have_examples() -> None:
    attempted = 0
    for name in MODULES:
        finder = doctest.DocTestFinder()
        attempted += sum(len(t.examples) for t in finder.find(importlib.import_module(name)))
    assert attempted > 200


@pytest.mark.parametrize("name", TORCH_FREE)
def test_imports_without_torch(name: str) -> None:
    code = f"import sys, {name}; assert 'torch' not in sys.modules, '{name} imported torch'"
    root = str(Path(optuna_kmtpe.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
