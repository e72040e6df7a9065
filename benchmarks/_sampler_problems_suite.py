"""The broad problem suite of ``sampler_quality.py``: the problems of ``_sampler_problems.py``
plus families of problems users run Optuna on (numpy and scikit-learn only).

Families (``Problem.family``):

- ``continuous``: sphere, ellipsoid, rosenbrock, rastrigin, ackley, griewank, levy,
  styblinski-tang (shifted to a fixed random optimum inside the domain) and schwefel (native
  form), in 2 and 10 dimensions, plus the 5-D problems of the old group (a);
- ``mixed_int``: the same shifted functions (schwefel excepted) in 5 and 10 dimensions as in
  bbob-mixint: the dimensions are split into five equal parts, four of them ``suggest_int``
  with 2, 4, 8 and 16 values (ranges 0..1, 1..4, 0..7, -8..7, mapped onto an even grid of the
  domain that contains the optimum) and one ``suggest_float``; plus ``mixed_int7``;
- ``categorical``: separable and chained cost tables over categorical choices, choices with a
  hidden 2-D embedding, many-choice categoricals, plus ``categorical7``;
- ``conditional``: a categorical (or an integer layer count) decides which parameters exist;
- ``noisy``: Gaussian noise on the observed value (the curve reports the noise-free value of
  the best observed trial, see ``run_study_details``);
- ``sklearn``: real scikit-learn studies on small built-in datasets (fixed holdouts or fixed
  folds, deterministic models; one evaluation takes 2-25 ms);
- ``flat``: the old group (b) plus integer sums on a plateau (one all-optimal, one with a cliff
  at sum 32), saturating per-layer bit-width accuracy read at 0.01, rounded floats;
- ``multi_objective``: the old group (c) plus ZDT3, DTLZ2 (2 objectives), DTLZ7 (2 and 3) and
  WFG4 (2 objectives);
- ``constrained``: single-objective problems with ``constraints_func`` constraints.

All problems are minimized. Fixed problem data (shifts, tables, embeddings) come from fixed
seeds; the definitions are not tuned to any sampler.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
import math
from typing import Any

from _sampler_problems import _BITS
from _sampler_problems import Params
from _sampler_problems import Problem
from _sampler_problems import _bits_suggest
from _sampler_problems import _bits_terms
from _sampler_problems import ackley as _ackley
from _sampler_problems import problems
import numpy as np
import optuna


SO_TRIALS = 80
MO_TRIALS = 100

# --- canonical functions, minimum 0 at z = 0 ------------------------------------------------


def _sphere(z: np.ndarray) -> float:
    return float(np.sum(z**2))


def _ellipsoid(z: np.ndarray) -> float:
    d = z.size
    w = 10.0 ** (6.0 * np.arange(d) / max(d - 1, 1))
    return float(np.sum(w * z**2))


def _rosenbrock(z: np.ndarray) -> float:
    x = z + 1.0
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _rastrigin(z: np.ndarray) -> float:
    return float(10 * z.size + np.sum(z**2 - 10 * np.cos(2 * np.pi * z)))


def _griewank(z: np.ndarray) -> float:
    i = np.arange(1, z.size + 1)
    return float(1 + np.sum(z**2) / 4000 - np.prod(np.cos(z / np.sqrt(i))))


def _levy(z: np.ndarray) -> float:
    w = 1 + z / 4
    return float(
        np.sin(np.pi * w[0]) ** 2
        + np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2))
        + (w[-1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[-1]) ** 2)
    )


_ST_MIN = -2.903534027771178


def _styblinski(z: np.ndarray) -> float:
    u = z + _ST_MIN
    return float(0.5 * np.sum(u**4 - 16 * u**2 + 5 * u) + 39.16616570377142 * z.size)


def _schwefel_native(x: np.ndarray) -> float:
    return float(418.9828872724338 * x.size - np.sum(x * np.sin(np.sqrt(np.abs(x)))))


# name: (function, low, high)
_FUNCS: dict[str, tuple[Callable[[np.ndarray], float], float, float]] = {
    "sphere": (_sphere, -5.0, 5.0),
    "ellipsoid": (_ellipsoid, -5.0, 5.0),
    "rosenbrock": (_rosenbrock, -5.0, 10.0),
    "rastrigin": (_rastrigin, -5.12, 5.12),
    "ackley": (_ackley, -32.768, 32.768),
    "griewank": (_griewank, -600.0, 600.0),
    "levy": (_levy, -10.0, 10.0),
    "styblinski": (_styblinski, -5.0, 5.0),
}
_INT_RANGES = ((0, 1), (1, 4), (0, 7), (-8, 7))  # 2, 4, 8 and 16 values, as in bbob-mixint


def _shifted(
    fname: str, d: int, mixed: bool, seed: int
) -> tuple[Callable[[optuna.Trial], Params], Callable[[Params], float], float]:
    """Suggest, evaluate and optimum of a shifted function (mixed: bbob-mixint-like)."""
    fn, low, high = _FUNCS[fname]
    rng = np.random.default_rng(seed)
    span = high - low
    kinds: list[tuple[int, int] | None] = []  # None: float
    if mixed:
        part = d // 5
        for r in _INT_RANGES:
            kinds += [r] * part
        kinds += [None] * (d - len(kinds))
    else:
        kinds = [None] * d
    shift = np.empty(d)
    for i, kind in enumerate(kinds):
        if kind is None:
            shift[i] = rng.uniform(low + 0.15 * span, high - 0.15 * span)
        else:
            lo, hi = kind
            m = hi - lo + 1
            # An interior grid point when the grid has one.
            k = int(rng.integers(1, m - 1)) if m > 2 else int(rng.integers(0, 2))
            shift[i] = low + span * k / (m - 1)

    def suggest(t: optuna.Trial) -> Params:
        p: Params = {}
        for i, kind in enumerate(kinds):
            if kind is None:
                p[f"x{i:02d}"] = t.suggest_float(f"x{i:02d}", low, high)
            else:
                p[f"k{i:02d}"] = t.suggest_int(f"k{i:02d}", kind[0], kind[1])
        return p

    def evaluate(p: Params) -> float:
        x = np.empty(d)
        for i, kind in enumerate(kinds):
            if kind is None:
                x[i] = p[f"x{i:02d}"]
            else:
                lo, hi = kind
                x[i] = low + span * (p[f"k{i:02d}"] - lo) / (hi - lo)
        return fn(x - shift)

    return suggest, evaluate, fn(np.zeros(d))


def _schwefel(d: int) -> tuple[Callable[[optuna.Trial], Params], Callable[[Params], float], float]:
    def suggest(t: optuna.Trial) -> Params:
        return {f"x{i:02d}": t.suggest_float(f"x{i:02d}", -500.0, 500.0) for i in range(d)}

    def evaluate(p: Params) -> float:
        return _schwefel_native(np.array([p[f"x{i:02d}"] for i in range(d)]))

    return suggest, evaluate, _schwefel_native(np.full(d, 420.9687462275036))


def _function_problems() -> list[Problem]:
    out = []
    for j, fname in enumerate(_FUNCS):
        for d in (2, 10):
            s, e, opt = _shifted(fname, d, False, 1000 + 10 * j + d)
            out.append(
                Problem(f"{fname}{d}", "a", s, e, SO_TRIALS, family="continuous", optimum=opt)
            )
    for d in (2, 10):
        s, e, opt = _schwefel(d)
        out.append(Problem(f"schwefel{d}", "a", s, e, SO_TRIALS, family="continuous", optimum=opt))
    for j, fname in enumerate(_FUNCS):
        for d in (5, 10):
            s, e, opt = _shifted(fname, d, True, 2000 + 10 * j + d)
            out.append(
                Problem(f"mi_{fname}{d}", "a", s, e, SO_TRIALS, family="mixed_int", optimum=opt)
            )
    return out


# --- categorical -------------------------------------------------------------------------------

_CAT_RNG = np.random.default_rng(31337)
_TABLE6 = np.round(_CAT_RNG.gamma(1.5, 1.0, (6, 5)), 3)  # 6 choices of 5, skewed costs
_CHAIN_UNARY = np.round(_CAT_RNG.uniform(0, 1, (8, 4)), 3)
_CHAIN_PAIR = np.round(_CAT_RNG.uniform(0, 1.5, (7, 4, 4)), 3)
_EMBED = _CAT_RNG.normal(0, 1, (10, 2))  # 10 choices with a hidden 2-D position
_EMBED_TARGET = np.array([0.4, -0.3])
_MANY = np.round(np.sort(_CAT_RNG.pareto(1.2, (3, 20)), axis=1)[:, ::-1] * 0.3, 3)
_MANY_PERM = np.stack([_CAT_RNG.permutation(20) for _ in range(3)])


def _chain_optimum() -> float:
    # Dynamic programming over the chain of 8 categoricals.
    best = _CHAIN_UNARY[0].copy()
    for i in range(1, 8):
        best = np.min(best[:, None] + _CHAIN_PAIR[i - 1], axis=0) + _CHAIN_UNARY[i]
    return float(best.min())


def _embed_optimum() -> float:
    pts = _EMBED[:, None, :] + _EMBED[None, :, :]
    return float(np.min(np.sum((pts / 2 - _EMBED_TARGET) ** 2, axis=-1)))


def _categorical_problems() -> list[Problem]:
    names5 = ["a", "b", "c", "d", "e"]

    def table_suggest(t: optuna.Trial) -> Params:
        return {f"c{i}": t.suggest_categorical(f"c{i}", names5) for i in range(6)}

    def table_eval(p: Params) -> float:
        return float(sum(_TABLE6[i, names5.index(p[f"c{i}"])] for i in range(6)))

    def chain_suggest(t: optuna.Trial) -> Params:
        return {f"c{i}": t.suggest_categorical(f"c{i}", (0, 1, 2, 3)) for i in range(8)}

    def chain_eval(p: Params) -> float:
        c = [p[f"c{i}"] for i in range(8)]
        return float(
            sum(_CHAIN_UNARY[i, c[i]] for i in range(8))
            + sum(_CHAIN_PAIR[i, c[i], c[i + 1]] for i in range(7))
        )

    opts = [f"opt{i}" for i in range(10)]

    def embed_suggest(t: optuna.Trial) -> Params:
        p: Params = {f"e{i}": t.suggest_categorical(f"e{i}", opts) for i in range(2)}
        p["x"] = t.suggest_float("x", -2, 2)
        return p

    def embed_eval(p: Params) -> float:
        pos = (_EMBED[opts.index(p["e0"])] + _EMBED[opts.index(p["e1"])]) / 2
        return float(np.sum((pos - _EMBED_TARGET) ** 2) + 0.1 * (p["x"] - 0.7) ** 2)

    many = [f"v{i:02d}" for i in range(20)]

    def many_suggest(t: optuna.Trial) -> Params:
        p: Params = {f"m{i}": t.suggest_categorical(f"m{i}", many) for i in range(3)}
        p["x"] = t.suggest_float("x", 0, 1)
        return p

    def many_eval(p: Params) -> float:
        cost = sum(_MANY[i, _MANY_PERM[i, many.index(p[f"m{i}"])]] for i in range(3))
        return float(cost + (p["x"] - 0.2) ** 2)

    def act_suggest(t: optuna.Trial) -> Params:
        p: Params = {
            "opt": t.suggest_categorical("opt", ["sgd", "adam", "rmsprop", "adagrad"]),
            "act": t.suggest_categorical("act", ["relu", "tanh", "gelu"]),
            "norm": t.suggest_categorical("norm", ["none", "batch", "layer"]),
            "lr": t.suggest_float("lr", 1e-5, 1.0, log=True),
            "bs": t.suggest_categorical("bs", [16, 32, 64, 128, 256]),
        }
        return p

    best_lr = {"sgd": -1.0, "adam": -3.0, "rmsprop": -3.5, "adagrad": -2.0}
    base = {"sgd": 0.15, "adam": 0.0, "rmsprop": 0.05, "adagrad": 0.25}
    act_cost = {"relu": 0.05, "tanh": 0.2, "gelu": 0.0}
    norm_cost = {"none": 0.3, "batch": 0.0, "layer": 0.04}

    def act_eval(p: Params) -> float:
        # The best learning rate depends on the optimizer and on the batch size.
        target = best_lr[p["opt"]] + 0.5 * math.log2(p["bs"] / 64) / 2
        return float(
            base[p["opt"]]
            + act_cost[p["act"]]
            + norm_cost[p["norm"]] * (1.5 if p["opt"] == "sgd" else 1.0)
            + 0.2 * (math.log10(p["lr"]) - target) ** 2
            + 0.02 * abs(math.log2(p["bs"] / 64))
        )

    return [
        Problem(
            "cat_table6",
            "a",
            table_suggest,
            table_eval,
            SO_TRIALS,
            family="categorical",
            optimum=float(_TABLE6.min(axis=1).sum()),
        ),
        Problem(
            "cat_chain8",
            "a",
            chain_suggest,
            chain_eval,
            SO_TRIALS,
            family="categorical",
            optimum=_chain_optimum(),
        ),
        Problem(
            "cat_embed2",
            "a",
            embed_suggest,
            embed_eval,
            SO_TRIALS,
            family="categorical",
            optimum=_embed_optimum(),
        ),
        Problem(
            "cat_many20",
            "a",
            many_suggest,
            many_eval,
            SO_TRIALS,
            family="categorical",
            optimum=float(_MANY.min(axis=1).sum()),
        ),
        Problem(
            "cat_hpo5",
            "a",
            act_suggest,
            act_eval,
            SO_TRIALS,
            family="categorical",
            optimum=0.0,
        ),
    ]


# --- conditional -------------------------------------------------------------------------------


def _cond_model_suggest(t: optuna.Trial) -> Params:
    model = t.suggest_categorical("model", ["linear", "tree", "net"])
    p: Params = {"model": model}
    if model == "linear":
        p["alpha"] = t.suggest_float("alpha", 1e-6, 10, log=True)
        p["l1"] = t.suggest_float("l1", 0, 1)
    elif model == "tree":
        p["depth"] = t.suggest_int("depth", 1, 16)
        p["leaf"] = t.suggest_int("leaf", 1, 64, log=True)
        p["feat"] = t.suggest_float("feat", 0.1, 1.0)
    else:
        p["act"] = t.suggest_categorical("act", ["relu", "tanh"])
        p["lr"] = t.suggest_float("lr", 1e-5, 1e-1, log=True)
        p["width"] = t.suggest_int("width", 8, 512, log=True)
    return p


def _cond_model(p: Params) -> float:
    if p["model"] == "linear":
        return 0.30 + 0.05 * (math.log10(p["alpha"]) + 2) ** 2 / 4 + 0.1 * (p["l1"] - 0.3) ** 2
    if p["model"] == "tree":
        return (
            0.12
            + 0.01 * (p["depth"] - 7) ** 2
            + 0.02 * (math.log2(p["leaf"]) - 2) ** 2
            + 0.2 * (p["feat"] - 0.6) ** 2
        )
    return (
        (0.0 if p["act"] == "relu" else 0.08)
        + 0.05 * (math.log10(p["lr"]) + 3.3) ** 2
        + 0.03 * (math.log2(p["width"]) - 7) ** 2
    )


def _cond_opt_suggest(t: optuna.Trial) -> Params:
    opt = t.suggest_categorical("optimizer", ["sgd", "adam"])
    p: Params = {"optimizer": opt, "bs": t.suggest_int("bs", 8, 512, log=True)}
    if opt == "sgd":
        p["lr"] = t.suggest_float("sgd_lr", 1e-4, 1.0, log=True)
        p["momentum"] = t.suggest_float("momentum", 0.0, 0.99)
        p["nesterov"] = t.suggest_categorical("nesterov", [False, True])
    else:
        p["lr"] = t.suggest_float("adam_lr", 1e-5, 1e-1, log=True)
        p["beta1"] = t.suggest_float("beta1", 0.5, 0.999)
        p["beta2"] = t.suggest_float("beta2", 0.9, 0.9999, log=True)
    return p


def _cond_opt(p: Params) -> float:
    bs = math.log2(p["bs"]) - 6
    if p["optimizer"] == "sgd":
        eff = math.log10(p["lr"] / (1 - p["momentum"]))
        return (
            0.05
            + 0.1 * (eff + 0.5 - 0.15 * bs) ** 2
            + (0.0 if p["nesterov"] else 0.02)
            + 0.01 * bs**2
        )
    return (
        0.03
        + 0.1 * (math.log10(p["lr"]) + 3 - 0.15 * bs) ** 2
        + 0.5 * (p["beta1"] - 0.9) ** 2
        + 2.0 * (math.log10(1 - p["beta2"]) + 3) ** 2 / 10
        + 0.01 * bs**2
    )


def _cond_layers_suggest(t: optuna.Trial) -> Params:
    n = t.suggest_int("n_layers", 1, 4)
    p: Params = {"n_layers": n, "lr": t.suggest_float("lr", 1e-5, 1e-1, log=True)}
    for i in range(n):
        p[f"units{i}"] = t.suggest_int(f"units{i}", 4, 256, log=True)
        p[f"dropout{i}"] = t.suggest_float(f"dropout{i}", 0.0, 0.6)
    return p


_BEST_UNITS = (128, 64, 32, 16)


def _cond_layers(p: Params) -> float:
    n = p["n_layers"]
    v = 0.1 * abs(n - 3) + 0.04 * (math.log10(p["lr"]) + 3) ** 2
    for i in range(n):
        v += 0.02 * (math.log2(p[f"units{i}"] / _BEST_UNITS[i])) ** 2
        v += 0.1 * (p[f"dropout{i}"] - 0.1 * (i + 1)) ** 2
    return float(v)


def _cond_branch_suggest(t: optuna.Trial) -> Params:
    branch = t.suggest_categorical("branch", ["b2", "b4", "b6"])
    d = int(branch[1])
    p: Params = {"branch": branch}
    for i in range(d):
        p[f"{branch}_x{i}"] = t.suggest_float(f"{branch}_x{i}", -5, 5)
    return p


_BRANCH_SHIFT = np.random.default_rng(4242).uniform(-3, 3, 6)


def _cond_branch(p: Params) -> float:
    branch = p["branch"]
    d = int(branch[1])
    z = np.array([p[f"{branch}_x{i}"] for i in range(d)]) - _BRANCH_SHIFT[:d]
    offset = {"b2": 2.0, "b4": 1.0, "b6": 0.0}[branch]  # the largest branch is the best one
    return offset + _rastrigin(z * 0.5) / 4 if branch == "b4" else offset + _sphere(z) / d


def _conditional_problems() -> list[Problem]:
    return [
        Problem(
            "cond_model",
            "a",
            _cond_model_suggest,
            _cond_model,
            SO_TRIALS,
            family="conditional",
            optimum=0.0,
        ),
        Problem(
            "cond_optimizer",
            "a",
            _cond_opt_suggest,
            _cond_opt,
            SO_TRIALS,
            family="conditional",
            optimum=0.03,
        ),
        Problem(
            "cond_layers",
            "a",
            _cond_layers_suggest,
            _cond_layers,
            SO_TRIALS,
            family="conditional",
            optimum=0.0,
        ),
        Problem(
            "cond_branch",
            "a",
            _cond_branch_suggest,
            _cond_branch,
            SO_TRIALS,
            family="conditional",
            optimum=0.0,
        ),
    ]


# --- noisy -------------------------------------------------------------------------------------


def _noisy_hpo_suggest(t: optuna.Trial) -> Params:
    return {
        "lr": t.suggest_float("lr", 1e-5, 1.0, log=True),
        "wd": t.suggest_float("wd", 1e-6, 1e-1, log=True),
        "dropout": t.suggest_float("dropout", 0.0, 0.7),
        "bs": t.suggest_int("bs", 8, 1024, log=True),
        "layers": t.suggest_int("layers", 1, 6),
        "act": t.suggest_categorical("act", ["relu", "gelu", "tanh"]),
    }


def _noisy_hpo(p: Params) -> float:
    return float(
        0.08
        + 0.03 * (math.log10(p["lr"]) + 2.5) ** 2
        + 0.01 * (math.log10(p["wd"]) + 4) ** 2
        + 0.2 * (p["dropout"] - 0.25) ** 2
        + 0.004 * (math.log2(p["bs"]) - 6) ** 2
        + 0.01 * (p["layers"] - 3) ** 2
        + {"relu": 0.01, "gelu": 0.0, "tanh": 0.04}[p["act"]]
        - 0.08
    )


def _noisy_problems() -> list[Problem]:
    out = []
    for fname, d, mixed, sigma in (
        ("sphere", 5, False, 1.0),
        ("rosenbrock", 4, False, 20.0),
        ("rastrigin", 5, False, 2.0),
        ("levy", 5, True, 0.5),
        ("ellipsoid", 5, True, 100.0),
    ):
        s, e, opt = _shifted(fname, d, mixed, 3000 + d + len(fname))
        name = f"noisy_{'mi_' if mixed else ''}{fname}{d}"
        out.append(Problem(name, "a", s, e, SO_TRIALS, family="noisy", optimum=opt, noise=sigma))
    out.append(
        Problem(
            "noisy_hpo6",
            "a",
            _noisy_hpo_suggest,
            _noisy_hpo,
            SO_TRIALS,
            family="noisy",
            optimum=0.0,
            noise=0.02,
        )
    )
    out.append(
        Problem(
            "noisy_cond_model",
            "a",
            _cond_model_suggest,
            _cond_model,
            SO_TRIALS,
            family="noisy",
            optimum=0.0,
            noise=0.03,
        )
    )
    return out


# --- scikit-learn ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }[name]
    x, y = loader(return_X_y=True)
    idx = np.random.default_rng(7).permutation(len(y))
    x, y = x[idx].astype(float), y[idx]
    if name == "digits":
        x, y = x[:600] / 16.0, y[:600]
    return x, y


def _folds(n: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    parts = np.array_split(np.arange(n), k)
    return [(np.concatenate(parts[:i] + parts[i + 1 :]), parts[i]) for i in range(k)]


def _memo(fn: Callable[[Params], float]) -> Callable[[Params], float]:
    cache: dict[tuple[Any, ...], float] = {}

    def wrapped(p: Params) -> float:
        key = tuple(sorted(p.items()))
        if key not in cache:
            cache[key] = fn(p)
        return cache[key]

    return wrapped


def _quiet() -> None:
    import warnings

    warnings.simplefilter("ignore")


def _sk_logreg_suggest(t: optuna.Trial) -> Params:
    return {
        "C": t.suggest_float("C", 1e-4, 1e3, log=True),
        "fit_intercept": t.suggest_categorical("fit_intercept", [True, False]),
        "class_weight": t.suggest_categorical("class_weight", ["none", "balanced"]),
        "scale": t.suggest_categorical("scale", ["raw", "standard"]),
    }


def _sk_logreg(p: Params) -> float:
    """Holdout log loss of a logistic regression on 400/200 digits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    _quiet()
    x, y = _data("digits")
    if p["scale"] == "standard":
        mu, sd = x[:400].mean(0), x[:400].std(0) + 1e-6
        x = (x - mu) / sd
    model = LogisticRegression(
        C=p["C"],
        fit_intercept=p["fit_intercept"],
        max_iter=60,
        class_weight=None if p["class_weight"] == "none" else "balanced",
    ).fit(x[:400], y[:400])
    return float(log_loss(y[400:], model.predict_proba(x[400:]), labels=np.arange(10)))


def _sk_svc_suggest(t: optuna.Trial) -> Params:
    kernel = t.suggest_categorical("kernel", ["rbf", "poly", "sigmoid"])
    p: Params = {
        "kernel": kernel,
        "C": t.suggest_float("C", 1e-2, 1e3, log=True),
        "gamma": t.suggest_float("gamma", 1e-4, 1.0, log=True),
    }
    if kernel == "poly":
        p["degree"] = t.suggest_int("degree", 2, 5)
    return p


def _sk_svc(p: Params) -> float:
    """Holdout error of an SVC on 400/200 digits (0.005 steps: ties)."""
    from sklearn.svm import SVC

    _quiet()
    x, y = _data("digits")
    model = SVC(C=p["C"], gamma=p["gamma"], kernel=p["kernel"], degree=p.get("degree", 3))
    return 1.0 - float(model.fit(x[:400], y[:400]).score(x[400:], y[400:]))


@functools.lru_cache(maxsize=None)
def _scaled_bc(scaler: str) -> np.ndarray:
    x, _ = _data("breast_cancer")
    if scaler == "standard":
        return (x - x.mean(0)) / x.std(0)
    if scaler == "minmax":
        return (x - x.min(0)) / (x.max(0) - x.min(0))
    return x


def _sk_knn_suggest(t: optuna.Trial) -> Params:
    return {
        "k": t.suggest_int("k", 1, 50),
        "weights": t.suggest_categorical("weights", ["uniform", "distance"]),
        "p": t.suggest_int("p", 1, 2),
        "scaler": t.suggest_categorical("scaler", ["none", "standard", "minmax"]),
    }


def _sk_knn(p: Params) -> float:
    """3-fold CV error of k-NN on breast cancer."""
    from sklearn.neighbors import KNeighborsClassifier

    _quiet()
    x, y = _scaled_bc(p["scaler"]), _data("breast_cancer")[1]
    errors = []
    for tr, te in _folds(len(y), 3):
        model = KNeighborsClassifier(n_neighbors=p["k"], weights=p["weights"], p=p["p"])
        errors.append(1.0 - model.fit(x[tr], y[tr]).score(x[te], y[te]))
    return float(np.mean(errors))


def _sk_tree_suggest(t: optuna.Trial) -> Params:
    return {
        "max_depth": t.suggest_int("max_depth", 1, 12),
        "min_samples_split": t.suggest_int("min_samples_split", 2, 20),
        "min_samples_leaf": t.suggest_int("min_samples_leaf", 1, 10),
        "criterion": t.suggest_categorical("criterion", ["gini", "entropy", "log_loss"]),
        "max_features": t.suggest_float("max_features", 0.1, 1.0),
        "splitter": t.suggest_categorical("splitter", ["best", "random"]),
    }


def _sk_tree(p: Params) -> float:
    """3-fold CV error of a decision tree on wine (fixed random_state)."""
    from sklearn.tree import DecisionTreeClassifier

    _quiet()
    x, y = _data("wine")
    errors = []
    for tr, te in _folds(len(y), 3):
        model = DecisionTreeClassifier(random_state=0, **p)
        errors.append(1.0 - model.fit(x[tr], y[tr]).score(x[te], y[te]))
    return float(np.mean(errors))


def _sk_enet_suggest(t: optuna.Trial) -> Params:
    return {
        "alpha": t.suggest_float("alpha", 1e-5, 10.0, log=True),
        "l1_ratio": t.suggest_float("l1_ratio", 0.0, 1.0),
        "fit_intercept": t.suggest_categorical("fit_intercept", [True, False]),
        "poly": t.suggest_categorical("poly", [False, True]),
    }


@functools.lru_cache(maxsize=None)
def _diabetes_features(poly: bool) -> np.ndarray:
    x, _ = _data("diabetes")
    if not poly:
        return x
    i, j = np.triu_indices(x.shape[1])
    return np.hstack([x, x[:, i] * x[:, j] * 10])


def _sk_enet(p: Params) -> float:
    """5-fold CV mean squared error / variance of an elastic net on diabetes."""
    from sklearn.linear_model import ElasticNet

    _quiet()
    x, y = _diabetes_features(p["poly"]), _data("diabetes")[1]
    errors = []
    for tr, te in _folds(len(y), 5):
        model = ElasticNet(
            alpha=p["alpha"],
            l1_ratio=p["l1_ratio"],
            fit_intercept=p["fit_intercept"],
            max_iter=300,
            tol=1e-3,
        ).fit(x[tr], y[tr])
        errors.append(float(np.mean((model.predict(x[te]) - y[te]) ** 2)))
    return float(np.mean(errors) / np.var(y))


def _sklearn_problems() -> list[Problem]:
    return [
        Problem(
            "sk_logreg_digits",
            "a",
            _sk_logreg_suggest,
            _memo(_sk_logreg),
            SO_TRIALS,
            family="sklearn",
        ),
        Problem(
            "sk_svc_digits", "a", _sk_svc_suggest, _memo(_sk_svc), SO_TRIALS, family="sklearn"
        ),
        Problem(
            "sk_knn_cancer", "a", _sk_knn_suggest, _memo(_sk_knn), SO_TRIALS, family="sklearn"
        ),
        Problem(
            "sk_tree_wine", "a", _sk_tree_suggest, _memo(_sk_tree), SO_TRIALS, family="sklearn"
        ),
        Problem(
            "sk_enet_diabetes", "a", _sk_enet_suggest, _memo(_sk_enet), SO_TRIALS, family="sklearn"
        ),
    ]


# --- flat --------------------------------------------------------------------------------------


def _int8_suggest(t: optuna.Trial) -> Params:
    return {f"b{i}": t.suggest_int(f"b{i}", 2, 8) for i in range(8)}


def _int8_sum_flat(p: Params) -> float:
    s = sum(p.values())
    return 1.0 if s > 20 else 1.0 + 0.001 * s


def _int8_sum_edge(p: Params) -> float:
    # A plateau at -1 with a slight slope towards a cliff: the best configurations have
    # sum(b) == 32 exactly (about 8% of random configurations have sum(b) <= 32).
    s = sum(p.values())
    return -1.0 if s > 32 else -(1.0 + 0.001 * s)


_SAT_W = np.exp(np.random.default_rng(777).uniform(-1.5, 1.5, 10))


def _bits10_suggest(t: optuna.Trial) -> Params:
    return {f"b{i}": t.suggest_categorical(f"b{i}", _BITS) for i in range(10)}


def _bits10_saturating(p: Params) -> float:
    """1 - accuracy, read at 0.01; accuracy saturates with the bit-widths (many ties)."""
    bits = np.array([p[f"b{i}"] for i in range(10)], dtype=float)
    loss = float(np.sum(_SAT_W * np.exp(-1.2 * (bits - 2))) / np.sum(_SAT_W))
    accuracy = 0.95 - 0.6 * loss
    return float(np.round(1.0 - accuracy, 2))


def _bits10_saturating_optimum() -> float:
    return _bits10_saturating({f"b{i}": 8 for i in range(10)})


def _flat_problems() -> list[Problem]:
    sphere_s, sphere_e, _ = _shifted("sphere", 4, False, 5004)
    levy_s, levy_e, _ = _shifted("levy", 4, False, 5104)
    return [
        Problem(
            "int8_sum_flat",
            "b",
            _int8_suggest,
            _int8_sum_flat,
            SO_TRIALS,
            family="flat",
            optimum=1.0,
        ),
        Problem(
            "int8_sum_edge",
            "b",
            _int8_suggest,
            _int8_sum_edge,
            SO_TRIALS,
            family="flat",
            optimum=-1.032,
        ),
        Problem(
            "bits10_saturating",
            "b",
            _bits10_suggest,
            _bits10_saturating,
            SO_TRIALS,
            family="flat",
            optimum=_bits10_saturating_optimum(),
        ),
        Problem(
            "sphere4_round",
            "b",
            sphere_s,
            lambda p: float(round(sphere_e(p))),
            SO_TRIALS,
            family="flat",
            optimum=0.0,
        ),
        Problem(
            "levy4_xround",
            "b",
            levy_s,
            lambda p: levy_e({k: round(v * 2) / 2 for k, v in p.items()}),
            SO_TRIALS,
            family="flat",
        ),
    ]


# --- multi-objective ---------------------------------------------------------------------------


def _zdt3(x: np.ndarray) -> tuple[float, float]:
    g = 1 + 9 * np.mean(x[1:])
    r = x[0] / g
    return float(x[0]), float(g * (1 - math.sqrt(r) - r * math.sin(10 * math.pi * x[0])))


def _dtlz2_m(m: int) -> Callable[[np.ndarray], tuple[float, ...]]:
    def f(x: np.ndarray) -> tuple[float, ...]:
        g = float(np.sum((x[m - 1 :] - 0.5) ** 2))
        theta = x[: m - 1] * math.pi / 2
        out = []
        for i in range(m):
            v = 1 + g
            for j in range(m - 1 - i):
                v *= math.cos(theta[j])
            if i > 0:
                v *= math.sin(theta[m - 1 - i])
            out.append(float(v))
        return tuple(out)

    return f


def _dtlz7_m(m: int) -> Callable[[np.ndarray], tuple[float, ...]]:
    def f(x: np.ndarray) -> tuple[float, ...]:
        fs = [float(v) for v in x[: m - 1]]
        g = 1 + 9 * float(np.mean(x[m - 1 :]))
        h = m - sum(fi / (1 + g) * (1 + math.sin(3 * math.pi * fi)) for fi in fs)
        return (*fs, float((1 + g) * h))

    return f


def _wfg4_2(z: np.ndarray) -> tuple[float, float]:
    """WFG4 with 2 objectives, k = 2 position and l = 4 distance parameters."""
    y = z / (2.0 * np.arange(1, z.size + 1))
    a_, b_, c_ = 30.0, 10.0, 0.35
    tmp = np.abs(y - c_) / (2 * (np.floor(c_ - y) + c_))
    y = (1 + np.cos((4 * a_ + 2) * np.pi * (0.5 - tmp)) + 4 * b_ * tmp**2) / (b_ + 2)
    t1, t2 = float(np.mean(y[:2])), float(np.mean(y[2:]))
    return float(t2 + 2 * math.sin(t1 * math.pi / 2)), float(t2 + 4 * math.cos(t1 * math.pi / 2))


def _mo_problems() -> list[Problem]:
    def floats01(n: int) -> Callable[[optuna.Trial], Params]:
        return lambda t: {f"x{i}": t.suggest_float(f"x{i}", 0, 1) for i in range(n)}

    def vec(fn: Callable[[np.ndarray], Any], n: int) -> Callable[[Params], Any]:
        return lambda p: fn(np.array([p[f"x{i}"] for i in range(n)]))

    def wfg_suggest(t: optuna.Trial) -> Params:
        return {f"x{i}": t.suggest_float(f"x{i}", 0, 2.0 * (i + 1)) for i in range(6)}

    mo = "multi_objective"
    return [
        Problem(
            "zdt3",
            "c",
            floats01(5),
            vec(_zdt3, 5),
            MO_TRIALS,
            ("minimize",) * 2,
            (1.1, 10.0),
            family=mo,
        ),
        Problem(
            "dtlz2_2obj",
            "c",
            floats01(6),
            vec(_dtlz2_m(2), 6),
            MO_TRIALS,
            ("minimize",) * 2,
            (1.1, 1.1),
            family=mo,
        ),
        Problem(
            "dtlz7_2obj",
            "c",
            floats01(6),
            vec(_dtlz7_m(2), 6),
            MO_TRIALS,
            ("minimize",) * 2,
            (1.1, 8.0),
            family=mo,
        ),
        Problem(
            "dtlz7_3obj",
            "c",
            floats01(7),
            vec(_dtlz7_m(3), 7),
            MO_TRIALS,
            ("minimize",) * 3,
            (1.1, 1.1, 12.0),
            family=mo,
        ),
        Problem(
            "wfg4_2obj",
            "c",
            wfg_suggest,
            vec(_wfg4_2, 6),
            MO_TRIALS,
            ("minimize",) * 2,
            (3.3, 5.5),
            family=mo,
        ),
    ]


# --- constrained -------------------------------------------------------------------------------

_HALF_TARGET = np.array([-1.0, 0.5, -0.5, 0.0, -1.5])


def _c_sphere_suggest(t: optuna.Trial) -> Params:
    return {f"x{i}": t.suggest_float(f"x{i}", -5, 5) for i in range(5)}


def _c_sphere(p: Params) -> float:
    return _sphere(np.array([p[f"x{i}"] for i in range(5)]) - _HALF_TARGET)


def _c_sphere_cons(p: Params) -> tuple[float]:
    return (2.0 - sum(p[f"x{i}"] for i in range(5)),)  # sum(x) >= 2


def _c_rosen_suggest(t: optuna.Trial) -> Params:
    return {"x": t.suggest_float("x", -1.5, 1.5), "y": t.suggest_float("y", -0.5, 2.5)}


def _c_rosen(p: Params) -> float:
    return (1 - p["x"]) ** 2 + 100 * (p["y"] - p["x"] ** 2) ** 2


def _c_rosen_cons(p: Params) -> tuple[float, float]:
    # Rosenbrock constrained to a cubic and a line (Simionescu-style feasible set).
    return ((p["x"] - 1) ** 3 - p["y"] + 1, p["x"] + p["y"] - 2)


def _c_vessel_suggest(t: optuna.Trial) -> Params:
    return {
        "ts": t.suggest_int("ts", 1, 99),  # shell thickness in 0.0625 inch steps
        "th": t.suggest_int("th", 1, 99),  # head thickness in 0.0625 inch steps
        "r": t.suggest_float("r", 10.0, 200.0),
        "l": t.suggest_float("l", 10.0, 200.0),
    }


def _c_vessel(p: Params) -> float:
    ts, th, r, length = 0.0625 * p["ts"], 0.0625 * p["th"], p["r"], p["l"]
    return (
        0.6224 * ts * r * length + 1.7781 * th * r**2 + 3.1661 * ts**2 * length + 19.84 * ts**2 * r
    )


def _c_vessel_cons(p: Params) -> tuple[float, float, float, float]:
    ts, th, r, length = 0.0625 * p["ts"], 0.0625 * p["th"], p["r"], p["l"]
    return (
        -ts + 0.0193 * r,
        -th + 0.00954 * r,
        (-math.pi * r**2 * length - 4 / 3 * math.pi * r**3 + 1296000) / 1296000,
        (length - 240) / 240,
    )


_KNAP_RNG = np.random.default_rng(99)
_KNAP_V = _KNAP_RNG.integers(5, 30, 10).astype(float)
_KNAP_W = _KNAP_RNG.integers(3, 20, 10).astype(float)
_KNAP_CAP = 0.35 * 3 * float(_KNAP_W.sum())


def _knapsack_optimum() -> float:
    cap = int(_KNAP_CAP)
    best = np.zeros(cap + 1)
    for v, w in zip(_KNAP_V, _KNAP_W):
        new = best.copy()
        for c in range(1, 4):
            wc = int(w) * c
            if wc <= cap:
                new[wc:] = np.maximum(new[wc:], best[: cap + 1 - wc] + v * c)
        best = new
    return -float(best[-1])


def _c_knap_suggest(t: optuna.Trial) -> Params:
    return {f"n{i}": t.suggest_int(f"n{i}", 0, 3) for i in range(10)}


def _c_knap(p: Params) -> float:
    return -float(sum(_KNAP_V[i] * p[f"n{i}"] for i in range(10)))


def _c_knap_cons(p: Params) -> tuple[float]:
    return (float(sum(_KNAP_W[i] * p[f"n{i}"] for i in range(10))) - _KNAP_CAP,)


def _c_bits(p: Params) -> float:
    return _bits_terms(p, 10, False)[1]


def _c_bits_cons(p: Params) -> tuple[float]:
    return (_bits_terms(p, 10, False)[0] - 0.05,)  # quantization error budget


def _c_ackley_suggest(t: optuna.Trial) -> Params:
    return {f"x{i}": t.suggest_float(f"x{i}", -5, 5) for i in range(4)}


def _c_ackley(p: Params) -> float:
    return _ackley(np.array([p[f"x{i}"] for i in range(4)]) - 0.5)


def _c_ackley_cons(p: Params) -> tuple[float]:
    x = np.array([p[f"x{i}"] for i in range(4)])
    return (2.0 - float(np.linalg.norm(x)),)  # outside the ball of radius 2 around 0


def _constrained_problems() -> list[Problem]:
    # sum(x) >= 2 with the unconstrained optimum at sum = -2.5: the optimum lies on the plane.
    gap = 2.0 - float(_HALF_TARGET.sum())
    half_opt = gap**2 / 5
    c = "constrained"
    return [
        Problem(
            "c_sphere5_halfspace",
            "a",
            _c_sphere_suggest,
            _c_sphere,
            SO_TRIALS,
            family=c,
            optimum=half_opt,
            constraints=_c_sphere_cons,
        ),
        Problem(
            "c_rosenbrock2_cubic",
            "a",
            _c_rosen_suggest,
            _c_rosen,
            SO_TRIALS,
            family=c,
            optimum=0.0,
            constraints=_c_rosen_cons,
        ),
        Problem(
            "c_pressure_vessel",
            "a",
            _c_vessel_suggest,
            _c_vessel,
            SO_TRIALS,
            family=c,
            constraints=_c_vessel_cons,
        ),
        Problem(
            "c_knapsack10",
            "a",
            _c_knap_suggest,
            _c_knap,
            SO_TRIALS,
            family=c,
            optimum=_knapsack_optimum(),
            constraints=_c_knap_cons,
        ),
        Problem(
            "c_bits10_size",
            "a",
            _bits_suggest(10),
            _c_bits,
            SO_TRIALS,
            family=c,
            constraints=_c_bits_cons,
        ),
        Problem(
            "c_ackley4_ring",
            "a",
            _c_ackley_suggest,
            _c_ackley,
            SO_TRIALS,
            family=c,
            constraints=_c_ackley_cons,
        ),
    ]


FAMILIES = (
    "continuous",
    "mixed_int",
    "categorical",
    "conditional",
    "noisy",
    "sklearn",
    "flat",
    "multi_objective",
    "constrained",
)


@functools.lru_cache(maxsize=1)
def _all() -> tuple[Problem, ...]:
    out = list(problems())
    out += _function_problems()
    out += _categorical_problems()
    out += _conditional_problems()
    out += _noisy_problems()
    out += _sklearn_problems()
    out += _flat_problems()
    out += _mo_problems()
    out += _constrained_problems()
    order = {f: i for i, f in enumerate(FAMILIES)}
    out.sort(key=lambda p: order[p.family])  # stable: old problems first within a family
    names = [p.name for p in out]
    assert len(set(names)) == len(names), "duplicate problem names"
    return tuple(out)


def all_problems() -> list[Problem]:
    """The whole suite: the old problems (unchanged) and the new families."""
    return list(_all())


def problem_by_name(name: str) -> Problem:
    return {p.name: p for p in _all()}[name]
