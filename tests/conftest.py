from __future__ import annotations

import os
import sys


# Two CPU cores in CI: keep torch from oversubscribing them when tests run training.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# tests/_services.py (free ports, HTTP waits, a throwaway PostgreSQL server) is importable from
# every test folder whatever pytest's import mode.
_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from _services import postgres_url  # noqa: E402, F401 - fixture shared by every test folder
