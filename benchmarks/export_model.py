"""Export benchmark: QONNX and ONNX QDQ files against the quantized torch model.

For each task (digits with the digits CNN, MNIST-1D with the 20-layer ResNet20_1D) and each
config (uniform W4A4 and a mixed config with pruned layers), with free and with power-of-two
scales: QAT exactly as a trial does (``quant.run_recipe`` with the search's recipe),
then the torch model's test accuracy, the export time of each format (``export_model``, 2 CPU
threads), and the argmax agreement and accuracy of the exported file on the test split
(QONNX by qonnx's executor, QDQ by onnxruntime).

Prints a table and, on its last line, the results as JSON.

    python benchmarks/export_model.py                 # both tasks
    python benchmarks/export_model.py --tasks mnist1d --pretrain-epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

import torch

from optuna_kmtpe import export
from optuna_kmtpe import quant
from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import recipe_for
from optuna_kmtpe.workflow._prepare import load_data
from optuna_kmtpe.workflow._prepare import pretrained_model


def _configs(model: torch.nn.Module, example: torch.Tensor) -> dict[str, QuantConfig]:
    from optuna_kmtpe.graph import channel_graph

    names = list(quant.quantizable_layers(model))
    prunable = set(channel_graph(model, example).prunable_layers)
    generator = torch.Generator().manual_seed(0)
    mixed = {}
    for name in names:
        pick = torch.randint(0, 3, (3,), generator=generator).tolist()
        mixed[name] = LayerConfig(
            weight_bits=(3, 4, 6)[pick[0]],
            act_bits=(4, 6, 8)[pick[1]],
            width=(0.5, 0.75, 1.0)[pick[2]] if name in prunable else 1.0,
        )
    return {
        "W4A4": QuantConfig.uniform(names, weight_bits=4, act_bits=4),
        "mixed": QuantConfig(mixed),
    }


def run_task(task: str, *, pretrain_epochs: int | None, qat_epochs: int) -> list[dict[str, Any]]:
    settings = SearchSettings(data=task, pretrain_epochs=pretrain_epochs, qat_epochs=qat_epochs)
    splits = load_data(settings)
    model = pretrained_model(settings, splits, log=lambda msg: print(msg, flush=True))
    torch.set_num_threads(2)
    from optuna_kmtpe.data import make_loader

    train = make_loader(splits.train, batch_size=settings.batch_size, shuffle=True, seed=0)
    val = make_loader(splits.val, batch_size=512)
    example = splits.val.tensors[0][:2]
    inputs, labels = splits.test.tensors[:2]
    rows = []
    for name, config in _configs(model, example).items():
        for quantizer in ("uniform", "power_of_two"):
            recipe = recipe_for(settings.replace(quantizer=quantizer))
            start = time.perf_counter()
            qmodel = quant.run_recipe(
                model, config, recipe, train_loader=train, val_loader=val, example_input=example
            ).model
            train_s = time.perf_counter() - start
            row: dict[str, Any] = {
                "task": task,
                "model": settings.model,
                "layers": len(config),
                "config": name,
                "power_of_two": quantizer == "power_of_two",
                "qat_s": round(train_s, 1),
                "test_accuracy": quant.evaluate(qmodel, make_loader(splits.test, batch_size=512)),
            }
            with tempfile.TemporaryDirectory() as tmp:
                for fmt in ("qonnx", "onnx"):
                    path = os.path.join(tmp, f"model.{fmt}.onnx")
                    start = time.perf_counter()
                    export.export_model(qmodel, path, format=fmt, example_input=example)
                    row[f"{fmt}_export_s"] = round(time.perf_counter() - start, 2)
                    check = export.check_export(qmodel, path, inputs, labels, format=fmt)
                    row[f"{fmt}_agreement"] = check.agreement
                    row[f"{fmt}_accuracy"] = check.accuracy
            rows.append(row)
            print(_line(row), flush=True)
    return rows


_HEADER = (
    f"{'task':8s} {'config':6s} {'po2':4s} {'torch acc':>9s} {'qonnx agree':>11s} "
    f"{'qonnx acc':>9s} {'qonnx s':>7s} {'onnx agree':>10s} {'onnx acc':>8s} {'onnx s':>6s}"
)


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['task']:8s} {row['config']:6s} {'yes' if row['power_of_two'] else 'no':4s} "
        f"{100 * row['test_accuracy']:8.2f}% {100 * row['qonnx_agreement']:10.2f}% "
        f"{100 * row['qonnx_accuracy']:8.2f}% {row['qonnx_export_s']:7.2f} "
        f"{100 * row['onnx_agreement']:9.2f}% {100 * row['onnx_accuracy']:7.2f}% "
        f"{row['onnx_export_s']:6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,mnist1d", help="comma-separated tasks")
    parser.add_argument("--pretrain-epochs", type=int, help="float pre-training epochs")
    parser.add_argument("--qat-epochs", type=int, default=2, help="QAT epochs (the default)")
    args = parser.parse_args()
    rows = []
    for task in args.tasks.split(","):
        rows += run_task(task, pretrain_epochs=args.pretrain_epochs, qat_epochs=args.qat_epochs)
    print()
    print(_HEADER)
    for row in rows:
        print(_line(row))
    costs = {}
    for task in {row["task"] for row in rows}:
        for config in {row["config"] for row in rows}:
            same = [r for r in rows if (r["task"], r["config"]) == (task, config)]
            pair = {r["power_of_two"]: r for r in same}
            if len(pair) == 2:
                delta = pair[False]["test_accuracy"] - pair[True]["test_accuracy"]
                costs[f"{task}/{config}"] = round(100 * delta, 2)
    print(f"power-of-two accuracy cost (points, free minus po2 scales): {costs}")
    print(json.dumps({"rows": rows, "power_of_two_cost_points": costs}))


if __name__ == "__main__":
    main()
