"""Hardware-aware mixed-precision search on digits through the Python API.

The same job as ``kmtpe search``, spelled out step by step: a float model, its per-layer Hessian
sensitivity, the monotone bit-width space, the FPGA cost model, and a K-Means TPE study whose
objective runs real QAT for every feasible config. Runs in about two minutes on 2 CPU cores and
writes ``digits_example.db`` (open it with ``optuna-dashboard sqlite:///digits_example.db``).
"""

from __future__ import annotations

import warnings

import optuna

from optuna_kmtpe import KMeansTPESampler
from optuna_kmtpe import quant
from optuna_kmtpe.data import load_digits
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.graph import channel_graph
from optuna_kmtpe.hardware import FPGAModel
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.objectives import TrainingRecipe
from optuna_kmtpe.objectives import enqueue_warm_starts
from optuna_kmtpe.objectives import make_objective
from optuna_kmtpe.sensitivity import compute_sensitivity
from optuna_kmtpe.space import MonotoneSearchSpace
from optuna_kmtpe.workflow import trial_progress


def main(n_trials: int = 20) -> optuna.Study:
    splits = load_digits(seed=0)
    train = make_loader(splits.train, batch_size=128, shuffle=True)
    val = make_loader(splits.val, batch_size=512)
    example = splits.val.tensors[0][:2]

    # 1. A trained float model (the checkpoint every trial's QAT starts from).
    model = quant.train_float(
        DigitsCNN(), make_loader(splits.train, batch_size=64, shuffle=True), epochs=30
    )
    print(f"float accuracy: {quant.evaluate(model, val):.4f}")

    # 2. Hessian sensitivity: more sensitive layers never get fewer bits.
    report = compute_sensitivity(model, train, weight_bits=(2, 3, 4, 6, 8), max_probes=200)
    print(report.to_table())
    graph = channel_graph(model, example)
    space = MonotoneSearchSpace(
        report,
        weight_bits=(2, 3, 4, 6, 8),
        act_bits=(4, 6, 8),
        widths=(0.5, 0.75, 1.0),
        prunable_layers=graph.prunable_layers,
        producers=graph.producers,
    )
    print(space.describe())

    # 3. Objective: FPGA costs first (pynq-z2), QAT only for configs within the budget.
    objective = make_objective(
        model=model,
        train_loader=train,
        val_loader=val,
        space=space,
        fpga=FPGAModel(device="pynq-z2"),
        example_input=example,
        metrics=("accuracy", "latency_s", "energy_j"),
        budgets={"latency_s": 35e-6},
        recipe=TrainingRecipe(epochs=2, lr=0.01),
    )

    # 4. A K-Means TPE study on SQLite, warm-started from HAWQ-V2 selections.
    study = optuna.create_study(
        study_name="digits-api",
        storage="sqlite:///digits_example.db",
        directions=objective.directions,
        sampler=KMeansTPESampler(seed=0),
        load_if_exists=True,
    )
    with warnings.catch_warnings():  # still marked experimental in Optuna 5.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(objective.metric_names)
    # HAWQ-V2 picks weight bits; pairing activation bits with them lets the DSPs pack (with
    # 8-bit activations a selection would be as slow as uniform 8-bit on the FPGA).
    frontier = space.hawq_v2_frontier()
    picks = [
        ("hawq-v2", space.pair_activation_bits(point.config))
        for point in frontier[:: max(1, len(frontier) // 3)]
    ]
    enqueue_warm_starts(study, picks, space.params_for)
    # One line per finished trial, as `kmtpe search` prints them.
    progress = trial_progress(n_trials, objective.metric_names)
    study.optimize(objective, n_trials=n_trials, callbacks=[progress])

    for trial in sorted(study.best_trials, key=lambda t: -t.values[0]):
        acc, latency, energy = trial.values
        bits = [c["weight_bits"] for c in trial.user_attrs["config"].values()]
        print(
            f"trial {trial.number:3d}  acc {acc:.4f}  latency {latency * 1e6:6.2f} us  "
            f"energy {energy * 1e6:6.3f} uJ  weight bits {bits}"
        )
    return study


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main()
