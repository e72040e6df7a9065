from __future__ import annotations

import os


# Two CPU cores in CI: keep torch from oversubscribing them when tests run training.
os.environ.setdefault("OMP_NUM_THREADS", "2")
