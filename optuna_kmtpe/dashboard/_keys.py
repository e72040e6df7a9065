"""Names of the attributes the dashboard helpers read: the contract with the objective.

The objective (``optuna_kmtpe.objectives``) writes these keys; the dashboard helpers only read
them, and every one of them may be missing (a failed or infeasible trial records fewer). Keep
the strings stable: they are stored in users' databases.

Trial user attributes (visible in the dashboard's trials table):

==========================  ================================================================
key                         value
==========================  ================================================================
``config``                  ``QuantConfig.to_dict()``: ``{layer: {weight_bits, act_bits, width}}``
``accuracy``                validation/test accuracy in ``[0, 1]``
``latency_s``               modelled accelerator latency of one inference, seconds
``energy_j``                modelled energy of one inference, joules
``size_bits``               model size, bits
``bops``                    bit operations of one inference
``throughput_ips``          modelled inferences per second of the layer-pipelined design
``dsp_used``                DSP slices the design needs
``feasible``                ``bool``: every hardware budget met
``train_time_s``            wall time of QAT/PTQ, seconds
``layer_latency_s``         ``{layer: seconds}``
``layer_energy_j``          ``{layer: joules}``
``constraints``             ``{name: value}`` written by :func:`record_constraints` (``<= 0``: met)
==========================  ================================================================

Study user attributes:

* ``kmtpe:sensitivity``: the Hessian sensitivity report (``SensitivityReport.save_to_study``):
  ``layers`` is a list of ``{"name", "trace", "trace_stderr", ...}`` dicts; a large report
  continues in ``kmtpe:sensitivity:1``, ``:2``, ... (``extra_chunks`` says how many). Also
  accepted: ``layers`` as module paths with ``trace`` (and ``trace_stderr``) as a
  ``{layer: value}`` dict or a list aligned with ``layers``.
* ``kmtpe:run``: a flat-ish dict describing the run (model, data, device preset, objectives,
  search-space sizes...); rendered as a table in the study note.
"""

from __future__ import annotations


CONFIG = "config"
ACCURACY = "accuracy"
LATENCY_S = "latency_s"
ENERGY_J = "energy_j"
SIZE_BITS = "size_bits"
BOPS = "bops"
THROUGHPUT_IPS = "throughput_ips"
DSP_USED = "dsp_used"
FEASIBLE = "feasible"
TRAIN_TIME_S = "train_time_s"
LAYER_LATENCY_S = "layer_latency_s"
LAYER_ENERGY_J = "layer_energy_j"
CONSTRAINTS = "constraints"

TRIAL_METRIC_KEYS: tuple[str, ...] = (
    ACCURACY,
    LATENCY_S,
    ENERGY_J,
    SIZE_BITS,
    BOPS,
    THROUGHPUT_IPS,
    DSP_USED,
    TRAIN_TIME_S,
)
"""Scalar trial user attributes the plots and the note may show."""

STUDY_SENSITIVITY = "kmtpe:sensitivity"
STUDY_RUN = "kmtpe:run"

# Stable graph ids: re-saving under the same id overwrites the plot instead of adding one.
GRAPH_LAYER_CONFIG = "kmtpe-layer-config"
GRAPH_SENSITIVITY = "kmtpe-sensitivity-bits"
GRAPH_PARETO = "kmtpe-pareto-hardware"
GRAPH_SAMPLER_SPLIT = "kmtpe-sampler-split"
GRAPH_IDS: tuple[str, ...] = (
    GRAPH_LAYER_CONFIG,
    GRAPH_SENSITIVITY,
    GRAPH_PARETO,
    GRAPH_SAMPLER_SPLIT,
)
