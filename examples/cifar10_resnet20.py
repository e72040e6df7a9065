"""ResNet-20 on CIFAR-10: the standard mixed-precision benchmark, for users with a GPU.

Needs the ``vision`` extra (``pip install -e '.[vision]'``, a torchvision build matching your
torch) and CIFAR-10 on disk or internet access for the first download::

    python examples/cifar10_resnet20.py --data-dir ~/datasets --download

Training runs on the GPU when one is present (device selection is automatic). On a CPU the
float pre-training alone takes hours; use the digits job (``kmtpe search``) there instead.
"""

from __future__ import annotations

import argparse

from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import format_pareto_table
from optuna_kmtpe.workflow import pareto_rows
from optuna_kmtpe.workflow import run_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="where CIFAR-10 is (or goes)")
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 if missing")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--storage", default="sqlite:///cifar10_resnet20.db")
    args = parser.parse_args()

    if args.download:
        from optuna_kmtpe.data import load_cifar10

        load_cifar10(args.data_dir, download=True)  # fetch once; the search reads from disk

    settings = SearchSettings(
        model="resnet20",
        data="cifar10",
        data_dir=args.data_dir,
        weight_bits=(2, 3, 4, 6, 8),
        act_bits=(4, 8),
        widths=(0.5, 0.75, 1.0),  # only the 9 block-internal convs are prunable (residual ties)
        device="zcu102",
        n_trials=args.trials,
        pretrain_epochs=160,
        qat_epochs=3,
        lr=0.01,
        hessian_max_probes=200,
        study_name="cifar10-resnet20",
        storage=args.storage,
    )
    study = run_search(settings)
    print(format_pareto_table(pareto_rows(study)))


if __name__ == "__main__":
    try:
        main()
    except (ImportError, FileNotFoundError) as exc:  # no torchvision, or no dataset on disk
        raise SystemExit(f"cifar10_resnet20.py: {exc}") from None
