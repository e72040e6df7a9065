"""Helpers shared by the CLI tests."""

from __future__ import annotations

import shutil
import sys


def kmtpe_command() -> list[str]:
    """The installed console script when present (CI installs the package), else the module."""
    exe = shutil.which("kmtpe")
    return [exe] if exe else [sys.executable, "-m", "optuna_kmtpe.cli"]
