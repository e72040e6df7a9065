"""Synthetic kmtpe-shaped studies and a tiny WSGI client, shared by the dashboard tests."""

from __future__ import annotations

import io
import json
import math
from typing import Any
import wsgiref.util

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from optuna_kmtpe.sensitivity import LayerSensitivity
from optuna_kmtpe.sensitivity import SensitivityReport


LAYERS = ("features.0", "features.3", "features.7", "classifier")
MACS = {"features.0": 2.3e4, "features.3": 1.5e5, "features.7": 7.4e4, "classifier": 1.3e3}
TRACES = {"features.0": 4.1, "features.3": 0.9, "features.7": 0.35, "classifier": 1.7}
METRIC_NAMES = ["accuracy", "latency_s", "energy_j"]
DIRECTIONS = ["maximize", "minimize", "minimize"]
LATENCY_BUDGET_S = 6.0e-5
RUN_INFO = {
    "model": "digits_cnn",
    "data": "digits",
    "device": "xczu3eg (DSP48E2, 360 DSP)",
    "objectives": METRIC_NAMES,
    "space_size": {"unconstrained": 4.3e9, "hessian_constrained": 2.1e7},
}


def synthetic_trial_attrs(rng: np.random.Generator) -> tuple[dict[str, Any], list[float], bool]:
    """One plausible trial: a random config and made-up but monotone accuracy and costs."""
    config = {}
    for layer in LAYERS:
        weight_bits = int(rng.choice([2, 4, 6, 8]))
        config[layer] = {
            "weight_bits": weight_bits,
            "act_bits": int(rng.choice([4, 8])),
            "width": 1.0 if layer == "classifier" else float(rng.choice([0.5, 0.75, 1.0])),
        }
    # Sensitive layers lose more accuracy when quantized hard.
    loss = sum(
        0.05 * TRACES[n] * (2.0 ** (2 - c["weight_bits"]) + 0.5 * (1.0 - c["width"]))
        for n, c in config.items()
    )
    accuracy = float(np.clip(0.99 - loss - abs(rng.normal(0, 0.003)), 0.0, 1.0))
    layer_latency = {
        n: MACS[n] * c["width"] * max(c["weight_bits"], c["act_bits"]) / 8 / 2.0e8 / 16
        for n, c in config.items()
    }
    layer_energy = {n: MACS[n] * c["width"] * c["weight_bits"] * 1e-12 for n, c in config.items()}
    latency = sum(layer_latency.values())
    energy = sum(layer_energy.values())
    feasible = latency <= LATENCY_BUDGET_S
    attrs = {
        "config": config,
        "accuracy": accuracy,
        "latency_s": latency,
        "energy_j": energy,
        "size_bits": int(sum(MACS[n] / 10 * c["weight_bits"] for n, c in config.items())),
        "bops": float(sum(MACS[n] * c["weight_bits"] * c["act_bits"] for n, c in config.items())),
        "dsp_used": int(16 * 16),
        "feasible": feasible,
        "train_time_s": float(rng.uniform(1, 3)),
        "layer_latency_s": layer_latency,
        "layer_energy_j": layer_energy,
    }
    return attrs, [accuracy, latency, energy], feasible


def build_synthetic_study(
    storage: str | optuna.storages.BaseStorage,
    *,
    study_name: str = "synthetic-mpq",
    n_trials: int = 24,
    seed: int = 0,
    with_sensitivity: bool = True,
) -> optuna.Study:
    """A study shaped like a real kmtpe search, built from synthetic trials.

    Complete trials carry every trial user attribute of ``optuna_kmtpe.records``; infeasible
    ones (latency over budget) carry the legacy constraints list; one trial failed, one was
    pruned, and one completed trial has no user attributes at all.
    """
    study = optuna.create_study(storage=storage, study_name=study_name, directions=DIRECTIONS)
    study.set_metric_names(METRIC_NAMES)
    study.set_user_attr("kmtpe:run", RUN_INFO)
    if with_sensitivity:
        # Written as the search writes it, read back by the dashboard's one decoder.
        SensitivityReport(
            layers=tuple(
                LayerSensitivity(n, "Conv2d", 100, 8, 8, t, 0.05 * t, 64, {2: 1.0, 8: 0.01})
                for n, t in TRACES.items()
            )
        ).save_to_study(study)
    rng = np.random.default_rng(seed)
    distribution = CategoricalDistribution([2, 4, 6, 8])
    for _ in range(n_trials):
        attrs, values, feasible = synthetic_trial_attrs(rng)
        constraints = [attrs["latency_s"] - LATENCY_BUDGET_S]
        study.add_trial(
            optuna.create_trial(
                values=values,
                params={f"{n}.weight_bits": attrs["config"][n]["weight_bits"] for n in LAYERS},
                distributions={f"{n}.weight_bits": distribution for n in LAYERS},
                user_attrs=attrs,
                system_attrs={"constraints": constraints},
            )
        )
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={"error": "NaN loss"}))
    study.add_trial(optuna.create_trial(state=TrialState.PRUNED, intermediate_values={0: 0.1}))
    study.add_trial(optuna.create_trial(values=[0.5, 1e-4, 1e-6]))  # no attrs at all
    return study


def synthetic_split_history(numbers: range) -> list[dict[str, Any]]:
    """Rows shaped like ``optuna_kmtpe.sampler.split_history`` (multi-objective: ranks)."""
    rows = []
    for number in numbers:
        k = 2 + number // 10
        n_below = max(1, int(math.sqrt(number + 1)))
        n_middle = max(1, (number - n_below) // 3)
        rows.append(
            {
                "number": number,
                "k": k,
                "n_below": n_below,
                "n_middle": n_middle,
                "n_above": number - n_below,
                "n_running": 0,
                "threshold_good": 0.0,
                "threshold_bad": float(1 + number // 8),
                "state": "COMPLETE",
                "label": "good" if number % 4 == 0 else "bad",
            }
        )
    return rows


def wsgi_request(
    app: Any, path: str, *, method: str = "GET", body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """Send one request straight to a WSGI app; return (status code, decoded JSON or text)."""
    environ: dict[str, Any] = {}
    wsgiref.util.setup_testing_defaults(environ)
    payload = json.dumps(body).encode() if body is not None else b""
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path,
        QUERY_STRING="",
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(len(payload)),
    )
    environ["wsgi.input"] = io.BytesIO(payload)
    status: list[str] = []
    chunks = app(environ, lambda s, headers, exc_info=None: status.append(s))
    raw = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    code = int(status[0].split()[0])
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, raw.decode(errors="replace")
