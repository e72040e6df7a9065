"""Benchmark of the FPGA cost model: vectorized throughput and packing speedups.

1. Configs evaluated per second by ``FPGAModel.evaluate_batch`` on ResNet-20 (20 quantizable
   layers), on one core, next to the per-config ``evaluate`` path.
2. Latency, throughput, energy, DSP and BRAM use of the digits CNN and ResNet-20 at uniform
   32 (float) / 8 / 4 / 2 bits on two presets, with the speedup from operand packing.

Usage: ``PYTHONPATH=. python benchmarks/fpga_model.py [--quick]``. The last line is one JSON
object with the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from optuna_kmtpe.config import ALLOWED_BITS  # noqa: E402
from optuna_kmtpe.config import LayerConfig  # noqa: E402
from optuna_kmtpe.config import QuantConfig  # noqa: E402
from optuna_kmtpe.hardware import FPGAModel  # noqa: E402
from optuna_kmtpe.hardware import trace_layer_shapes  # noqa: E402


def _shapes() -> dict:
    import torch

    torch.set_num_threads(1)
    from optuna_kmtpe.models import DigitsCNN
    from optuna_kmtpe.models import ResNet20

    return {
        "digits_cnn": trace_layer_shapes(DigitsCNN(), torch.zeros(1, 1, 8, 8)),
        "resnet20": trace_layer_shapes(ResNet20(), torch.zeros(1, 3, 32, 32)),
    }


def _throughput(network, *, n_configs: int, repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n_layers = len(network)
    wb = rng.choice(np.array(ALLOWED_BITS[:8]), size=(n_configs, n_layers))
    ab = rng.choice(np.array(ALLOWED_BITS[:8]), size=(n_configs, n_layers))
    wd = rng.choice(np.array([0.25, 0.5, 0.75, 1.0]), size=(n_configs, n_layers))
    model = FPGAModel(device="zcu102")
    model.evaluate_batch(network, wb[:100], ab[:100], wd[:100])  # compile the network once
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.evaluate_batch(network, wb, ab, wd)
        best = min(best, time.perf_counter() - start)
    n_scalar = 200
    configs = [
        QuantConfig(
            {
                name: LayerConfig(int(wb[i, j]), int(ab[i, j]), float(wd[i, j]))
                for j, name in enumerate(network.names)
            }
        )
        for i in range(n_scalar)
    ]
    start = time.perf_counter()
    for config in configs:
        model.evaluate(network, config)
    scalar_s = time.perf_counter() - start
    return {
        "n_configs": n_configs,
        "vectorized_s": best,
        "configs_per_s": n_configs / best,
        "scalar_configs_per_s": n_scalar / scalar_s,
    }


def _uniform_table(shapes: dict, devices: list[str]) -> list[dict]:
    rows = []
    for device in devices:
        # Overpacking exists for DSP48E2 only; elsewhere it would repeat the standard rows.
        variants = ("standard", "overpack") if device == "zcu102" else ("standard",)
        for packing in variants:
            model = FPGAModel(device=device, packing=packing)
            for model_name, network in shapes.items():
                reports = {}
                for bits in (32, 8, 4, 2):
                    config = QuantConfig.uniform(network.names, weight_bits=bits, act_bits=bits)
                    reports[bits] = model.evaluate(network, config)
                for bits, report in reports.items():
                    rows.append(
                        {
                            "device": device,
                            "packing": packing,
                            "model": model_name,
                            "bits": bits,
                            "latency_us": report.latency_s * 1e6,
                            "throughput_ips": report.throughput_ips,
                            "energy_uj": report.energy_j * 1e6,
                            "dsp": report.dsp_used,
                            "bram36": report.bram_used,
                            "feasible": report.feasible,
                            "speedup_vs_8bit": reports[8].latency_s / report.latency_s,
                            "pipe_speedup_vs_8bit": report.throughput_ips
                            / reports[8].throughput_ips,
                            "speedup_vs_float": reports[32].latency_s / report.latency_s,
                            "pipe_speedup_vs_float": report.throughput_ips
                            / reports[32].throughput_ips,
                            "energy_gain_vs_8bit": reports[8].energy_j / report.energy_j,
                            "model_obj": model,
                        }
                    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configs and repeats")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    shapes = _shapes()
    resnet = shapes["resnet20"]
    speed = _throughput(
        resnet,
        n_configs=100_000 if args.quick else 400_000,
        repeats=2 if args.quick else 5,
        seed=args.seed,
    )
    print(f"Vectorized path, ResNet-20 ({len(resnet)} layers), zcu102, one core")
    print(f"  configs evaluated:         {speed['n_configs']:>10,d}")
    print(f"  best wall time:            {speed['vectorized_s']:>10.3f} s")
    print(f"  vectorized configs/s:      {speed['configs_per_s']:>10,.0f}")
    print(f"  per-config evaluate()/s:   {speed['scalar_configs_per_s']:>10,.0f}")
    ratio = speed["configs_per_s"] / speed["scalar_configs_per_s"]
    print(f"  ratio vectorized/scalar:   {ratio:>10.0f}x")
    print()

    devices = ["zcu102", "pynq-z2"]
    rows = _uniform_table(shapes, devices)
    header = (
        f"{'device':<8} {'packing':<8} {'model':<10} {'bits':>4} {'array':>10} {'lat us':>9} "
        f"{'pipe inf/s':>11} {'energy uJ':>10} {'DSP':>5} {'BRAM36':>6} {'x vs 8b':>7} "
        f"{'pipe x':>6} {'x vs fp32':>9} {'pipe x fp32':>11} {'E x 8b':>6}"
    )
    print(
        "Uniform bits (32 = float); latency = layer-by-layer on the array; pipe = layer-"
        "pipelined throughput"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        model = row["model_obj"]
        array = f"{model.pixel_parallel}x{model.rows}x{model.cols}"
        print(
            f"{row['device']:<8} {row['packing']:<8} {row['model']:<10} {row['bits']:>4} "
            f"{array:>10} {row['latency_us']:>9.2f} {row['throughput_ips']:>11,.0f} "
            f"{row['energy_uj']:>10.2f} {row['dsp']:>5} {row['bram36']:>6} "
            f"{row['speedup_vs_8bit']:>7.2f} {row['pipe_speedup_vs_8bit']:>6.2f} "
            f"{row['speedup_vs_float']:>9.2f} {row['pipe_speedup_vs_float']:>11.2f} "
            f"{row['energy_gain_vs_8bit']:>6.2f}"
        )

    def pick(device: str, packing: str, model: str, bits: int) -> dict:
        return next(
            r
            for r in rows
            if (r["device"], r["packing"], r["model"], r["bits"]) == (device, packing, model, bits)
        )

    headline = {
        "configs_per_s": round(speed["configs_per_s"]),
        "scalar_configs_per_s": round(speed["scalar_configs_per_s"]),
        "speedup_4bit_vs_8bit_resnet20": round(
            pick("zcu102", "standard", "resnet20", 4)["speedup_vs_8bit"], 3
        ),
        "speedup_4bit_vs_8bit_resnet20_pynq_z2": round(
            pick("pynq-z2", "standard", "resnet20", 4)["speedup_vs_8bit"], 3
        ),
        "speedup_4bit_overpack_vs_8bit_resnet20": round(
            pick("zcu102", "overpack", "resnet20", 4)["speedup_vs_8bit"], 3
        ),
        "speedup_4bit_vs_float_resnet20": round(
            pick("zcu102", "standard", "resnet20", 4)["speedup_vs_float"], 3
        ),
        "pipelined_speedup_4bit_vs_float_resnet20": round(
            pick("zcu102", "standard", "resnet20", 4)["pipe_speedup_vs_float"], 3
        ),
        "pipelined_speedup_4bit_overpack_vs_float_resnet20": round(
            pick("zcu102", "overpack", "resnet20", 4)["pipe_speedup_vs_float"], 3
        ),
        "pipelined_speedup_4bit_vs_8bit_resnet20": round(
            pick("zcu102", "standard", "resnet20", 4)["pipe_speedup_vs_8bit"], 3
        ),
        "energy_gain_4bit_vs_8bit_resnet20": round(
            pick("zcu102", "standard", "resnet20", 4)["energy_gain_vs_8bit"], 3
        ),
        "quick": args.quick,
    }
    print()
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
