"""The private Optuna names KMeansTPESampler relies on, checked in one place.

Optuna's TPE internals are private and change between releases (5.0 changed
``_split_trials``, ``_get_params`` and ``_get_internal_repr``). Rather than fail deep inside
sampling with an ``AttributeError``, the sampler checks these names once and raises an error
that names what changed. The test-suite runs the same check (the "canary").
"""

from __future__ import annotations

from functools import lru_cache
import inspect
import pkgutil


# (dotted location, expected parameter names in order)
REQUIRED_PRIVATE_API: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("optuna.samplers.TPESampler._sample", ("self", "study", "trial", "search_space")),
    (
        "optuna.samplers.TPESampler._sample_relative",
        ("self", "study", "trial", "search_space"),
    ),
    (
        "optuna.samplers.TPESampler._build_parzen_estimator",
        ("self", "study", "search_space", "trials", "handle_below"),
    ),
    (
        "optuna.samplers.TPESampler._compute_acquisition_func",
        ("self", "samples", "mpe_below", "mpe_above"),
    ),
    ("optuna.samplers.TPESampler._compare", ("samples", "acquisition_func_vals")),
    ("optuna.samplers.TPESampler._get_internal_repr", ("self", "trials", "search_space", "study")),
    ("optuna.samplers.TPESampler._get_params", ("self", "trial", "study")),
    (
        "optuna.samplers._tpe.parzen_estimator._ParzenEstimator.__init__",
        ("self", "observations", "search_space", "parameters", "predetermined_weights"),
    ),
    (
        "optuna.study._multi_objective._fast_non_domination_rank",
        ("loss_values", "penalty", "n_below"),
    ),
    (
        "optuna.study._multi_objective._is_pareto_front",
        ("loss_values", "assume_unique_lexsorted"),
    ),
    ("optuna.samplers._tpe._erf.erf", ("x",)),
    (
        "optuna._hypervolume.compute_hypervolume",
        ("loss_vals", "reference_point", "assume_pareto"),
    ),
    ("optuna.study.Study._get_trials", ("self", "deepcopy", "states", "use_cache")),
)

# Instance attributes set by TPESampler.__init__ that the subclass reads.
REQUIRED_TPE_ATTRIBUTES: tuple[str, ...] = (
    "_rng",
    "_n_ei_candidates",
    "_constant_liar",
    "_parzen_estimator_parameters",
    "_parzen_estimator_cls",
    "_random_sampler",
)


def find_private_api_changes() -> list[str]:
    """Return one message per private Optuna name that is missing or changed its signature."""
    problems = []
    for dotted, expected in REQUIRED_PRIVATE_API:
        try:
            obj = pkgutil.resolve_name(dotted)
        except (ImportError, AttributeError) as error:
            problems.append(f"{dotted} is missing ({error!r})")
            continue
        try:
            names = tuple(inspect.signature(obj).parameters)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            problems.append(f"{dotted} has no inspectable signature ({error!r})")
            continue
        if names != expected:
            problems.append(f"{dotted} signature changed: expected {expected}, found {names}")
    try:
        from optuna.samplers import TPESampler

        instance = TPESampler(seed=0)
        for attribute in REQUIRED_TPE_ATTRIBUTES:
            if not hasattr(instance, attribute):
                problems.append(f"optuna.samplers.TPESampler instances lack {attribute}")
        if not hasattr(instance._parzen_estimator_parameters, "weights"):
            problems.append("TPESampler._parzen_estimator_parameters has no `weights` field")
    except Exception as error:  # pragma: no cover - only on a broken Optuna
        problems.append(f"optuna.samplers.TPESampler(seed=0) failed: {error!r}")
    return problems


@lru_cache(maxsize=1)
def check_private_api() -> None:
    """Raise ``RuntimeError`` naming every private Optuna name that changed (checked once)."""
    problems = find_private_api_changes()
    if problems:
        import optuna

        raise RuntimeError(
            f"KMeansTPESampler relies on private Optuna internals that changed in optuna "
            f"{optuna.__version__}: " + "; ".join(problems) + ". Install the tested Optuna "
            "line (optuna>=5.0,<5.1) or update optuna_kmtpe.sampler."
        )
