from __future__ import annotations

import json

import optuna
import pytest
import torch
from torch import nn
from torch.func import functional_call
import torch.nn.functional as F

from optuna_kmtpe.quant import UniformQuantizer
from optuna_kmtpe.sensitivity import LayerSensitivity
from optuna_kmtpe.sensitivity import SensitivityReport
from optuna_kmtpe.sensitivity import _report as report_module
from optuna_kmtpe.sensitivity import compute_sensitivity
from optuna_kmtpe.sensitivity._hutchinson import hutchinson_traces
from optuna_kmtpe.sensitivity._hutchinson import power_iteration


# Tiny networks ----------------------------------------------------------------------------
class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 24)
        self.fc2 = nn.Linear(24, 16)
        self.out = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.out(torch.tanh(self.fc2(F.relu(self.fc1(x)))))


class TinyBNCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.mean(dim=(2, 3)))


class TinyResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(6)
        self.conv_a = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(6)
        self.conv_b = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = self.bn_b(self.conv_b(F.relu(self.bn_a(self.conv_a(x)))))
        x = F.relu(x + y)
        return self.fc(x.mean(dim=(2, 3)))


def _batches(seed: int, n: int = 2, size: int = 48) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 1, 4, 4, generator=gen), torch.randint(0, 5, (size,), generator=gen))
        for _ in range(n)
    ]


def _prepared(model_cls: type[nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = model_cls()
    # Give BatchNorm non-trivial running statistics, so eval and train modes differ.
    model.train()
    with torch.no_grad():
        for x, _ in _batches(seed + 100, n=3):
            model(x * 2 + 0.5)
    return model


def _exact_traces(
    model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], names: tuple[str, ...]
) -> dict[str, float]:
    """Tr(H_ll)/n_l from the full per-layer Hessian (torch.autograd.functional.hessian)."""
    model = model.eval()
    modules = dict(model.named_modules())
    exact = {}
    for name in names:
        w0 = modules[name].weight.detach().clone()

        def loss_of(weight: torch.Tensor, name: str = name) -> torch.Tensor:
            losses = [
                F.cross_entropy(functional_call(model, {f"{name}.weight": weight}, (x,)), y)
                for x, y in batches
            ]
            return torch.stack(losses).mean()

        n = w0.numel()
        hessian = torch.autograd.functional.hessian(loss_of, w0, vectorize=True)
        exact[name] = float(hessian.reshape(n, n).diagonal().sum()) / n
    return exact


@pytest.mark.slow
@pytest.mark.parametrize("model_cls", [TinyMLP, TinyBNCNN, TinyResidual])
def test_traces_match_exact_hessian_at_default_settings(model_cls: type[nn.Module]) -> None:
    model = _prepared(model_cls, seed=1)
    batches = _batches(seed=2)
    report = compute_sensitivity(model, batches, progress=False)
    exact = _exact_traces(model, batches, report.names)
    checked = 0
    for layer in report:
        if layer.n_params <= 50:
            continue
        checked += 1
        assert layer.trace == pytest.approx(exact[layer.name], rel=0.05), layer.name
        # The standard error is honest: the error is within a few of them.
        assert abs(layer.trace - exact[layer.name]) <= 5 * layer.trace_stderr + 1e-12
    assert checked >= 2


def test_plain_hutchinson_also_unbiased_and_reports_its_noise() -> None:
    model = _prepared(TinyMLP, seed=3)
    batches = _batches(seed=4)
    report = compute_sensitivity(
        model, batches, deflation_rank=0, target_rel_err=0.03, max_probes=3000, progress=False
    )
    exact = _exact_traces(model, batches, report.names)
    for layer in report:
        assert abs(layer.trace - exact[layer.name]) <= 4 * layer.trace_stderr
        assert layer.rel_stderr <= 0.031


def test_model_is_unchanged() -> None:
    model = _prepared(TinyBNCNN, seed=5)
    model.train()
    model.fc.weight.requires_grad_(False)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_modes = {name: m.training for name, m in model.named_modules()}
    before_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    compute_sensitivity(
        model, _batches(6), activations=True, eigenvalues=True, eig_max_iter=5, progress=False
    )
    after_state = model.state_dict()
    assert before_state.keys() == after_state.keys()
    for key, value in before_state.items():
        assert torch.equal(value, after_state[key]), key
    assert {name: m.training for name, m in model.named_modules()} == before_modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == before_grad
    assert all(p.grad is None for p in model.parameters())


def test_seeded_and_loader_input() -> None:
    model = _prepared(TinyMLP, seed=7)
    batches = _batches(8)
    a = compute_sensitivity(model, batches, progress=False, seed=3)
    b = compute_sensitivity(model, iter(batches), progress=False, seed=3)
    c = compute_sensitivity(model, batches, progress=False, seed=4)
    assert a.layers == b.layers
    assert [layer.trace for layer in a] != [layer.trace for layer in c]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*map(torch.cat, zip(*batches))), batch_size=48
    )
    d = compute_sensitivity(model, loader, progress=False, seed=3)
    assert [layer.trace for layer in d] == pytest.approx([layer.trace for layer in a], rel=1e-5)
    single = compute_sensitivity(model, batches[0], progress=False)
    assert single.settings["num_batches"] == 1


def test_report_fields_and_perturbations() -> None:
    model = _prepared(TinyBNCNN, seed=9)
    report = compute_sensitivity(model, _batches(10), weight_bits=(2, 4, 8), progress=False)
    assert report.names == ("conv1", "conv2", "fc")
    conv2 = report["conv2"]
    assert (conv2.kind, conv2.n_params, conv2.out_channels, conv2.in_channels) == (
        "Conv2d",
        8 * 8 * 9,
        8,
        8,
    )
    weight = model.conv2.weight.detach()
    for bits in (2, 4, 8):
        expected = float(
            ((UniformQuantizer().fake_quantize_weight(weight, bits) - weight) ** 2).sum()
        )
        assert conv2.perturbation[bits] == pytest.approx(expected)
    assert conv2.perturbation[2] > conv2.perturbation[4] > conv2.perturbation[8]
    assert conv2.omega(2) == pytest.approx(conv2.trace * conv2.perturbation[2])
    assert conv2.omega(32) == 0.0
    with pytest.raises(ValueError, match="weight_bits including 3"):
        conv2.omega(3)
    assert report.settings["mode"] == "eval"
    table = report.to_table(bits=2)
    assert "conv2" in table and "omega@2b" in table


def test_quadratic_terms_match_exact_hessian() -> None:
    model = _prepared(TinyMLP, seed=16).eval()
    batches = _batches(17)
    report = compute_sensitivity(model, batches, weight_bits=(2, 4), max_probes=4, progress=False)
    for name in ("fc1", "out"):
        w0 = getattr(model, name).weight.detach().clone()

        def loss_of(weight: torch.Tensor, name: str = name) -> torch.Tensor:
            return torch.stack(
                [
                    F.cross_entropy(functional_call(model, {f"{name}.weight": weight}, (x,)), y)
                    for x, y in batches
                ]
            ).mean()

        hessian = torch.autograd.functional.hessian(loss_of, w0).reshape(w0.numel(), -1)
        for bits in (2, 4):
            delta = (UniformQuantizer().fake_quantize_weight(w0, bits) - w0).flatten()
            expected = 0.5 * float(delta @ hessian @ delta)
            assert report[name].quadratic[bits] == pytest.approx(expected, rel=1e-4)
            assert report[name].omega(bits, kind="quadratic") == report[name].quadratic[bits]


def test_pruning_quadratic_terms_match_exact_hessian() -> None:
    model = _prepared(TinyMLP, seed=16).eval()
    batches = _batches(17)
    report = compute_sensitivity(
        model, batches, widths=(0.5, 0.75, 1.0), max_probes=4, progress=False
    )
    name = "fc1"
    w0 = model.fc1.weight.detach().clone()

    def loss_of(weight: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [
                F.cross_entropy(functional_call(model, {f"{name}.weight": weight}, (x,)), y)
                for x, y in batches
            ]
        ).mean()

    hessian = torch.autograd.functional.hessian(loss_of, w0).reshape(w0.numel(), -1)
    order = torch.argsort(w0.abs().sum(dim=1), descending=True, stable=True)
    for width, kept in ((0.5, 12), (0.75, 18)):  # 24 output features
        delta = torch.zeros_like(w0)
        delta[order[kept:]] = -w0[order[kept:]]
        expected = 0.5 * float(delta.flatten() @ hessian @ delta.flatten())
        assert report[name].width_quadratic[width] == pytest.approx(expected, rel=1e-4)
    assert report[name].width_quadratic[1.0] == 0.0
    again = SensitivityReport.from_json(report.to_json())
    assert again[name].width_quadratic == report[name].width_quadratic


def test_activation_traces_match_exact() -> None:
    torch.manual_seed(11)
    model = TinyMLP().eval()
    batches = _batches(12, n=1, size=24)
    report = compute_sensitivity(model, batches, activations=True, progress=False)
    x, y = batches[0]
    # fc2's input is relu(fc1(x)); its Hessian is that of the rest of the network.
    z = F.relu(model.fc1(x.flatten(1))).detach()
    hessian = torch.autograd.functional.hessian(
        lambda a: F.cross_entropy(model.out(torch.tanh(model.fc2(a))), y), z
    )
    n = z.numel()
    exact_fc2 = float(hessian.reshape(n, n).diagonal().sum()) / z[0].numel()
    layer = report["fc2"]
    assert layer.act_numel == 24
    assert layer.act_trace == pytest.approx(exact_fc2, rel=0.05)
    assert report.has_activation_traces


def test_activation_quadratic_terms_match_exact_hessian() -> None:
    torch.manual_seed(21)
    model = TinyMLP().eval()
    batches = _batches(22, n=1, size=24)
    report = compute_sensitivity(model, batches, act_bits=(2, 4, 32), max_probes=4, progress=False)
    x, y = batches[0]
    z = F.relu(model.fc1(x.flatten(1))).detach()  # fc2's input activation
    hessian = torch.autograd.functional.hessian(
        lambda a: F.cross_entropy(model.out(torch.tanh(model.fc2(a))), y), z
    ).reshape(z.numel(), -1)
    for bits in (2, 4):
        spec = UniformQuantizer()
        scale, zero_point = spec.activation_qparams(z.min(), z.max(), bits)
        delta = (spec.fake_quantize_activation(z, bits, scale, zero_point) - z).flatten()
        expected = 0.5 * float(delta @ hessian @ delta)
        assert report["fc2"].act_quadratic[bits] == pytest.approx(expected, rel=1e-4)
    assert report["fc2"].act_quadratic[32] == 0.0
    assert report["fc2"].act_quadratic[2] > report["fc2"].act_quadratic[4]
    assert not report.has_activation_traces  # the terms do not need the trace estimator
    again = SensitivityReport.from_json(report.to_json())
    assert again["fc2"].act_quadratic == report["fc2"].act_quadratic


def test_top_eigenvalue_matches_exact() -> None:
    model = _prepared(TinyMLP, seed=13).eval()
    batches = _batches(14, n=1)
    report = compute_sensitivity(
        model, batches, eigenvalues=True, eig_max_iter=300, eig_tol=1e-7, progress=False
    )
    x, y = batches[0]
    w0 = model.out.weight.detach().clone()
    hessian = torch.autograd.functional.hessian(
        lambda w: F.cross_entropy(functional_call(model, {"out.weight": w}, (x,)), y), w0
    ).reshape(w0.numel(), w0.numel())
    eigs = torch.linalg.eigvalsh(hessian)
    top = float(eigs[eigs.abs().argmax()])
    assert report["out"].eigenvalue == pytest.approx(top, rel=0.02)


def test_hutchinson_on_explicit_matrices() -> None:
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(200, 200, generator=gen))[0]
    spectrum = 1.0 / torch.arange(1, 201, dtype=torch.float32) ** 2
    matrix = basis @ torch.diag(spectrum) @ basis.T
    small = torch.diag(torch.arange(1.0, 11.0))
    hvps = [lambda v: matrix @ v, lambda v: small @ v, None]
    shapes = [torch.zeros(200), torch.zeros(10), torch.zeros(3)]
    stats = hutchinson_traces(
        hvps,
        shapes,
        target_rel_err=0.01,
        min_probes=8,
        max_probes=2000,
        generator=gen,
        deflation_rank=8,
    )
    assert stats[0].mean == pytest.approx(float(spectrum.sum()), rel=0.05)
    assert stats[0].stderr <= 0.0101 * abs(stats[0].mean)
    assert stats[1].exact and stats[1].mean == pytest.approx(55.0) and stats[1].stderr == 0
    assert stats[2].mean == 0.0 and stats[2].stderr == 0.0
    plain = hutchinson_traces(
        hvps[:1], shapes[:1], target_rel_err=0.01, min_probes=8, max_probes=50, generator=gen
    )
    assert plain[0].count == 50  # the cap binds: plain Hutchinson is far noisier here
    eig = power_iteration(
        lambda vs: [None if v is None else matrix @ v for v in vs],
        shapes[:1],
        max_iter=500,
        tol=1e-8,
        generator=gen,
    )
    assert eig[0] == pytest.approx(1.0, rel=1e-3)


def test_unused_layer_has_zero_trace() -> None:
    class WithSpare(TinyMLP):
        def __init__(self) -> None:
            super().__init__()
            self.spare = nn.Linear(3, 3)

    report = compute_sensitivity(WithSpare(), _batches(15), progress=False)
    assert report["spare"].trace == 0.0 and report["spare"].trace_stderr == 0.0


def test_json_and_study_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    layers = tuple(
        LayerSensitivity(
            f"block{i}.conv",
            "Conv2d",
            100 * (i + 1),
            8,
            8,
            1.0 / (i + 1),
            0.01,
            64,
            {2: 1.5, 4: 0.1, 8: 0.001},
            act_trace=0.5,
            act_trace_stderr=0.01,
            act_numel=64,
        )
        for i in range(6)
    )
    report = SensitivityReport(layers=layers, settings={"seed": 0})
    assert SensitivityReport.from_json(report.to_json()) == report
    json.dumps(report.to_dict())  # plain JSON types only
    monkeypatch.setattr(report_module, "_MAX_ATTR_CHARS", 400)  # force several attrs
    study = optuna.create_study()
    assert SensitivityReport.load_from_study(study) is None
    report.save_to_study(study)
    assert any(key.endswith(":1") for key in study.user_attrs)
    loaded = SensitivityReport.load_from_study(study)
    assert loaded == report
    with pytest.raises(ValueError, match="not valid JSON"):
        SensitivityReport.from_json("{")


def test_input_validation() -> None:
    model = TinyMLP()
    with pytest.raises(ValueError, match="min_probes"):
        compute_sensitivity(model, _batches(0), min_probes=1, progress=False)
    with pytest.raises(ValueError, match="weight_bits"):
        compute_sensitivity(model, _batches(0), weight_bits=(0, 4), progress=False)
    with pytest.raises(ValueError, match="not quantizable layers"):
        compute_sensitivity(model, _batches(0), layers=["nope"], progress=False)
    with pytest.raises(ValueError, match="no batch"):
        compute_sensitivity(model, [], progress=False)
