"""Names of the per-trial and per-study records the objective writes (user attrs).

optuna-dashboard shows user attrs in its trials table; ``kmtpe report`` and the dashboard plots
read them back. Metric values are stored under their metric names (``accuracy``,
``latency_s``, ``energy_j``, ``size_bits``, ``bops``, ``throughput_ips``, ``dsp_used``).
"""

from __future__ import annotations


CONFIG = "config"
"""The trial's config, ``QuantConfig.to_dict()``: {layer: {weight_bits, act_bits, width}}."""
ACCURACY = "accuracy"
FEASIBLE = "feasible"
"""False when a budget or the device capacity is violated (training was skipped)."""
SKIPPED_TRAINING = "skipped_training"
STOPPED_EARLY = "stopped_early"
TRAIN_TIME = "train_time_s"
LAYER_LATENCY = "layer_latency_s"
LAYER_ENERGY = "layer_energy_j"
EPOCH_ACCURACY = "accuracy_epoch_"
"""Prefix: ``accuracy_epoch_<i>`` is the validation accuracy after QAT epoch ``i``."""
FAIL_REASON = "fail_reason"
FAIL_TRACEBACK = "fail_traceback"

STUDY_RUN = "kmtpe:run"
"""Study user attr: the settings of the run (so workers and resumed runs rebuild the same job)."""
STUDY_SENSITIVITY = "kmtpe:sensitivity"
"""Study user attr: the Hessian sensitivity report, computed once and reused by every worker."""
STUDY_WARM_STARTED = "kmtpe:warm_started"
"""Study user attr: set once the warm-start configs were enqueued (never enqueue twice)."""
