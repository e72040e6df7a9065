"""Regenerate, or check, the README's sample output of ``kmtpe search``.

The README quotes what a first ``kmtpe search`` prints (the embedded digits default, seed 0,
a cold cache, the default SQLite storage). This script runs exactly that in a fresh directory
and either rewrites the README block (``--write``, the full 40-trial run, a few minutes) or
compares a short run with it (``--check``, default ``--trials 5``, about a minute): the
Hessian table, the space sizes and the first trials' lines, which a shorter run prints
identically (same seed, same warm starts, the sampler seeded per trial). Run from the
repository root::

    python scripts/readme_sample.py --write   # after a change that moves the figures
    python scripts/readme_sample.py --check   # what tests/cli/test_readme_sample.py runs

Figures come from one CPU thread (the default for the small CNN) and can differ in the last
digits on another CPU or torch build.
"""

from __future__ import annotations

import argparse
import difflib
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile


ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMAND = "$ kmtpe search"
"""The first line of the README block (its comment follows on the same line)."""
HEAD_LINES = 8
"""Trial lines quoted before the ``...``; the last two trials are quoted after it."""
_TRIAL = re.compile(r"^\[(\d+)/(\d+)\] (trial .*)$")


def run_search(trials: int | None = None) -> list[str]:
    """Stdout lines of a first ``kmtpe search`` (cold cache, fresh directory, seed 0)."""
    with tempfile.TemporaryDirectory(prefix="kmtpe-readme-") as work:
        env = {**os.environ, "KMTPE_CACHE_DIR": str(Path(work) / "cache")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        args = [sys.executable, "-m", "optuna_kmtpe.cli", "search"]
        if trials is not None:
            args += ["--trials", str(trials)]
        result = subprocess.run(
            args, cwd=work, env=env, capture_output=True, text=True, timeout=1800, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"kmtpe search failed ({result.returncode}):\n{result.stderr}")
    return result.stdout.rstrip("\n").splitlines()


def readme_block(text: str) -> tuple[int, int]:
    """Line indices ``[start, end)`` of the quoted output, after the command line and its
    ``(first run: ...)`` remark, up to the closing fence."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(COMMAND)) + 1
    if lines[start].startswith("(first run"):
        start += 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    return start, end


def elide(lines: list[str]) -> list[str]:
    """Keep the first :data:`HEAD_LINES` and the last two trial lines, ``...`` between."""
    trials = [i for i, line in enumerate(lines) if _TRIAL.match(line)]
    if len(trials) <= HEAD_LINES + 2:
        return lines
    cut = trials[HEAD_LINES : len(trials) - 2]
    return [*lines[: cut[0]], "...", *lines[cut[-1] + 1 :]]


def comparable(lines: list[str]) -> list[str]:
    """What a short run and the README share: everything up to the trials' lines, without the
    lines that name the trial count, and the trials' lines without their ``[i/N]`` counter."""
    kept = []
    for line in lines:
        if line.startswith(("Enqueued", "Running")) or line == "...":
            continue
        if line.startswith("Pareto front"):
            break
        match = _TRIAL.match(line)
        kept.append(match.group(3) if match else line.rstrip())
    return kept


def compare(readme_text: str, fresh: list[str]) -> list[str]:
    """Unified diff of the README block against a run's lines (``[]`` when they agree); a run
    shorter than the README's is compared with the README's first lines."""
    start, end = readme_block(readme_text)
    fresh = comparable(fresh)
    while fresh and not fresh[-1]:
        fresh.pop()
    quoted = comparable(readme_text.splitlines()[start:end])[: len(fresh)]
    if len(quoted) == len(fresh) and all(map(_close, quoted, fresh)):
        return []
    return list(difflib.unified_diff(quoted, fresh, "README.md", "fresh run", lineterm=""))


_NUMBER = re.compile(r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)(%?)")


def _close(quoted: str, fresh: str) -> bool:
    """Equal text, and numbers equal up to float noise of another CPU or BLAS build.

    Accuracies may move by one validation sample (0.37 points on digits), other figures by 2%
    (a Hutchinson trace, an energy): a real drift (another config, another recipe, a changed
    cost model) changes the text or moves figures by more.
    """
    a, b = _NUMBER.split(quoted), _NUMBER.split(fresh)
    if len(a) != len(b):
        return False
    for i in range(0, len(a), 3):  # text, number, "%" or "", text, ...
        if a[i] != b[i]:
            return False
        if i + 2 < len(a):
            if a[i + 2] != b[i + 2]:
                return False
            x, y = float(a[i + 1]), float(b[i + 1])
            limit = 0.4 if a[i + 2] else 0.02 * max(abs(x), abs(y))
            if abs(x - y) > limit:
                return False
    return True


def check(trials: int) -> list[str]:
    """:func:`compare` of the README with a fresh ``--trials`` run."""
    if not 1 <= trials <= HEAD_LINES:
        raise ValueError(f"--trials must be 1..{HEAD_LINES} (the trials the README quotes).")
    return compare(README.read_text(), run_search(trials))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rerun the README's run, rewrite")
    mode.add_argument("--check", action="store_true", help="compare a short run with it")
    parser.add_argument("--trials", type=int, default=5, help="trials of the --check run")
    args = parser.parse_args(argv)
    if args.write:
        text = README.read_text()
        start, end = readme_block(text)
        lines = text.splitlines()
        lines[start:end] = elide(run_search())
        README.write_text("\n".join(lines) + "\n")
        print(f"Rewrote {README.relative_to(ROOT)} lines {start + 1}-{end}.")
        return 0
    diff = check(args.trials)
    print("\n".join(diff) if diff else "The README's sample output matches a fresh run.")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
