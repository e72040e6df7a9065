#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run it.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh           # chromium + postgresql (e2e tests), g++ (hls4ml)
python -m pip install --quiet torch==2.13.0   # the CPU wheel: pin exactly
python -m pip install --quiet -e ".[test,export]"
python -m pytest -p no:cacheprovider -q -ra --durations=15 "$@"
