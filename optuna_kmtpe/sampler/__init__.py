"""K-Means TPE: Optuna's TPE with an exact 1-D k-means split of the trials.

Imports only optuna and numpy.
"""

from __future__ import annotations

from optuna_kmtpe.sampler._diagnostics import split_history
from optuna_kmtpe.sampler._kmeans import KMeans1DResult
from optuna_kmtpe.sampler._kmeans import kmeans_1d
from optuna_kmtpe.sampler._pareto import pareto_mask
from optuna_kmtpe.sampler._sampler import PREDICTION_ATTR_KEY
from optuna_kmtpe.sampler._sampler import SPLIT_ATTR_KEY
from optuna_kmtpe.sampler._sampler import KMeansTPESampler
from optuna_kmtpe.sampler._sampler import default_n_clusters
from optuna_kmtpe.sampler._surrogate import AdditiveBayesianRegression
from optuna_kmtpe.sampler._surrogate import LatentPredictor
from optuna_kmtpe.sampler._surrogate import ObjectivePredictor


__all__ = [
    "AdditiveBayesianRegression",
    "ObjectivePredictor",
    "PREDICTION_ATTR_KEY",
    "KMeans1DResult",
    "KMeansTPESampler",
    "LatentPredictor",
    "SPLIT_ATTR_KEY",
    "default_n_clusters",
    "kmeans_1d",
    "pareto_mask",
    "split_history",
]
