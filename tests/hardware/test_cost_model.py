"""Hand-computed costs, monotonicity properties, vectorized == scalar, resources, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from optuna_kmtpe.config import ALLOWED_BITS
from optuna_kmtpe.config import LayerConfig
from optuna_kmtpe.config import QuantConfig
from optuna_kmtpe.hardware import DEVICE_PRESETS
from optuna_kmtpe.hardware import DSP_KINDS
from optuna_kmtpe.hardware import DSPKind
from optuna_kmtpe.hardware import EnergyParams
from optuna_kmtpe.hardware import FPGADevice
from optuna_kmtpe.hardware import FPGAModel
from optuna_kmtpe.hardware import LayerShape
from optuna_kmtpe.hardware import NetworkShape
from optuna_kmtpe.hardware import config_arrays
from optuna_kmtpe.hardware import packing_factor


TOY = FPGADevice(
    name="toy",
    part="toy",
    dsp_kind="DSP48E2",
    dsp_count=16,
    bram36=10,
    clock_hz=100e6,
    dram_bandwidth=1e9,
    static_power_w=0.5,
)


def _conv(name: str, cin: int, cout: int, hw: int, producer: str | None = None, **kw):
    return LayerShape(
        name=name,
        kind="conv2d",
        in_channels=cin,
        out_channels=cout,
        input_shape=(cin, hw, hw),
        output_shape=(cout, hw, hw),
        kernel=(3, 3),
        stride=(1, 1),
        producer=producer,
        **kw,
    )


def _mixed_network() -> NetworkShape:
    """Every layer kind, a flatten multiplier, a producer-less (residual-like) layer."""
    return NetworkShape(
        [
            _conv("c1", 3, 16, 8),
            _conv("c2", 16, 24, 8, producer="c1"),
            LayerShape(
                name="dw",
                kind="depthwise",
                in_channels=24,
                out_channels=48,
                input_shape=(24, 8, 8),
                output_shape=(48, 4, 4),
                kernel=(3, 3),
                stride=(2, 2),
                groups=24,
                producer="c2",
            ),
            LayerShape(
                name="g",
                kind="grouped",
                in_channels=48,
                out_channels=32,
                input_shape=(48, 4, 4),
                output_shape=(32, 4, 4),
                kernel=(1, 1),
                groups=4,
                producer="dw",
            ),
            LayerShape(
                name="c1d",
                kind="conv1d",
                in_channels=32,
                out_channels=20,
                input_shape=(32, 16),
                output_shape=(20, 16),
                kernel=(3,),
                producer=None,
            ),
            LayerShape(
                name="fc",
                kind="linear",
                in_channels=320,
                out_channels=10,
                input_shape=(320,),
                output_shape=(10,),
                producer="c1d",
                input_multiplier=16,
            ),
        ]
    )


def _resnet_like(n_layers: int = 20) -> NetworkShape:
    layers = [_conv("l0", 3, 16, 32)]
    channels, hw = 16, 32
    for i in range(1, n_layers - 1):
        if i in (7, 13):
            channels, hw = channels * 2, hw // 2
        prev = layers[-1]
        cin = prev.out_channels
        layers.append(_conv(f"l{i}", cin, channels, hw, producer=prev.name))
    layers.append(
        LayerShape(
            name="fc",
            kind="linear",
            in_channels=channels,
            out_channels=10,
            input_shape=(channels,),
            output_shape=(10,),
            producer=layers[-1].name,
        )
    )
    return NetworkShape(layers)


# --------------------------------------------------------------------------------------------
# Hand-computed cases


def test_single_conv_matches_hand_computation() -> None:
    conv = _conv("conv", 3, 4, 4)
    model = FPGAModel(device=TOY, rows=2, cols=2, pixel_parallel=1)
    report = model.evaluate([conv], QuantConfig({"conv": LayerConfig(8, 8, 1.0)}))
    layer = report.layers[0]
    # DSP48E2 at 8 bits packs p = 2 products along the output channels.
    assert layer.packing == 2.0
    # GEMM: K = 3 * 3*3 = 27, Nc = 4, M = 4*4 = 16; MACs = 16 * 27 * 4 = 1728.
    assert layer.macs == 1728
    # Tiles = ceil(27 / 2 rows) * ceil(4 / (2 cols * p 2)) = 14 * 1.
    assert layer.tiles == 14
    # Cycles = 14 * (M 16 + fill/drain 2 + 2 - 2 + no weight load with double buffering) = 252.
    assert layer.cycles == 252
    assert layer.utilization == pytest.approx(1728 / (252 * 2 * 2 * 2))
    assert layer.compute_s == pytest.approx(252 / 100e6)
    # DRAM bits: weights 108 * 8 = 864, inputs 3*16 * 8 = 384, outputs 4*16 * 32 (last
    # layer, output_bits=32) = 2048; 3296 bits = 412 bytes; 412 B / 1 GB/s = 412 ns.
    assert layer.dram_bytes == 412
    assert layer.memory_s == pytest.approx(412e-9)
    # Roofline: max(2.52 us, 0.412 us), compute bound.
    assert layer.latency_s == pytest.approx(2.52e-6)
    assert layer.bound == "compute"
    # Accumulator: 8 + 8 + ceil(log2 27) = 21 bits.
    assert layer.accumulator_bits == 21
    # MAC: (0.2 * 8*8/64 + 0.0035 * 21) pJ * 14 (FPGA factor) = 3.829 pJ; * 1728 = 6616.512 pJ.
    assert layer.mac_energy_j == pytest.approx(6616.512e-12)
    # On-chip bits: weights 864 + inputs 1 group * 1 column tile * 16 * 27 * 8 = 3456
    # + partial sums 16 * 4 * 21 * (2 * 14 - 1) = 36288; total 40608 bits * 5/32 pJ = 6345 pJ.
    assert layer.bram_energy_j == pytest.approx(6345e-12)
    # DRAM: 3296 bits * 20 pJ = 65920 pJ. Static: 0.5 W * 2.52 us = 1.26 uJ.
    assert layer.dram_energy_j == pytest.approx(65920e-12)
    assert layer.static_energy_j == pytest.approx(1.26e-6)
    assert report.energy_j == pytest.approx((6616.512 + 6345 + 65920) * 1e-12 + 1.26e-6)
    # BRAM18: input 2 banks of 24 x 8 bits -> 2; partial sums 2 buffers * 2 banks of
    # (16 * 2) x 21 bits -> 4; weights 2 buffers * 2 banks of (2 * 2) x 8 bits -> 4.
    # 10 halves = 5 BRAM36.
    assert layer.bram18 == 10
    assert report.bram_used == 5
    # Pipeline: packed work 1728 / 2 = 864 cycles on 4 DSPs at 100 MHz = 2.16 us (DRAM 412 ns).
    assert report.throughput_ips == pytest.approx(1 / 2.16e-6)
    assert report.size_bits == 864 and report.bops == 1728 * 64 and report.macs == 1728
    assert report.dsp_used == 4 and report.feasible and report.violations == {}


def test_single_linear_matches_hand_computation() -> None:
    fc = LayerShape(
        name="fc",
        kind="linear",
        in_channels=10,
        out_channels=6,
        input_shape=(10,),
        output_shape=(6,),
    )
    model = FPGAModel(device=TOY, rows=4, cols=3, pixel_parallel=1, double_buffer=False)
    report = model.evaluate([fc], QuantConfig({"fc": LayerConfig(4, 4, 1.0)}), batch=2)
    layer = report.layers[0]
    # p = 4 at 4 bits; K = 10, Nc = 6, M = 1 position * batch 2.
    assert layer.packing == 4.0
    assert layer.macs == 120
    # Tiles = ceil(10 / 4) * ceil(6 / (3 * 4)) = 3; cycles = 3 * (2 + 4 + 3 - 2 + 4 rows of
    # weight loading without double buffering) = 33.
    assert layer.tiles == 3
    assert layer.cycles == 33
    # DRAM: weights 60 * 4 = 240, inputs 2 * 10 * 4 = 80, outputs 2 * 6 * 32 = 384 bits
    # = 88 bytes; without double buffering time = 330 ns + 88 ns.
    assert layer.dram_bytes == 88
    assert layer.latency_s == pytest.approx(330e-9 + 88e-9)
    # Accumulator 4 + 4 + ceil(log2 10) = 12; MAC (0.2 * 16/64 + 0.0035 * 12) * 14 = 1.288 pJ.
    assert layer.accumulator_bits == 12
    assert layer.mac_energy_j == pytest.approx(120 * 1.288e-12)
    # On-chip: 240 + 2 * 10 * 4 + 2 * 6 * 12 * (2 * 3 - 1) = 240 + 80 + 720 = 1040 bits.
    assert layer.bram_energy_j == pytest.approx(1040 * 5 / 32 * 1e-12)
    assert layer.dram_energy_j == pytest.approx(704 * 20e-12)
    expected = (154.56 + 162.5 + 14080) * 1e-12 + 0.5 * 418e-9
    assert report.energy_j == pytest.approx(expected)
    assert report.energy_per_inference_j == pytest.approx(expected / 2)
    # BRAM18 (single buffers): input 4 banks of 5 x 4 bits, partial sums 3 banks of 8 x 12,
    # weights 3 banks of 16 x 4: 4 + 3 + 3 = 10 halves = 5 BRAM36.
    assert report.bram_used == 5
    # Pipeline: 120 / 4 = 30 packed MACs on 12 DSPs = 25 ns; DRAM 88 ns -> 2 inputs per 88 ns.
    assert report.throughput_ips == pytest.approx(2 / 88e-9)
    assert report.bops == 60 * 16 and report.size_bits == 240


def test_dsp58_packs_along_the_reduction() -> None:
    fc = LayerShape(
        name="fc",
        kind="linear",
        in_channels=10,
        out_channels=6,
        input_shape=(10,),
        output_shape=(6,),
    )
    versal = FPGADevice(
        name="v",
        part="v",
        dsp_kind="DSP58",
        dsp_count=16,
        bram36=10,
        clock_hz=1e8,
        dram_bandwidth=1e9,
        static_power_w=0.0,
    )
    model = FPGAModel(device=versal, rows=4, cols=3, pixel_parallel=1)
    layer = model.evaluate([fc], QuantConfig({"fc": LayerConfig(8, 8, 1.0)})).layers[0]
    # 3-element dot product: ceil(10 / (4 * 3)) = 1 reduction tile, ceil(6 / 3) = 2 column
    # tiles; cycles = 2 * (1 + 4 + 3 - 2) = 12.
    assert layer.packing == 3.0
    assert layer.tiles == 2
    assert layer.cycles == 12


def test_pixel_parallel_divides_positions() -> None:
    conv = _conv("conv", 3, 4, 4)
    config = QuantConfig({"conv": LayerConfig(8, 8, 1.0)})
    one = FPGAModel(device=TOY, rows=2, cols=2, pixel_parallel=1).evaluate([conv], config)
    four = FPGAModel(device=TOY, rows=2, cols=2, pixel_parallel=4).evaluate([conv], config)
    # 16 positions over 4 copies: 14 * (4 + 2) = 84 cycles instead of 252.
    assert four.layers[0].cycles == 84
    assert four.dsp_used == 16 and one.layers[0].cycles == 252


# --------------------------------------------------------------------------------------------
# Packing steps


@pytest.mark.parametrize(
    ("kind", "variant", "expected"),
    [
        ("DSP48E2", "standard", {4: 4.0, 8: 2.0, 15: 1.0, 16: 1.0, 32: 1 / 3}),
        ("DSP48E2", "overpack", {4: 6.0, 8: 2.0, 15: 1.0, 16: 1.0, 32: 1 / 3}),
        ("DSP48E1", "standard", {4: 4.0, 8: 2.0, 15: 1.0, 16: 1.0, 32: 1 / 3}),
        ("DSP58", "standard", {4: 3.0, 8: 3.0, 15: 1.0, 16: 1.0, 32: 1.0}),
        ("DSP48E2", "none", {4: 1.0, 8: 1.0, 15: 1.0, 16: 1.0, 32: 1 / 3}),
    ],
)
def test_packing_steps_exactly_at_thresholds(kind: str, variant: str, expected: dict) -> None:
    thresholds = sorted(expected)
    for bw in range(1, 33):
        for ba in range(1, 33):
            widest = max(bw, ba)
            step = next(t for t in thresholds if widest <= t)
            assert packing_factor(kind, bw, ba, variant=variant) == pytest.approx(
                expected[step]
            ), (bw, ba)


def test_a_dsp_kind_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    toy9 = DSPKind(
        name="TOY9",
        multiplier=(18, 18),
        packing_axis="reduction",
        standard=((2, 8.0), (4, 2.0)),
        float32=0.5,
    )
    monkeypatch.setitem(DSP_KINDS, "TOY9", toy9)
    model = FPGAModel(device=dataclasses.replace(TOY, dsp_kind="TOY9"), rows=2, cols=2)
    assert model.packing_axis == "reduction"
    assert [model.packing(b, 1) for b in (2, 3, 9, 16, 32)] == [8.0, 2.0, 1.0, 1.0, 0.5]
    assert packing_factor("TOY9", 2, 2, variant="overpack") == 8.0
    assert packing_factor("TOY9", 2, 2, variant="none") == 1.0
    layer = model.evaluate(
        [_conv("c", 3, 4, 4)], QuantConfig.uniform(["c"], weight_bits=2, act_bits=2)
    ).layers[0]
    assert layer.packing == 8.0
    with pytest.raises(ValueError, match="packing steps"):
        DSPKind(
            name="rising",
            multiplier=(18, 18),
            packing_axis="output",
            standard=((4, 2.0), (8, 4.0)),
            float32=1.0,
        )


def test_latency_steps_only_where_packing_steps() -> None:
    conv = _conv("conv", 64, 128, 8)
    model = FPGAModel(device="zcu102", rows=16, cols=16, pixel_parallel=1)
    cycles = {
        b: model.evaluate([conv], QuantConfig({"conv": LayerConfig(b, b, 1.0)})).layers[0].cycles
        for b in (2, 3, 4, 5, 6, 7, 8)
    }
    assert cycles[5] == cycles[6] == cycles[7] == cycles[8]
    assert cycles[2] == cycles[3] == cycles[4]
    # 128 outputs: ceil(128 / 32) = 4 column tiles at 8 bits, ceil(128 / 64) = 2 at 4 bits.
    assert cycles[8] == 2 * cycles[4]


# --------------------------------------------------------------------------------------------
# Properties over random configs

_INT_BITS = np.array([b for b in ALLOWED_BITS])
_WIDTHS = np.array([0.25, 0.5, 0.75, 1.0])


def _random_configs(rng: np.random.Generator, n: int, n_layers: int):
    wb = rng.choice(_INT_BITS, size=(n, n_layers))
    ab = rng.choice(_INT_BITS, size=(n, n_layers))
    wd = rng.choice(_WIDTHS, size=(n, n_layers))
    return wb, ab, wd


def _lower(rng: np.random.Generator, values: np.ndarray, choices: np.ndarray) -> np.ndarray:
    lowered = values.copy()
    rows = np.arange(values.shape[0])
    cols = rng.integers(0, values.shape[1], size=values.shape[0])
    current = values[rows, cols]
    for i, (r, c) in enumerate(zip(rows, cols)):
        smaller = choices[choices < current[i]]
        lowered[r, c] = rng.choice(smaller) if smaller.size else current[i]
    return lowered


_MODELS = [pytest.param(dict(device=name), id=name) for name in sorted(DEVICE_PRESETS)] + [
    pytest.param(dict(device="zcu102", packing="overpack", double_buffer=False), id="overpack"),
    pytest.param(dict(device="pynq-z2", packing="none", rows=4, cols=8), id="nopack"),
]


@pytest.mark.parametrize("kwargs", _MODELS)
def test_lowering_bits_never_increases_latency_or_energy(kwargs: dict) -> None:
    rng = np.random.default_rng(0)
    model = FPGAModel(**kwargs)
    for network in (_resnet_like(), _mixed_network()):
        wb, ab, wd = _random_configs(rng, 400, len(network))
        base = model.evaluate_batch(network, wb, ab, wd)
        for lowered_w, lowered_a in (
            (_lower(rng, wb, _INT_BITS), ab),
            (wb, _lower(rng, ab, _INT_BITS)),
        ):
            new = model.evaluate_batch(network, lowered_w, lowered_a, wd)
            for key in ("latency_s", "energy_j", "size_bits", "bops"):
                assert np.all(new[key] <= base[key] * (1 + 1e-12)), key
            assert np.all(new["throughput_ips"] >= base["throughput_ips"] * (1 - 1e-12))


@pytest.mark.parametrize("kwargs", _MODELS)
def test_narrowing_never_increases_cost(kwargs: dict) -> None:
    rng = np.random.default_rng(1)
    model = FPGAModel(**kwargs)
    for network in (_resnet_like(), _mixed_network()):
        wb, ab, wd = _random_configs(rng, 400, len(network))
        base = model.evaluate_batch(network, wb, ab, wd)
        new = model.evaluate_batch(network, wb, ab, _lower(rng, wd, _WIDTHS))
        for key in ("latency_s", "energy_j", "size_bits", "bops", "macs", "bram_used"):
            assert np.all(new[key] <= base[key] * (1 + 1e-12)), key


@pytest.mark.parametrize("kwargs", _MODELS)
def test_vectorized_equals_per_config(kwargs: dict) -> None:
    rng = np.random.default_rng(2)
    model = FPGAModel(**kwargs)
    for network in (_resnet_like(), _mixed_network()):
        wb, ab, wd = _random_configs(rng, 25, len(network))
        batch = int(rng.integers(1, 4))
        out = model.evaluate_batch(network, wb, ab, wd, batch=batch, chunk_size=7)
        for i in range(wb.shape[0]):
            config = QuantConfig(
                {
                    name: LayerConfig(int(wb[i, j]), int(ab[i, j]), float(wd[i, j]))
                    for j, name in enumerate(network.names)
                }
            )
            report = model.evaluate(network, config, batch=batch)
            for key in (
                "latency_s",
                "throughput_ips",
                "sequential_throughput_ips",
                "energy_j",
                "energy_per_inference_j",
                "size_bits",
                "bops",
                "macs",
                "bram_used",
                "dsp_used",
                "feasible",
            ):
                # One formula on arrays: a config alone and among others, bit for bit.
                assert out[key][i] == getattr(report, key), key
            assert out["layer_latency_s"][i].tolist() == [
                layer.latency_s for layer in report.layers
            ]


def test_missing_layers_are_float_and_cost_more() -> None:
    network = _resnet_like()
    model = FPGAModel(device="zcu102")
    float_report = model.evaluate(network, QuantConfig({}))
    int8 = model.evaluate(network, QuantConfig.uniform(network.names, weight_bits=8, act_bits=8))
    assert all(layer.weight_bits == 32 for layer in float_report.layers)
    assert float_report.latency_s > int8.latency_s
    assert float_report.energy_j > int8.energy_j


# --------------------------------------------------------------------------------------------
# Resources


def test_too_many_dsps_is_infeasible_with_amounts() -> None:
    network = _resnet_like()
    model = FPGAModel(device="zcu102", rows=60, cols=60, pixel_parallel=1)
    report = model.evaluate(network, QuantConfig.uniform(network.names))
    assert not report.feasible
    assert report.dsp_used == 3600 and report.dsp_available == 2520
    assert report.violations == {"dsp": pytest.approx(3600 / 2520 - 1)}
    assert any("3600" in v and "2520" in v for v in report.violation_messages)
    assert dict(report.violations)["dsp"] > 0  # feeds Optuna constraints as is
    out = model.evaluate_batch(network, np.full((3, 20), 8), np.full((3, 20), 8))
    assert not out["feasible"].any()


def test_too_much_bram_is_infeasible_with_amounts() -> None:
    network = _resnet_like()
    small = FPGADevice(
        name="small",
        part="x",
        dsp_kind="DSP48E2",
        dsp_count=256,
        bram36=20,
        clock_hz=2e8,
        dram_bandwidth=4e9,
        static_power_w=0.1,
    )
    model = FPGAModel(device=small)
    report = model.evaluate(network, QuantConfig.uniform(network.names))
    assert report.bram_used > 20 and not report.feasible
    assert report.violations == {"bram": pytest.approx(report.bram_used / 20 - 1)}
    assert any(
        f"{report.bram_used} BRAM36" in v and "has 20" in v for v in report.violation_messages
    )
    fits = FPGAModel(device="zcu102").evaluate(network, QuantConfig.uniform(network.names))
    assert fits.feasible and fits.violations == {} and fits.violation_messages == ()


def test_report_serializes_to_json() -> None:
    network = _mixed_network()
    report = FPGAModel(device="vck190").evaluate(
        network, QuantConfig.uniform(network.names, weight_bits=4, act_bits=8, width=0.5)
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["layers"][0]["name"] == "c1"
    assert data["device"] == "vck190" and len(data["layers"]) == len(network)


# --------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_raises_value_error_naming_the_fix() -> None:
    network = _mixed_network()
    with pytest.raises(ValueError, match="presets"):
        FPGAModel(device="no-such-board")
    with pytest.raises(ValueError, match="rows must be a positive int"):
        FPGAModel(device="zcu102", rows=0)
    with pytest.raises(ValueError, match="cols must be a positive int"):
        FPGAModel(device="zcu102", cols=-3)
    with pytest.raises(ValueError, match="packing"):
        FPGAModel(device="zcu102", packing="magic")
    with pytest.raises(ValueError, match="positive number of products"):
        FPGAModel(device="zcu102", packing=lambda bw, ba: 0.0)
    model = FPGAModel(device="zcu102")
    ones = np.full((2, len(network)), 8)
    with pytest.raises(ValueError, match=r"1\.\.32"):
        model.evaluate_batch(network, ones * 0, ones)
    with pytest.raises(ValueError, match=r"1\.\.32"):
        model.evaluate_batch(network, ones, ones + 25)
    with pytest.raises(ValueError, match="shape"):
        model.evaluate_batch(network, ones[:, :2], ones)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        model.evaluate_batch(network, ones, ones, ones * 0.0)
    with pytest.raises(ValueError, match="not quantizable layers"):
        model.evaluate(network, QuantConfig.uniform(["nope"]))
    with pytest.raises(ValueError, match="batch must be a positive int"):
        model.evaluate(network, QuantConfig({}), batch=0)
    with pytest.raises(ValueError, match="1..32"):
        packing_factor("DSP48E2", 33, 8)
    with pytest.raises(ValueError, match="DSP kind"):
        packing_factor("DSP99", 8, 8)
    with pytest.raises(ValueError, match="fp16_mac_pj"):
        EnergyParams(int_mult_8x8_pj=5.0)
    with pytest.raises(ValueError, match="producer"):
        NetworkShape([_conv("a", 3, 8, 4, producer="missing")])
    with pytest.raises(ValueError, match="in_channels"):
        NetworkShape([_conv("a", 3, 8, 4), _conv("b", 7, 8, 4, producer="a")])


def test_config_arrays_feed_the_vectorized_path() -> None:
    network = _mixed_network()
    configs = [
        QuantConfig({"c1": LayerConfig(4, 8, 0.5), "fc": LayerConfig(2, 2, 1.0)}),
        QuantConfig.uniform(network.names, weight_bits=3, act_bits=6, width=0.75),
        QuantConfig({}),
    ]
    wb, ab, wd = config_arrays(network, configs)
    assert wb.shape == (3, len(network)) and wb[2].tolist() == [32] * len(network)
    model = FPGAModel(device="ultra96")
    out = model.evaluate_batch(network, wb, ab, wd)
    for i, config in enumerate(configs):
        assert out["energy_j"][i] == pytest.approx(model.evaluate(network, config).energy_j)
    with pytest.raises(ValueError, match="not quantizable layers"):
        config_arrays(network, [QuantConfig.uniform(["zzz"])])
