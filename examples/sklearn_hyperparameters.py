"""KMeansTPESampler in an ordinary scikit-learn hyperparameter study (no torch needed).

Tunes an SVM on scikit-learn's bundled digits data set with 3-fold cross-validation, then
prints the best trial and the k-means split the sampler used on the last trials.

Run::

    python examples/sklearn_hyperparameters.py        # about 10-20 s on 2 CPU cores
"""

from __future__ import annotations

import optuna
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from optuna_kmtpe import KMeansTPESampler
from optuna_kmtpe.sampler import split_history


def main(n_trials: int = 40, seed: int = 0) -> optuna.Study:
    features, labels = load_digits(return_X_y=True)

    def objective(trial: optuna.Trial) -> float:
        model = make_pipeline(
            StandardScaler(),
            SVC(
                C=trial.suggest_float("C", 1e-3, 1e3, log=True),
                gamma=trial.suggest_float("gamma", 1e-5, 1e0, log=True),
                kernel=trial.suggest_categorical("kernel", ["rbf", "sigmoid"]),
            ),
        )
        return float(cross_val_score(model, features, labels, cv=3).mean())

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=KMeansTPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)

    print(f"best accuracy {study.best_value:.4f} with {study.best_params}")
    print("trial  k  good  bad  good threshold (accuracy)  label of the trial")
    for record in split_history(study)[-5:]:
        threshold = record["threshold_good"]
        shown = f"{-threshold:.4f}" if threshold is not None else "-"
        print(
            f"{record['number']:>5}  {record['k']}  {record['n_below']:>4}  {record['n_above']:>3}"
            f"  {shown:>25}  {record['label']}"
        )
    return study


if __name__ == "__main__":
    main()
