"""Helpers shared by the CLI tests."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import sys

import optuna_kmtpe


def kmtpe_command() -> list[str]:
    """The installed console script when present (CI installs the package), else the module."""
    exe = shutil.which("kmtpe")
    return [exe] if exe else [sys.executable, "-m", "optuna_kmtpe.cli"]


def kmtpe_env(cache_dir: Path | str, **extra: str) -> dict[str, str]:
    """Environment for a kmtpe subprocess: the package under test first on the path, a private
    checkpoint cache, one torch thread per process (tests run several at once on 2 cores)."""
    root = str(Path(optuna_kmtpe.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "KMTPE_CACHE_DIR": str(cache_dir),
        "OMP_NUM_THREADS": "1",
        **extra,
    }
