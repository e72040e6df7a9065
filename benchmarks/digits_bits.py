"""Test accuracy on scikit-learn's digits by weight bit-width, QAT and PTQ, mean over seeds.

For each seed: train the float DigitsCNN (30 epochs, SGD lr 0.1, cosine), then for uniform
8/6/4/3/2/1-bit weights with 8-bit activations on every layer: PTQ (BN re-estimation + min-max
calibration) and QAT (calibrate, then a short fine-tune from the float checkpoint: 3 epochs SGD
lr 0.01, batch 64, cosine), both through ``quant.run_recipe``, the runner a search trial uses
(8 calibration batches, the loader rewound to the seed). Reports mean test accuracy over the
seeds, the model size of the quantizable layers in KiB, and the time of one QAT fine-tune
(which includes scoring the test split after each epoch, as a trial scores its validation
split).

Usage:
    PYTHONPATH=. python benchmarks/digits_bits.py [--quick] [--seeds 3]

The last line is a JSON object with ``float_acc``, ``qat8_acc``, ``qat4_acc``, ``qat2_acc``,
``ptq8_acc`` (and the other bit-widths).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.data import load_digits
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.quant import TrainingRecipe
from optuna_kmtpe.quant import evaluate
from optuna_kmtpe.quant import model_size_bits
from optuna_kmtpe.quant import quantizable_layers
from optuna_kmtpe.quant import run_recipe
from optuna_kmtpe.quant import train_float


BITS = (8, 6, 4, 3, 2, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 8/4/2 bits only")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--qat-lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = range(1 if args.quick else args.seeds)
    bits_list = (8, 4, 2) if args.quick else BITS

    splits = load_digits(seed=0)
    test = make_loader(splits.test, batch_size=512)
    results: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {}
    sizes: dict[str, float] = {}
    for seed in seeds:
        train = make_loader(splits.train, batch_size=64, shuffle=True, seed=seed)
        torch.manual_seed(seed)
        start = time.perf_counter()
        model = train_float(DigitsCNN(), train, epochs=30, lr=0.1, seed=seed, progress=False)
        times.setdefault("float", []).append(time.perf_counter() - start)
        results.setdefault("float", []).append(evaluate(model, test))
        names = list(quantizable_layers(model))
        sizes["float"] = model_size_bits(model) / 8 / 1024
        for bits in bits_list:
            config = QuantConfig.uniform(names, weight_bits=bits, act_bits=8)
            sizes[f"{bits}"] = model_size_bits(model, config) / 8 / 1024
            for mode in ("ptq", "qat"):
                recipe = TrainingRecipe(
                    mode=mode,
                    epochs=args.qat_epochs,
                    lr=args.qat_lr,
                    calibration_batches=8,
                    seed=seed,
                )
                start = time.perf_counter()
                result = run_recipe(model, config, recipe, train_loader=train, val_loader=test)
                times.setdefault(f"{mode}{bits}", []).append(time.perf_counter() - start)
                results.setdefault(f"{mode}{bits}", []).append(result.score)

    def mean(key: str) -> float:
        return statistics.mean(results[key])

    print(f"digits test accuracy, mean over {len(seeds)} seed(s); activations 8-bit")
    header = ("weights", "size KiB", "QAT acc", "PTQ acc", "QAT s", "PTQ s")
    print("{:>8} {:>9} {:>8} {:>8} {:>6} {:>6}".format(*header))
    print(
        f"{'float':>8} {sizes['float']:>9.2f} {mean('float'):>8.4f} {'':>8} "
        f"{statistics.mean(times['float']):>6.2f} {'':>6}"
    )
    for bits in bits_list:
        print(
            f"{bits:>7}b {sizes[str(bits)]:>9.2f} {mean(f'qat{bits}'):>8.4f} "
            f"{mean(f'ptq{bits}'):>8.4f} {statistics.mean(times[f'qat{bits}']):>6.2f} "
            f"{statistics.mean(times[f'ptq{bits}']):>6.2f}"
        )
    summary: dict[str, float] = {"float_acc": round(mean("float"), 4)}
    for bits in bits_list:
        summary[f"qat{bits}_acc"] = round(mean(f"qat{bits}"), 4)
        summary[f"ptq{bits}_acc"] = round(mean(f"ptq{bits}"), 4)
    summary["qat_seconds_per_finetune"] = round(
        statistics.mean(t for b in bits_list for t in times[f"qat{b}"]), 3
    )
    summary["seeds"] = len(seeds)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
