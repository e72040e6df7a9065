"""Recording constraint values so that Optuna AND optuna-dashboard 0.21 both see them.

Optuna 5's ``Trial.set_constraint(key, value)`` stores each value under the system attribute
``constraints:<key>``. optuna-dashboard 0.21 only reads the legacy list attribute
``constraints`` (the format of the deprecated ``constraints_func``), so constraints set the new
way show as ``[]`` in the dashboard and infeasible trials are not greyed out.

Optuna 5 reads both formats and merges them (``FrozenTrial.constraints`` returns the legacy
values under the keys ``"0"``, ``"1"``, ...), so writing the values in BOTH formats would count
every constraint twice: TPE and NSGA-II would double the violation sums and GPSampler would
model each constraint twice. :func:`record_constraints` therefore writes the legacy list
only (every Optuna 5 sampler and plot reads it) and keeps the names in a trial user attribute
(``constraints``: ``{name: value}``), which the dashboard shows in the trials table.
"""

from __future__ import annotations

from collections.abc import Mapping
import math

import optuna

from optuna_kmtpe.dashboard import _keys


_LEGACY_KEY = "constraints"
_NEW_FORMAT_PREFIX = "constraints:"


def record_constraints(trial: optuna.Trial, constraints: Mapping[str, float]) -> bool:
    """Record a running trial's constraint values (``<= 0`` means satisfied).

    Use it instead of ``Trial.set_constraint`` so that optuna-dashboard 0.21 shows the values
    and greys out infeasible trials. Calling it again replaces the values.

    Args:
        trial: The running trial (the ``trial`` argument of the objective).
        constraints: Constraint name -> value, e.g. ``{"latency_s": latency - budget}``.
            Order is kept; values must be finite-or-infinite floats, never NaN.

    Returns:
        Whether the trial is feasible (every value ``<= 0``).

    Raises:
        ValueError: On an empty mapping, a non-string name, a NaN or non-numeric value, or if
            the trial already has constraints set with ``Trial.set_constraint`` (mixing the
            two would count each constraint twice).

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> trial = study.ask()
        >>> record_constraints(trial, {"latency_s": -0.2, "dsp": 3.0})
        False
        >>> _ = study.tell(trial, 1.0)
        >>> study.trials[0].constraints
        {'0': -0.2, '1': 3.0}
    """
    if not isinstance(constraints, Mapping) or not constraints:
        raise ValueError(
            "record_constraints needs a non-empty mapping {name: value}, e.g. "
            "{'latency_s': latency - budget}; a value <= 0 means the constraint is met."
        )
    names: list[str] = []
    values: list[float] = []
    for name, value in constraints.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"record_constraints: names must be non-empty strings, got {name!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"record_constraints: the value of {name!r} must be a float, got {value!r}."
            ) from None
        if math.isnan(number):
            raise ValueError(
                f"record_constraints: the value of {name!r} is NaN; record a large positive "
                f"value for a violated constraint or fail the trial instead."
            )
        names.append(name)
        values.append(number)

    storage = trial.storage
    trial_id = trial._trial_id
    system_attrs = storage.get_trial_system_attrs(trial_id)
    already_new = sorted(k for k in system_attrs if k.startswith(_NEW_FORMAT_PREFIX))
    if already_new:
        raise ValueError(
            f"record_constraints: trial {trial.number} already has {already_new} from "
            f"Trial.set_constraint; use only one of the two, or each constraint counts twice."
        )
    storage.set_trial_system_attr(trial_id, _LEGACY_KEY, values)
    # Trial caches a frozen copy; keep it consistent, as Trial.set_constraint does.
    cached = getattr(trial, "_cached_frozen_trial", None)
    if cached is not None:
        cached.system_attrs[_LEGACY_KEY] = values
    trial.set_user_attr(_keys.CONSTRAINTS, dict(zip(names, values)))
    return all(v <= 0.0 for v in values)
