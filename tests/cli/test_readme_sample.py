"""The README's sample output of `kmtpe search` is what a user gets (issue 14 item 16)."""

from __future__ import annotations

from pathlib import Path
import sys

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import readme_sample  # noqa: E402


def _quoted() -> tuple[str, list[str]]:
    text = readme_sample.README.read_text()
    start, end = readme_sample.readme_block(text)
    return text, text.splitlines()[start:end]


def test_the_comparison_catches_a_changed_figure_and_ignores_the_trial_count() -> None:
    text, quoted = _quoted()
    assert quoted[0].startswith("Training the float") and quoted[-1].startswith("Watch it live")
    # A 5-trial run prints the README's first five trials under other counters.
    short = [line.replace("/40]", "/5]") for line in quoted if line != "..."]
    first_five = [i for i, line in enumerate(short) if line.startswith("[")][:5]
    short = [*short[: first_five[-1] + 1], "", "Pareto front of study 'kmtpe' (elsewhere):"]
    assert readme_sample.compare(text, short) == []
    for i, line in enumerate(short):
        if line.startswith("features.3") or line.startswith("[3/5]"):
            changed = [*short[:i], line.replace("9", "8", 1), *short[i + 1 :]]
            diff = readme_sample.compare(text, changed)
            assert any(d.startswith("-") and "9" in d for d in diff[2:]), diff


@pytest.mark.slow
def test_the_readme_quotes_a_fresh_run() -> None:
    """The Hessian table, the space sizes and the first five trials of a fresh `kmtpe search`
    (a minute on 2 cores); `python scripts/readme_sample.py --write` regenerates the block."""
    diff = readme_sample.check(5)
    hint = "README.md's sample output drifted; rerun python scripts/readme_sample.py --write"
    assert not diff, hint + ":\n" + "\n".join(diff)


def test_float_noise_of_another_cpu_is_not_drift() -> None:
    quoted = "trial 2: accuracy 98.52%  latency_s 20.43us  energy_j 5.179uJ  w8-3-3-6 x1-.5"
    assert readme_sample._close(quoted, quoted.replace("98.52%", "98.89%"))  # one sample
    assert readme_sample._close(quoted, quoted.replace("5.179", "5.201"))
    assert not readme_sample._close(quoted, quoted.replace("98.52%", "97.78%"))
    assert not readme_sample._close(quoted, quoted.replace("w8-3", "w8-4"))
    assert not readme_sample._close(quoted, quoted.replace("x1-.5", "x1-.75"))
