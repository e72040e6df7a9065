"""The README's sample output of `kmtpe search` is what a user gets (issue 14 item 16)."""

from __future__ import annotations

from pathlib import Path
import re
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
    third = next(line for line in short if line.startswith("[3/5]"))
    accuracy = float(re.search(r"accuracy ([\d.]+)%", third).group(1))
    edits = {
        "features.3": ("0.5,0.75,1", "0.5,1"),  # other widths offered
        "configs:": ("1366875", "1366876"),  # another space size
        # 3 points on the same config
        "[3/5]": (f"accuracy {accuracy:.2f}%", f"accuracy {accuracy - 3:.2f}%"),
    }
    for i, line in enumerate(short):
        for prefix, (old, new) in edits.items():
            if line.startswith(prefix):
                assert old in line, line
                changed = [*short[:i], line.replace(old, new), *short[i + 1 :]]
                diff = readme_sample.compare(text, changed)
                assert any(d.startswith("+") and new in d for d in diff[2:]), diff


@pytest.mark.slow
def test_the_readme_quotes_a_fresh_run() -> None:
    """The Hessian table, the space sizes and the first five trials of a fresh `kmtpe search`
    (a minute on 2 cores); `python scripts/readme_sample.py --write` regenerates the block."""
    diff = readme_sample.check(5)
    hint = "README.md's sample output drifted; rerun python scripts/readme_sample.py --write"
    assert not diff, hint + ":\n" + "\n".join(diff)


def test_float_noise_of_another_cpu_is_not_drift() -> None:
    """Another CPU trains a slightly different float model: traces move by a few percent,
    accuracies by a sample or two, and the warm starts and sampler may then pick other configs
    (all seen between two machines); the form, counts and costs do not move."""
    quoted = (
        "trial 2: accuracy 98.52%  latency_s 20.43us  energy_j 5.179uJ  w8-3-3-6 a8-4-4-6 x1-1-1-1"
    )
    close = readme_sample._close
    assert close(quoted, quoted.replace("98.52%", "98.15%"))
    assert close(quoted, quoted.replace("5.179", "5.201"))
    assert not close(quoted, quoted.replace("98.52%", "95.93%"))
    assert not close(quoted, quoted.replace("5.179", "5.979"))
    other = (
        "trial 2: accuracy 98.15%  latency_s 20.43us  energy_j 5.157uJ  w6-3-3-6 a6-4-4-6 x1-1-1-1"
    )
    assert close(quoted, other)  # another warm start: its costs are checked by check_costs
    crashed = (
        "trial 4: accuracy 77.41% (forecast 95.57% +-6.81%)  latency_s 11.46us  "
        "energy_j 2.560uJ  w3-6-4-6 a6-4-4-8 x.5-.5-.5-1"
    )
    # A config QAT barely trains moves by more than a sample or two (seen: 82.22% on another
    # CPU), but not without bound.
    assert close(crashed, crashed.replace("77.41%", "82.22%"))
    assert not close(crashed, crashed.replace("77.41%", "90.74%"))
    assert not close(quoted, quoted.replace("98.52%", "98.52% (forecast 98.0% +-0.3%)"))
    row = "features.0  1     3.040e-02  9.0e-05  144     0           2,3,4,6,8    4,6,8"
    assert close(row, row.replace("3.040e-02  9.0e-05", "2.838e-02  1.1e-04"))
    assert not close(row, row.replace("3.040e-02", "3.040e-03"))
    assert not close(row, row.replace("144", "145"))


def test_the_readme_costs_are_todays_cost_model() -> None:
    text = readme_sample.README.read_text()
    assert readme_sample.check_costs(text) == []
    quoted = re.search(r"energy_j ([\d.]+)uJ", text).group(1)  # the first trial's
    moved = f"{float(quoted) * 1.01:.3f}"
    tampered = text.replace(f"energy_j {quoted}uJ", f"energy_j {moved}uJ", 1)
    (line,) = readme_sample.check_costs(tampered)
    assert f"{moved}uJ" in line
    assert float(line.split("energy is ")[1].split()[0]) == pytest.approx(float(quoted), rel=1e-3)
