"""The names of the built-in metrics, with no dependency at all.

:mod:`optuna_kmtpe.records` defines the metric schema and re-exports these names (import them
from there); they live here so that modules which must not import optuna, the numpy-only
hardware model first, write the same names. Keep the strings stable: they are stored in users'
databases.
"""

ACCURACY = "accuracy"
VAL_LOSS = "val_loss"
LATENCY_S = "latency_s"
ENERGY_J = "energy_j"
SIZE_BITS = "size_bits"
BOPS = "bops"
THROUGHPUT_IPS = "throughput_ips"
DSP_USED = "dsp_used"
FEASIBLE = "feasible"
LAYER_LATENCY_S = "layer_latency_s"
LAYER_ENERGY_J = "layer_energy_j"
