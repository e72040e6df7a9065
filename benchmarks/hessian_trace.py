"""Benchmark of the per-layer Hessian trace estimator (issue 4).

Measures, side by side in one run:

1. cost: seconds of one block-isolated probe of *every* layer (one HVP per layer, graph reused)
   divided by seconds of one gradient (forward + backward), on the digits CNN (batch 128, 8x8)
   and ResNet-20 (random batch of 128, 3x32x32); plus the wall time of a default
   ``compute_sensitivity`` on the digits CNN;
2. accuracy: relative error against exact per-layer traces (full Hessian blocks) on small nets
   at 10/50/200 Hessian-vector products per layer and batch, plain Hutchinson versus the
   default deflated estimator (same number of products), max over layers with > 50 weights and
   3 seeds;
3. usefulness (HAWQ-V2 Lemma 1): Spearman correlation, over layers of a trained network,
   between Omega_i = Tr(H_i)/n_i * ||Q_2(W_i) - W_i||^2 and the measured test accuracy drop (and
   loss increase) when only layer i's weights are quantized to 2 bits (per-channel symmetric);
   on the trained digits CNN (4 layers), a deeper digits CNN (8 layers) and, without
   ``--quick``, ResNet-20 trained on digits upsampled to 16x16 (20 layers).

Usage: ``PYTHONPATH=. python benchmarks/hessian_trace.py [--quick]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time

from scipy.stats import spearmanr
import torch
from torch import nn
from torch.func import functional_call
import torch.nn.functional as F

from optuna_kmtpe.data import load_digits
from optuna_kmtpe.data import make_loader
from optuna_kmtpe.graph import quantizable_layers
from optuna_kmtpe.models import MLP
from optuna_kmtpe.models import DigitsCNN
from optuna_kmtpe.models import ResNet20
from optuna_kmtpe.quant import UniformQuantizer
from optuna_kmtpe.sensitivity import compute_sensitivity
from optuna_kmtpe.sensitivity._compute import _GradientGraph
from optuna_kmtpe.sensitivity._hutchinson import rademacher_like


# Small nets with exact traces -------------------------------------------------------------
class TinyBNCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.mean(dim=(2, 3)))


class TinyResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(8)
        self.conv_b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = self.bn_b(self.conv_b(F.relu(self.bn_a(self.conv_a(x)))))
        return self.fc(F.relu(x + y).mean(dim=(2, 3)))


class DeepDigitsCNN(nn.Module):
    """Seven conv-BN-ReLU layers and a classifier (8 quantizable layers) for 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        channels = [1, 16, 16, 32, 32, 32, 64, 64]
        layers: list[nn.Module] = []
        for k, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
            if k == 2:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def exact_traces(model: nn.Module, batches: list, names: tuple[str, ...]) -> dict[str, float]:
    model = model.eval()
    modules = dict(model.named_modules())
    result = {}
    for name in names:
        w0 = modules[name].weight.detach().clone()

        def loss_of(weight: torch.Tensor, name: str = name) -> torch.Tensor:
            return torch.stack(
                [
                    F.cross_entropy(functional_call(model, {f"{name}.weight": weight}, (x,)), y)
                    for x, y in batches
                ]
            ).mean()

        n = w0.numel()
        hessian = torch.autograd.functional.hessian(loss_of, w0)
        result[name] = float(hessian.reshape(n, n).diagonal().sum()) / n
    return result


# Training and evaluation --------------------------------------------------------------------
def train(model: nn.Module, data, *, epochs: int, seed: int, upsample: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    loader = make_loader(data.train, batch_size=64, shuffle=True, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(loader))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(_up(x, upsample)), y).backward()
            opt.step()
            sched.step()
    return model.eval()


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


@torch.no_grad()
def evaluate(model: nn.Module, dataset, upsample: int = 1) -> tuple[float, float]:
    x, y = dataset.tensors
    logits = model.eval()(_up(x, upsample))
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def omega_vs_drop(model: nn.Module, data, *, upsample: int, label: str, **sens_kw) -> dict:
    """Spearman(Omega at 2 bits, accuracy drop / loss increase with only that layer at 2 bits).

    Diagnostic columns separate HAWQ-V2's two approximations: ``quad`` is the exact second-order
    term 0.5 * dW^T H dW with the actual quantization error dW (one HVP), so
    rank(quad) vs rank(drop) tests the second-order (small perturbation) approximation and
    rank(omega) vs rank(quad) tests the trace (isotropic perturbation) approximation.
    """
    calib = [(_up(x, upsample), y) for x, y in make_loader(data.train, batch_size=128)]
    calib = calib[: sens_kw.get("num_batches", 2)]
    started = time.perf_counter()
    report = compute_sensitivity(model, calib, weight_bits=(2,), progress=False, **sens_kw)
    seconds = time.perf_counter() - started
    base_acc, base_loss = evaluate(model, data.test, upsample)
    work = copy.deepcopy(model).eval()
    modules = [dict(work.named_modules())[name] for name in report.names]
    for param in work.parameters():
        param.requires_grad_(False)
    weights = [m.weight.requires_grad_(True) for m in modules]
    graphs = [
        _GradientGraph(work, modules, weights, nn.CrossEntropyLoss(), x, y, False)
        for x, y in calib
    ]
    base_calib = sum(g.loss_value for g in graphs) / len(graphs)
    rows = []
    for index, layer in enumerate(report):
        delta = (
            UniformQuantizer().fake_quantize_weight(weights[index].detach(), 2)
            - weights[index].detach()
        )
        quad = 0.0
        for graph in graphs:
            hvp = graph.weight_hvps()[index]
            if hvp is not None:
                quad += 0.5 * float((delta * hvp(delta)).sum()) / len(graphs)
        quantized = copy.deepcopy(model)
        module = dict(quantized.named_modules())[layer.name]
        with torch.no_grad():
            module.weight.copy_(UniformQuantizer().fake_quantize_weight(module.weight, 2))
        acc, loss = evaluate(quantized, data.test, upsample)
        with torch.no_grad():
            calib_loss = sum(float(F.cross_entropy(quantized(x), y)) for x, y in calib)
        assert math.isclose(quad, layer.quadratic[2], rel_tol=1e-3, abs_tol=1e-12)
        rows.append(
            {
                "omega": layer.omega(2),
                "quad": quad,
                "drop": base_acc - acc,
                "loss_up": loss - base_loss,
                "calib_up": calib_loss / len(calib) - base_calib,
            }
        )
    del graphs

    def rho(a: str, b: str) -> float:
        return float(spearmanr([r[a] for r in rows], [r[b] for r in rows]).statistic)

    print(
        f"\n{label}: float test accuracy {base_acc:.4f}, sensitivity {seconds:.1f} s, "
        f"{len(report)} layers"
    )
    print(
        f"  {'layer':<20}{'Tr/n':>10}{'relSE':>7}{'omega@2b':>10}{'quad@2b':>10}"
        f"{'acc drop':>9}{'test dL':>9}{'calib dL':>9}"
    )
    for layer, r in zip(report, rows):
        print(
            f"  {layer.name:<20}{layer.trace:>10.2e}{100 * layer.rel_stderr:>6.1f}%"
            f"{r['omega']:>10.2e}{r['quad']:>10.2e}{r['drop']:>9.4f}{r['loss_up']:>9.4f}"
            f"{r['calib_up']:>9.4f}"
        )
    out = {
        "spearman_acc": rho("omega", "drop"),
        "spearman_loss": rho("omega", "loss_up"),
        "spearman_calib_loss": rho("omega", "calib_up"),
        "spearman_quad_drop": rho("quad", "drop"),
        "spearman_omega_quad": rho("omega", "quad"),
        "spearman_quad_calib": rho("quad", "calib_up"),
        "layers": len(report),
        "seconds": seconds,
    }
    print(
        f"  Spearman: omega~acc drop {out['spearman_acc']:.3f}, omega~test dL "
        f"{out['spearman_loss']:.3f}, omega~calib dL {out['spearman_calib_loss']:.3f}; "
        f"omega~quad {out['spearman_omega_quad']:.3f}, quad~calib dL "
        f"{out['spearman_quad_calib']:.3f}, quad~acc drop {out['spearman_quad_drop']:.3f}"
    )
    return out


# Cost -----------------------------------------------------------------------------------------
def probe_cost_ratio(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int) -> dict:
    model = copy.deepcopy(model).eval()
    modules = list(quantizable_layers(model).values())
    weights = [m.weight for m in modules]
    loss_fn = nn.CrossEntropyLoss()

    def one_gradient() -> None:
        torch.autograd.grad(loss_fn(model(x), y), weights)

    start = time.perf_counter()
    graph = _GradientGraph(model, modules, weights, loss_fn, x, y, False)
    graph_s = time.perf_counter() - start
    hvps = graph.weight_hvps()
    gen = torch.Generator().manual_seed(0)

    def one_probe_of_every_layer() -> None:
        for hvp, w in zip(hvps, weights):
            if hvp is not None:
                hvp(rademacher_like(w, gen))

    one_gradient()
    one_probe_of_every_layer()  # warm-up
    # Interleave the two measurements so that load from other processes hits both alike.
    grad_times, probe_times, ratios = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        one_gradient()
        grad_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        one_probe_of_every_layer()
        probe_times.append(time.perf_counter() - start)
        ratios.append(probe_times[-1] / grad_times[-1])
    grad_s = statistics.median(grad_times)
    probe_s = statistics.median(probe_times)
    return {
        "grad_s": grad_s,
        "graph_s": graph_s,
        "probe_all_layers_s": probe_s,
        "ratio": statistics.median(ratios),
        "layers": len(weights),
    }


# Main -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute on 2 cores")
    args = parser.parse_args()
    # One thread: on the shared 2-core machine two threads were up to 50x slower under load
    # (spinning OpenMP barriers); ratios are measured side by side, so this is like for like.
    torch.set_num_threads(1)
    results: dict = {}

    # 1. Cost ------------------------------------------------------------------------------
    data = load_digits()
    print(
        "1) cost of one probe of every layer / one gradient (median; digits batch 128, "
        f"ResNet-20 batch {32 if args.quick else 128})"
    )
    gen = torch.Generator().manual_seed(0)
    x_d, y_d = next(iter(make_loader(data.train, batch_size=128)))
    torch.manual_seed(0)
    cost_cnn = probe_cost_ratio(DigitsCNN(), x_d, y_d, rounds=15)
    res_batch = 32 if args.quick else 128
    x_r = torch.randn(res_batch, 3, 32, 32, generator=gen)
    y_r = torch.randint(0, 10, (res_batch,), generator=gen)
    cost_res = probe_cost_ratio(ResNet20(), x_r, y_r, rounds=3 if args.quick else 7)
    print(
        f"  {'model':<12}{'layers':>7}{'grad s':>9}{'graph s':>9}{'probe s':>9}{'ratio':>8}"
        f"{'per layer':>10}"
    )
    for name, c in (("digits CNN", cost_cnn), ("ResNet-20", cost_res)):
        print(
            f"  {name:<12}{c['layers']:>7}{c['grad_s']:>9.4f}{c['graph_s']:>9.4f}"
            f"{c['probe_all_layers_s']:>9.4f}{c['ratio']:>8.2f}{c['ratio'] / c['layers']:>10.2f}"
        )
    results["probe_cost_ratio_digits_cnn"] = round(cost_cnn["ratio"], 3)
    results["probe_cost_ratio_resnet20"] = round(cost_res["ratio"], 3)

    # 2. Accuracy against exact traces -----------------------------------------------------
    print(
        "\n2) max relative error vs exact per-layer traces (layers > 50 weights, 2 batches "
        f"of 32 digits, {2 if args.quick else 3} seeds)"
    )
    nets = [("TinyBNCNN", TinyBNCNN), ("TinyResidual", TinyResidual)]
    if not args.quick:
        nets.append(("MLP", MLP))
    budgets = (10, 50, 200)
    seeds = 2 if args.quick else 3
    errors: dict[str, dict[int, float]] = {"plain": {}, "deflated": {}}
    for method in errors:
        for budget in budgets:
            errors[method][budget] = 0.0
    for net_name, cls in nets:
        torch.manual_seed(1)
        model = cls()
        model.train()
        with torch.no_grad():  # non-trivial BatchNorm statistics
            for x, _ in make_loader(data.train, batch_size=128):
                model(x)
        model.eval()
        batches = [(x, y) for x, y in make_loader(data.val, batch_size=32)][:2]
        names = tuple(quantizable_layers(model))
        exact = exact_traces(model, batches, names)
        for seed in range(seeds):
            for budget in budgets:
                for method in ("plain", "deflated"):
                    rank = 0 if method == "plain" else budget // 4
                    probes = budget - 2 * rank
                    report = compute_sensitivity(
                        model,
                        batches,
                        min_probes=probes,
                        max_probes=probes,
                        deflation_rank=rank,
                        seed=seed,
                        progress=False,
                        weight_bits=(2,),
                    )
                    for layer in report:
                        if layer.n_params > 50:
                            err = abs(layer.trace / exact[layer.name] - 1)
                            errors[method][budget] = max(errors[method][budget], err)
        print(f"  {net_name}: exact Tr/n = " + ", ".join(f"{k}={v:.3e}" for k, v in exact.items()))
    print(f"  {'HVPs per layer and batch':<26}" + "".join(f"{b:>9}" for b in budgets))
    for method in ("plain", "deflated"):
        label = "plain Hutchinson" if method == "plain" else "deflated (k = HVPs/4)"
        print(f"  {label:<26}" + "".join(f"{100 * errors[method][b]:>8.2f}%" for b in budgets))
    results["max_rel_err_200"] = round(errors["deflated"][200], 4)
    results["max_rel_err_200_plain"] = round(errors["plain"][200], 4)
    results["max_rel_err_50"] = round(errors["deflated"][50], 4)
    results["max_rel_err_10"] = round(errors["deflated"][10], 4)

    # 3. Omega vs accuracy drop --------------------------------------------------------------
    print("\n3) Spearman(Omega at 2 bits, drop when only that layer is at 2 bits)")
    torch.manual_seed(0)
    start = time.perf_counter()
    cnn = train(DigitsCNN(), data, epochs=30, seed=0)
    print(f"  digits CNN trained in {time.perf_counter() - start:.1f} s")
    res_cnn = omega_vs_drop(cnn, data, upsample=1, label="digits CNN")
    results["spearman_omega_vs_drop"] = round(res_cnn["spearman_acc"], 3)
    results["spearman_omega_vs_loss"] = round(res_cnn["spearman_loss"], 3)
    results["spearman_omega_vs_calib_loss"] = round(res_cnn["spearman_calib_loss"], 3)
    results["spearman_quadratic_vs_drop"] = round(res_cnn["spearman_quad_drop"], 3)
    torch.manual_seed(0)
    deep = train(DeepDigitsCNN(), data, epochs=30, seed=0)
    res_deep = omega_vs_drop(deep, data, upsample=1, label="deep digits CNN (8 layers)")
    results["spearman_omega_vs_drop_deep_cnn"] = round(res_deep["spearman_acc"], 3)
    results["spearman_omega_vs_loss_deep_cnn"] = round(res_deep["spearman_loss"], 3)
    results["spearman_omega_vs_calib_loss_deep_cnn"] = round(res_deep["spearman_calib_loss"], 3)
    results["spearman_quadratic_vs_drop_deep_cnn"] = round(res_deep["spearman_quad_drop"], 3)
    if not args.quick:
        torch.manual_seed(0)
        start = time.perf_counter()
        resnet = train(ResNet20(in_channels=1), data, epochs=15, seed=0, upsample=2)
        print(f"\n  ResNet-20 (digits at 16x16) trained in {time.perf_counter() - start:.1f} s")
        res_resnet = omega_vs_drop(
            resnet,
            data,
            upsample=2,
            label="ResNet-20 on digits 16x16 (20 layers)",
            num_batches=1,
            target_rel_err=0.05,
        )
        results["spearman_omega_vs_drop_resnet20"] = round(res_resnet["spearman_acc"], 3)
        results["spearman_omega_vs_loss_resnet20"] = round(res_resnet["spearman_loss"], 3)
        results["spearman_omega_vs_calib_loss_resnet20"] = round(
            res_resnet["spearman_calib_loss"], 3
        )
        results["spearman_quadratic_vs_drop_resnet20"] = round(res_resnet["spearman_quad_drop"], 3)

    started = time.perf_counter()
    compute_sensitivity(cnn, make_loader(data.train, batch_size=128), progress=False)
    results["default_sensitivity_s_digits_cnn"] = round(time.perf_counter() - started, 2)
    print(
        f"\ndefault compute_sensitivity on the trained digits CNN: "
        f"{results['default_sensitivity_s_digits_cnn']} s"
    )
    goals = {
        "correlation >= 0.6": results["spearman_omega_vs_drop"] >= 0.6,
        "error at 200 <= 5%": results["max_rel_err_200"] <= 0.05,
    }
    print("goals: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in goals.items()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
