"""Cost of one QAT training step relative to one float training step (same model, same batch).

Models: the digits CNN on random 1x8x8 inputs (batch 256) and ResNet-20 on random 3x32x32
inputs (batch 128). The QAT model quantizes every layer (4-bit weights, 8-bit activations,
per-channel MSE-clipped weights, EMA activation ranges); an extra ResNet-20 row uses 2-bit
weights, whose clipping search runs every step. Float and QAT steps are timed
interleaved (float, QAT, float, QAT, ...) so that machine load hits both alike; the ratio of the
medians is reported.

Usage:
    PYTHONPATH=. python benchmarks/qat_overhead.py [--quick] [--threads 2]

The last line is a JSON object; ``qat_step_ratio`` is the ResNet-20 ratio (goal <= 1.3).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
import torch.nn.functional as F

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.models import ResNet20
from optuna_kmtpe.quant import apply_config
from optuna_kmtpe.quant import calibrate
from optuna_kmtpe.quant import quantizable_layers


def _step_timer(model: nn.Module, x: torch.Tensor, y: torch.Tensor):  # noqa: ANN202
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> float:
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step


def measure(
    name: str, model: nn.Module, x: torch.Tensor, repeats: int, weight_bits: int = 4
) -> dict[str, float]:
    y = torch.randint(0, 10, (x.shape[0],), generator=torch.Generator().manual_seed(1))
    config = QuantConfig.uniform(quantizable_layers(model), weight_bits=weight_bits, act_bits=8)
    qmodel = apply_config(model, config)
    calibrate(qmodel, [x], num_batches=1)
    float_step = _step_timer(model, x, y)
    qat_step = _step_timer(qmodel, x, y)
    for _ in range(3):  # warm-up
        float_step()
        qat_step()
    float_times, qat_times = [], []
    for _ in range(repeats):
        float_times.append(float_step())
        qat_times.append(qat_step())
    f_ms = 1000 * statistics.median(float_times)
    q_ms = 1000 * statistics.median(qat_times)
    return {"model": name, "float_ms": f_ms, "qat_ms": q_ms, "ratio": q_ms / f_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    digits_x = torch.rand(256, 1, 8, 8, generator=gen)
    cifar_x = torch.rand(128, 3, 32, 32, generator=gen)
    cases = [
        ("digits_cnn", DigitsCNN(), digits_x, 60 if args.quick else 200),
        ("resnet20", ResNet20(), cifar_x, 12 if args.quick else 40),
    ]
    rows = [measure(name, model, x, repeats) for name, model, x, repeats in cases]
    # 2-bit weights re-run the MSE clipping search every step (see apply_config).
    w2 = measure("resnet20", cases[1][1], cifar_x, cases[1][3], weight_bits=2)
    rows.append({**w2, "model": "resnet20_w2"})
    print(f"{'model':<12} {'float ms/step':>14} {'QAT ms/step':>12} {'QAT/float':>10}")
    for row in rows:
        print(
            f"{row['model']:<12} {row['float_ms']:>14.2f} {row['qat_ms']:>12.2f} "
            f"{row['ratio']:>10.3f}"
        )
    by_name = {row["model"]: row for row in rows}
    print(
        json.dumps(
            {
                "qat_step_ratio": round(by_name["resnet20"]["ratio"], 4),
                "qat_step_ratio_digits_cnn": round(by_name["digits_cnn"]["ratio"], 4),
                "qat_step_ratio_resnet20_w2a8": round(by_name["resnet20_w2"]["ratio"], 4),
                "resnet20_float_ms": round(by_name["resnet20"]["float_ms"], 2),
                "resnet20_qat_ms": round(by_name["resnet20"]["qat_ms"], 2),
                "goal_qat_step_ratio_max": 1.3,
            }
        )
    )


if __name__ == "__main__":
    main()
