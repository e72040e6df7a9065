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

Figures that come out of training differ between CPUs (another CPU trains a slightly other
float model: traces move by a few percent, accuracies by a sample or two, and the warm starts
and the sampler may then pick other configs), so ``--check`` compares those loosely and the
rest (form, counts, bit choices) exactly, and recomputes every quoted latency and energy from
its config with today's cost model, which no CPU changes.
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
_TRIAL_FIGURES = re.compile(
    r"^trial \d+: accuracy (?P<acc>[\d.]+)%(?P<forecast> \(forecast [\d.]+% \+-[\d.]+%\))?"
    r"  latency_s (?P<latency>[\d.]+)us  energy_j (?P<energy>[\d.]+)uJ"
    r"  (?P<config>w\S+ a\S+ x\S+)$"
)
_PARETO_ROW = re.compile(
    r"^\d+\s+[\d.]+%\s+(?P<latency>[\d.]+)us\s+(?P<energy>[\d.]+)uJ\s+\S+\s+"
    r"(?P<config>w\S+ a\S+ x\S+)$"
)
ACCURACY_NOISE = 2.0
"""Points a trial's accuracy may move between CPUs: the float model trains to slightly other
weights on another CPU or BLAS build (digits: 98.15% here, 98.52% there, for one config)."""
ERROR_NOISE = 0.25
"""Or this share of its error rate, where that is more: a config that QAT barely trains moves
more (digits, the first conv and two more layers halved: 77.41% on one CPU, 82.22% on another)."""
FIGURE_NOISE = 0.02
"""Relative change allowed for a figure that does not come out of training (a cost, a space
size printed rounded): the last printed digit."""
TRACE_NOISE = 0.5
"""Relative change of a Hutchinson trace or its standard error allowed between CPUs (7% seen)."""


def _close(quoted: str, fresh: str) -> bool:
    """The same line up to what another CPU changes.

    Text and integers must be equal, other figures equal to 2% (costs and space sizes do not
    depend on training).
    Figures that come out of training move on another CPU: small numbers in scientific notation
    (a Hessian trace and its standard error) by up to :data:`TRACE_NOISE`, accuracies by up to
    :data:`ACCURACY_NOISE` points or :data:`ERROR_NOISE` of the error rate. A trial line may
    show another config (the warm starts follow the traces, the sampler follows the
    accuracies): then only its form is compared here, and :func:`check_costs` checks the
    README's own configs against the cost model.
    """
    q, f = _TRIAL_FIGURES.match(quoted), _TRIAL_FIGURES.match(fresh)
    if q or f:
        if not (q and f) or bool(q["forecast"]) != bool(f["forecast"]):
            return False
        if q["config"] != f["config"]:
            return True
        return _accuracy_close(float(q["acc"]), float(f["acc"])) and all(
            _within(float(q[k]), float(f[k]), FIGURE_NOISE) for k in ("latency", "energy")
        )
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
            if a[i + 2]:
                same = _accuracy_close(x, y)
            elif a[i + 1].isdigit():
                same = x == y  # a count: the same on any CPU
            else:
                same = _within(x, y, TRACE_NOISE if "e-" in a[i + 1] else FIGURE_NOISE)
            if not same:
                return False
    return True


def _accuracy_close(x: float, y: float) -> bool:
    """Two accuracies (in %) equal up to what another CPU changes (:data:`ACCURACY_NOISE`,
    :data:`ERROR_NOISE`)."""
    return abs(x - y) <= max(ACCURACY_NOISE, ERROR_NOISE * (100.0 - min(x, y)))


def _within(x: float, y: float, relative: float) -> bool:
    return abs(x - y) <= relative * max(abs(x), abs(y))


def _parse_config(text: str, layers: list[str]) -> dict[str, dict[str, float]]:
    """Inverse of ``compact_bits``: ``w4-3 a8-4 x1-.5`` for ``layers`` in order."""
    columns = {part[0]: part[1:].split("-") for part in text.split()}
    return {
        name: {"weight_bits": int(w), "act_bits": int(a), "width": float(x)}
        for name, w, a, x in zip(layers, columns["w"], columns["a"], columns["x"], strict=True)
    }


def check_costs(readme_text: str) -> list[str]:
    """Every latency and energy the README's trial lines and Pareto rows quote, recomputed
    from the quoted config with today's FPGA model of the default job (no training, the same
    on any CPU); one line per figure that differs by more than the print's rounding."""
    import torch

    from optuna_kmtpe import hardware
    from optuna_kmtpe.config import QuantConfig
    from optuna_kmtpe.models import build_model
    from optuna_kmtpe.quant import quantizable_layers
    from optuna_kmtpe.workflow import SearchSettings

    settings = SearchSettings()  # the README's run: the embedded default (digits CNN, pynq-z2)
    model = build_model(settings.model, input_shape=(1, 8, 8))  # costs need shapes, not weights
    fpga = hardware.FPGAModel(device=hardware.get_device(settings.device))
    shapes = hardware.trace_layer_shapes(model, torch.zeros(2, 1, 8, 8))
    layers = list(quantizable_layers(model))
    start, end = readme_block(readme_text)
    wrong = []
    for line in readme_text.splitlines()[start:end]:
        trial = _TRIAL.match(line)
        match = _TRIAL_FIGURES.match(trial.group(3)) if trial else _PARETO_ROW.match(line)
        if match is None:
            continue
        config = QuantConfig.from_dict(_parse_config(match["config"], layers))
        costs = fpga.evaluate(shapes, config)
        for key, value in (("latency", costs.latency_s * 1e6), ("energy", costs.energy_j * 1e6)):
            if not _within(float(match[key]), value, 0.002):
                wrong.append(f"{line}: {key} is {value:.4g} with today's cost model")
    return wrong


def check(trials: int) -> list[str]:
    """:func:`compare` of the README with a fresh ``--trials`` run, then :func:`check_costs`."""
    if not 1 <= trials <= HEAD_LINES:
        raise ValueError(f"--trials must be 1..{HEAD_LINES} (the trials the README quotes).")
    text = README.read_text()
    return compare(text, run_search(trials)) + check_costs(text)


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
