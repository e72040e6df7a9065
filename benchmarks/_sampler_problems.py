"""Benchmark problems and a runner shared by the sampler benchmarks (numpy only).

Three groups:

- ``a``: standard continuous and mixed-integer test functions (known optimum 0 after shifting);
- ``b``: flat, plateau-heavy landscapes with many tied values, including per-layer bit-width
  problems shaped like mixed-precision search;
- ``c``: 2- and 3-objective problems (ZDT1, ZDT2, DTLZ2 and bit-width trade-offs).

The problem definitions were fixed before the sampler variants were compared and are not tuned
to any sampler. Fixed problem data (layer sensitivities and sizes) come from a fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import math
from typing import Any

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.trial import TrialState


Params = dict[str, Any]


_LEGACY_FAMILY = {
    "mixed_int7": "mixed_int",
    "categorical7": "categorical",
}
_GROUP_FAMILY = {"a": "continuous", "b": "flat", "c": "multi_objective"}


@dataclass(frozen=True)
class Problem:
    """One benchmark problem (all objectives minimized).

    ``group`` is the old coarse label ("a": single objective, "b": flat, "c": several
    objectives; ``compare`` treats "c" as hypervolume); ``family`` is the finer label the
    quality report groups by (continuous, mixed_int, categorical, conditional, noisy, sklearn,
    flat, multi_objective, constrained). ``optimum``: the known optimal value, if any.
    ``noise``: standard deviation of Gaussian noise added to the observed value (the curve
    reports the noise-free value of the best observed trial). ``constraints``: constraint values
    of a configuration, feasible when all are <= 0 (passed to samplers as ``constraints_func``).
    """

    name: str
    group: str  # "a", "b" or "c"
    suggest: Callable[[optuna.Trial], Params]
    evaluate: Callable[[Params], float | tuple[float, ...]]
    n_trials: int
    directions: tuple[str, ...] = ("minimize",)
    reference_point: tuple[float, ...] | None = None  # MO hypervolume reference (minimization)
    extra: dict[str, Any] = field(default_factory=dict)
    family: str = ""
    optimum: float | None = None
    noise: float = 0.0
    constraints: Callable[[Params], Sequence[float]] | None = None

    def __post_init__(self) -> None:
        if not self.family:
            family = _LEGACY_FAMILY.get(self.name, _GROUP_FAMILY.get(self.group, self.group))
            object.__setattr__(self, "family", family)

    def objective(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        return self.evaluate(self.suggest(trial))


def _floats(n: int, low: float, high: float) -> Callable[[optuna.Trial], Params]:
    return lambda t: {f"x{i}": t.suggest_float(f"x{i}", low, high) for i in range(n)}


def _vec(p: Params, prefix: str = "x") -> np.ndarray:
    return np.array([p[k] for k in sorted(p) if k.startswith(prefix)], dtype=float)


# --- group (a) -------------------------------------------------------------------------------


def _sphere(x: np.ndarray) -> float:
    return float(np.sum((x - 0.7) ** 2))


def _rosenbrock(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _rastrigin(x: np.ndarray) -> float:
    z = x - 0.3
    return float(10 * z.size + np.sum(z**2 - 10 * np.cos(2 * np.pi * z)))


def ackley(z: np.ndarray) -> float:
    """Ackley's function, minimum 0 at the origin (shared with the broad suite)."""
    n = z.size
    return float(
        -20 * np.exp(-0.2 * np.sqrt(np.sum(z**2) / n))
        - np.exp(np.sum(np.cos(2 * np.pi * z)) / n)
        + 20
        + math.e
    )


def _ackley(x: np.ndarray) -> float:
    return ackley(x - 0.5)


def _styblinski_tang(x: np.ndarray) -> float:
    return float(0.5 * np.sum(x**4 - 16 * x**2 + 5 * x) + 39.16616570377142 * x.size)


def _levy(x: np.ndarray) -> float:
    w = 1 + (x - 1) / 4
    return float(
        np.sin(np.pi * w[0]) ** 2
        + np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2))
        + (w[-1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[-1]) ** 2)
    )


def _mixed_int_suggest(t: optuna.Trial) -> Params:
    p: Params = {f"i{k}": t.suggest_int(f"i{k}", -10, 10) for k in range(3)}
    p.update({f"x{k}": t.suggest_float(f"x{k}", -5, 5) for k in range(3)})
    p["lr"] = t.suggest_float("lr", 1e-5, 1e-1, log=True)
    return p


def _mixed_int(p: Params) -> float:
    ints = np.array([p[f"i{k}"] for k in range(3)], dtype=float)
    xs = _vec(p)
    return float(
        np.sum((ints - 3) ** 2) + np.sum((xs + 1.2) ** 2) + math.log10(p["lr"] / 1e-3) ** 2
    )


def _categorical_suggest(t: optuna.Trial) -> Params:
    p: Params = {
        f"c{k}": t.suggest_categorical(f"c{k}", ["relu", "gelu", "tanh", "silu"]) for k in range(3)
    }
    p.update({f"x{k}": t.suggest_float(f"x{k}", -3, 3) for k in range(3)})
    p["n"] = t.suggest_int("n", 1, 256, log=True)
    return p


_CAT_COST = {"relu": 0.6, "gelu": 0.0, "tanh": 1.5, "silu": 0.3}


def _categorical(p: Params) -> float:
    xs = _vec(p)
    return float(
        sum(_CAT_COST[p[f"c{k}"]] for k in range(3))
        + np.sum((xs - 0.5) ** 2)
        + (math.log2(p["n"]) - 5) ** 2 / 4
    )


# --- group (b): flat landscapes and bit-width search ------------------------------------------

_LAYER_RNG = np.random.default_rng(20231001)
_SENSITIVITY = np.exp(_LAYER_RNG.uniform(-3, 3, 16))  # Hessian-trace-like spread over 2.6 decades
_LAYER_SIZE = _LAYER_RNG.integers(2, 65, 16) * 1000  # parameters per layer
_BITS = (2, 3, 4, 5, 6, 8)


def _bits_suggest(n_layers: int, with_width: bool = False) -> Callable[[optuna.Trial], Params]:
    def suggest(t: optuna.Trial) -> Params:
        p: Params = {
            f"b{i:02d}": t.suggest_categorical(f"b{i:02d}", _BITS) for i in range(n_layers)
        }
        if with_width:
            p.update(
                {
                    f"w{i:02d}": t.suggest_categorical(f"w{i:02d}", (0.25, 0.5, 0.75, 1.0))
                    for i in range(n_layers)
                }
            )
        return p

    return suggest


def _bits_terms(p: Params, n_layers: int, with_width: bool) -> tuple[float, float]:
    bits = np.array([p[f"b{i:02d}"] for i in range(n_layers)], dtype=float)
    s = _SENSITIVITY[:n_layers]
    size = _LAYER_SIZE[:n_layers]
    width = (
        np.array([p[f"w{i:02d}"] for i in range(n_layers)], dtype=float)
        if with_width
        else np.ones(n_layers)
    )
    # Quantization noise power ~ 4^-b weighted by sensitivity; pruning error ~ (1 - w)^2.
    error = float(np.sum(s * (4.0 ** (-bits) + 0.05 * (1 - width) ** 2)) / np.sum(s * 4.0**-2))
    rel_size = float(np.sum(size * width * bits) / np.sum(size * 8))
    return error, rel_size


def _bits_rounded(
    n_layers: int, grid: float, with_width: bool = False
) -> Callable[[Params], float]:
    def evaluate(p: Params) -> float:
        error, rel_size = _bits_terms(p, n_layers, with_width)
        # An accuracy-like score read at a coarse resolution: many configurations tie.
        return float(np.round((error + rel_size) / grid) * grid)

    return evaluate


def _bits_budget(n_layers: int) -> Callable[[Params], float]:
    def evaluate(p: Params) -> float:
        error, rel_size = _bits_terms(p, n_layers, False)
        accuracy_drop = np.round(error * 100) / 100  # percent resolution
        over = max(0.0, rel_size - 0.45)
        return float(accuracy_drop + (1.0 + np.ceil(over * 20) / 20 if over > 0 else 0.0))

    return evaluate


def _step_sphere(x: np.ndarray) -> float:
    return float(np.sum(np.floor(np.abs(x - 0.3) + 0.5) ** 2))


def _plateau_ackley(x: np.ndarray) -> float:
    return float(np.floor(_ackley(x)))


# --- group (c): multi-objective ---------------------------------------------------------------


def _zdt1(x: np.ndarray) -> tuple[float, float]:
    g = 1 + 9 * np.mean(x[1:])
    return float(x[0]), float(g * (1 - math.sqrt(x[0] / g)))


def _zdt2(x: np.ndarray) -> tuple[float, float]:
    g = 1 + 9 * np.mean(x[1:])
    return float(x[0]), float(g * (1 - (x[0] / g) ** 2))


def _dtlz2(x: np.ndarray) -> tuple[float, float, float]:
    g = float(np.sum((x[2:] - 0.5) ** 2))
    a, b = x[0] * math.pi / 2, x[1] * math.pi / 2
    return (
        (1 + g) * math.cos(a) * math.cos(b),
        (1 + g) * math.cos(a) * math.sin(b),
        (1 + g) * math.sin(a),
    )


def _bits_mo(n_layers: int, three: bool) -> Callable[[Params], tuple[float, ...]]:
    def evaluate(p: Params) -> tuple[float, ...]:
        error, rel_size = _bits_terms(p, n_layers, True)
        e = float(np.round(min(error, 2.0) / 2.0, 3))
        if not three:
            return e, rel_size
        width = np.array([p[f"w{i:02d}"] for i in range(n_layers)])
        bits = np.array([p[f"b{i:02d}"] for i in range(n_layers)])
        # Latency of a bit-serial-ish accelerator: packing steps at 4 and 8 bits.
        packs = np.where(bits <= 4, 0.5, 1.0)
        latency = float(
            np.sum(_LAYER_SIZE[:n_layers] * width * packs) / np.sum(_LAYER_SIZE[:n_layers])
        )
        return e, rel_size, latency

    return evaluate


def problems() -> list[Problem]:
    def f(fn: Callable[[np.ndarray], Any]) -> Callable[[Params], Any]:
        return lambda p: fn(_vec(p))

    listed = [
        Problem("sphere5", "a", _floats(5, -5, 5), f(_sphere), 100),
        Problem("rosenbrock4", "a", _floats(4, -2, 2), f(_rosenbrock), 100),
        Problem("rastrigin5", "a", _floats(5, -5.12, 5.12), f(_rastrigin), 100),
        Problem("ackley5", "a", _floats(5, -5, 5), f(_ackley), 100),
        Problem("styblinski5", "a", _floats(5, -5, 5), f(_styblinski_tang), 100),
        Problem("levy5", "a", _floats(5, -10, 10), f(_levy), 100),
        Problem("mixed_int7", "a", _mixed_int_suggest, _mixed_int, 100),
        Problem("categorical7", "a", _categorical_suggest, _categorical, 100),
        Problem("bits12_round", "b", _bits_suggest(12), _bits_rounded(12, 0.05), 150),
        Problem("bits16_budget", "b", _bits_suggest(16), _bits_budget(16), 150),
        Problem("bits8w_round", "b", _bits_suggest(8, True), _bits_rounded(8, 0.05, True), 150),
        Problem("step_sphere6", "b", _floats(6, -5.12, 5.12), f(_step_sphere), 150),
        Problem("plateau_ackley5", "b", _floats(5, -5, 5), f(_plateau_ackley), 150),
        Problem("zdt1", "c", _floats(5, 0, 1), f(_zdt1), 150, ("minimize",) * 2, (1.1, 10.0)),
        Problem("zdt2", "c", _floats(5, 0, 1), f(_zdt2), 150, ("minimize",) * 2, (1.1, 10.0)),
        Problem(
            "dtlz2_3obj", "c", _floats(5, 0, 1), f(_dtlz2), 150, ("minimize",) * 3, (1.1,) * 3
        ),
        Problem(
            "bits8w_2obj",
            "c",
            _bits_suggest(8, True),
            _bits_mo(8, False),
            150,
            ("minimize",) * 2,
            (1.1, 1.1),
        ),
        Problem(
            "bits8w_3obj",
            "c",
            _bits_suggest(8, True),
            _bits_mo(8, True),
            150,
            ("minimize",) * 3,
            (1.1, 1.1, 1.1),
        ),
    ]
    # Known optima (the shifted functions reach 0 inside their domains).
    st = _styblinski_tang(np.full(5, -2.903534027771178))
    optima = dict.fromkeys(
        ("sphere5", "rosenbrock4", "rastrigin5", "ackley5", "levy5", "mixed_int7"), 0.0
    )
    optima.update(styblinski5=st, categorical7=0.0, step_sphere6=0.0, plateau_ackley5=0.0)
    return [replace(p, optimum=optima.get(p.name)) for p in listed]


# --- running -----------------------------------------------------------------------------------


def hypervolume(values: np.ndarray, reference: np.ndarray) -> float:
    inside = values[np.all(values < reference, axis=1)]
    if inside.size == 0:
        return 0.0
    return float(compute_hypervolume(inside, reference, assume_pareto=False))


def _constraints_from_attrs(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    """``constraints_func`` for the samplers: the values the objective stored."""
    return trial.user_attrs["constraints"]


def run_study_details(
    problem: Problem, sampler: optuna.samplers.BaseSampler, n_trials: int, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run one study; return its curve and ``{"distinct": distinct configurations}``.

    Curve, single objective: after each trial, the value of the best trial so far, counting
    only feasible trials (``inf`` before the first one) and, for noisy problems, choosing the
    best by the observed (noisy) value but reporting that trial's noise-free value. The noise
    of trial ``i`` is drawn from ``default_rng([seed, i])``, so paired samplers see the same
    noise sequence. Several objectives: hypervolume of the trials so far, every 10 trials.
    """

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        params = problem.suggest(trial)
        value = problem.evaluate(params)
        if problem.constraints is not None:
            trial.set_user_attr("constraints", [float(c) for c in problem.constraints(params)])
        if problem.noise > 0:
            trial.set_user_attr("true_value", float(value))  # type: ignore[arg-type]
            noise = np.random.default_rng([seed, trial.number, 7919]).normal(0.0, problem.noise)
            return float(value) + float(noise)  # type: ignore[arg-type]
        return value

    study = optuna.create_study(directions=list(problem.directions), sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    info = {"distinct": len({tuple(sorted(t.params.items())) for t in trials})}
    values = np.array([t.values for t in trials], dtype=float)
    feasible = np.array(
        [
            problem.constraints is None or all(c <= 0 for c in t.user_attrs["constraints"])
            for t in trials
        ]
    )
    if len(problem.directions) == 1:
        observed = np.where(feasible, values[:, 0], np.inf)
        true = np.array([t.user_attrs.get("true_value", t.values[0]) for t in trials], dtype=float)
        curve = np.full(len(trials), np.inf)
        best = -1
        for i in range(len(trials)):
            if observed[i] < np.inf and (best < 0 or observed[i] < observed[best]):
                best = i
            if best >= 0:
                curve[i] = true[best]
        return curve, info
    reference = np.asarray(problem.reference_point, dtype=float)
    checkpoints = list(range(10, n_trials + 1, 10))
    if checkpoints[-1] != n_trials:
        checkpoints.append(n_trials)
    curve = np.zeros(n_trials)
    previous = 0
    for c in checkpoints:
        front = values[:c][feasible[:c]]
        curve[previous:c] = hypervolume(front, reference) if len(front) else 0.0
        previous = c
    return curve, info


def run_study(problem: Problem, sampler: optuna.samplers.BaseSampler, n_trials: int) -> np.ndarray:
    """Return the curve: best-so-far value (SO) or hypervolume (MO) after each trial."""
    return run_study_details(problem, sampler, n_trials)[0]
