"""The ``kmtpe`` command: search, worker, sensitivity, report, dashboard, devices.

Every error a user can cause (unknown model or preset, unreachable storage, bad budgets) ends
the command with one clear message on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
import logging
import math
import sys
from typing import Any
import warnings

import optuna

from optuna_kmtpe._registry import dataset_names
from optuna_kmtpe._registry import model_names
from optuna_kmtpe._registry import quantizer_names
from optuna_kmtpe.records import METRICS
from optuna_kmtpe.records import cost_metrics
from optuna_kmtpe.records import redact_credentials
from optuna_kmtpe.records import study_quality


# Each command imports the layer it runs (workflow, dashboard, hardware) when it runs, so that
# `kmtpe --help` loads none of them: the workflow costs about 0.3 s, the dashboard's plotly 1.5 s.
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _budget(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected METRIC=VALUE such as latency_s=2e-5, got {text!r}"
        ) from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 1 to 65535, got {text!r}")
    return port


def _names(kind: str) -> str:
    """The registered model, dataset or quantizer names, for help texts."""
    names = {"model": model_names, "data": dataset_names, "quantizer": quantizer_names}[kind]()
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def _metric_names(*, budgets: bool = False) -> str:
    """The metrics an objective (or a budget) can name, with their units, for help texts."""
    names = cost_metrics() if budgets else tuple(METRICS)
    shown = ", ".join(f"{n} [{METRICS[n].unit}]" if METRICS[n].unit else n for n in names)
    return shown.replace("%", "%%")  # argparse formats help texts with %


def _add_study_args(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    parser.add_argument(
        "--storage",
        default="sqlite:///kmtpe.db" if defaults else None,
        help="Optuna storage URL (sqlite:///kmtpe.db, postgresql+psycopg2://...) or a journal "
        "file path (default: sqlite:///kmtpe.db)",
    )
    parser.add_argument(
        "--study-name", default="kmtpe" if defaults else None, help="study name (default: kmtpe)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmtpe",
        description="Hardware-aware mixed-precision quantization search with K-Means TPE.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show Optuna's own logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    search = sub.add_parser(
        "search",
        help="run (or resume) a search; with no arguments: digits, small CNN, kmtpe.db",
        description="Run a mixed-precision search. Re-running with the same storage and study "
        "name resumes it: the study keeps the settings it was started with, and only --trials, "
        "--timeout, --threads and --cache-dir may change (any other flag that differs is an "
        "error). Killed or interrupted trials are retried, so one re-run completes the study. "
        "Flags override the --config TOML file (its keys: the flag names, see "
        "examples/search.toml).",
    )
    search.add_argument("--config", help="TOML file with any of the settings below")
    search.add_argument(
        "--model",
        help=f"{_names('model')}, or MODULE:CALLABLE returning your nn.Module (imported from "
        "the working directory; untrained, or trained with --checkpoint). Default: the data's "
        "model, digits_cnn for digits, resnet20_1d for mnist1d",
    )
    search.add_argument(
        "--data",
        help=f"{_names('data')} (default digits, embedded; mnist1d generated offline; mnist and "
        "cifar10 need the vision extra), or MODULE:CALLABLE returning (train, val[, test]) "
        "torch Datasets of (input, label)",
    )
    search.add_argument(
        "--checkpoint",
        help="state dict of --model (torch.save(model.state_dict(), PATH)) used instead of "
        "float pre-training",
    )
    search.add_argument(
        "--metric",
        help="MODULE:CALLABLE metric(outputs, targets) -> float on the validation split, in "
        "place of accuracy (e.g. top-5, F1)",
    )
    search.add_argument(
        "--metric-direction", help="maximize (default) or minimize, the direction of --metric"
    )
    search.add_argument(
        "--loss",
        help="training loss: cross_entropy (default; labels are class indices) or mse (float "
        "targets, a regression; needs --metric)",
    )
    search.add_argument("--data-dir", help="directory holding torchvision datasets")
    search.add_argument(
        "--data-samples", type=int, help="samples generated for mnist1d (default 5000)"
    )
    # The lists stay strings here: the settings parse "2,4,8" as they do in a TOML file.
    search.add_argument("--weight-bits", help="candidate weight bits, e.g. 2,4,8")
    search.add_argument("--act-bits", help="candidate activation bits, e.g. 4,8")
    search.add_argument("--widths", help="candidate widths, e.g. 0.5,0.75,1")
    # Every search flag's dest is its setting's name and its default None (unset): the settings
    # given are read off the parsed arguments (_search_overrides).
    order = search.add_mutually_exclusive_group()
    order.add_argument(
        "--hard-order",
        action="store_const",
        const=True,
        dest="constrained",
        help="constrain the space by the Hessian order (a more sensitive layer never gets "
        "fewer bits); by default the Hessian is used softly, as the sampler's accuracy prior",
    )
    order.add_argument(
        "--unconstrained",
        action="store_const",
        const=False,
        dest="constrained",
        help="search every layer independently (the default; kept for old command lines)",
    )
    search.add_argument(
        "--objectives",
        help=f"comma-separated metrics from {_metric_names()} (e.g. accuracy,latency_s,energy_j)",
    )
    search.add_argument(
        "--budget",
        type=_budget,
        action="append",
        metavar="METRIC=VALUE",
        help=f"upper limit on a cost ({_metric_names(budgets=True)}), e.g. latency_s=2e-5 "
        "(repeatable); over-budget configs are recorded as infeasible and not trained",
    )
    search.add_argument("--device", help="FPGA preset (see `kmtpe devices`) or a TOML/JSON file")
    search.add_argument(
        "--trials",
        type=int,
        dest="n_trials",
        help="COMPLETE trials the study must hold, warm starts included (default 40): the "
        "first (up to 5; the output says how many) are warm starts (uniform 8/4-bit, "
        "HAWQ-V2; none with --no-warm-start) and the sampler proposes the rest, so a run of "
        "--trials 5 may be all warm starts",
    )
    search.add_argument("--timeout", type=float, help="stop starting trials after this many s")
    search.add_argument("--seed", type=int, help="seed of data split, training and sampler")
    _add_study_args(search, defaults=False)
    search.add_argument("--sampler", help="kmtpe (default), tpe, random or nsga2")
    search.add_argument(
        "--no-warm-start",
        action="store_false",
        dest="warm_start",
        default=None,
        help="do not enqueue warm starts",
    )
    search.add_argument(
        "--no-pruning-prior",
        action="store_false",
        dest="pruning_prior",
        default=None,
        help="do not measure pruned layers by post-training quantization before the search "
        "(the sampler then learns what each width costs from trained trials alone)",
    )
    search.add_argument(
        "--accuracy-window",
        type=float,
        metavar="FRACTION",
        help="the kmtpe forecast's region of interest: accuracy down to this fraction below "
        "the float model's counts (default 0.05); widen it when less accurate configs are "
        "still of use",
    )
    search.add_argument(
        "--quantizer",
        metavar="NAME",
        help=f"registered quantizer of every layer: {_names('quantizer')} (default uniform; "
        "power_of_two: power-of-two scales, which fixed-point FPGA flows such as hls4ml and "
        "FINN map exactly, at some accuracy cost, docs/export.md)",
    )
    search.add_argument(
        "--power-of-two-scales",
        action="store_true",
        default=None,
        help="deprecated: the same as --quantizer power_of_two",
    )
    search.add_argument("--rounding", help="weight rounding in QAT: nearest (default), stochastic")
    search.add_argument(
        "--range-method", help="weight clipping range: mse (default, per channel) or max"
    )
    for kind, words, default in (
        ("weights", "weights", "symmetric"),
        ("acts", "activations", "asymmetric"),
    ):
        search.add_argument(
            f"--symmetric-{kind}",
            action=argparse.BooleanOptionalAction,
            help=f"symmetric {words} (zero point 0) or not (a zero point); default {default}",
        )
    search.add_argument("--mode", help="qat (default) or ptq")
    search.add_argument("--qat-epochs", type=int, help="QAT epochs per trial (default 2)")
    search.add_argument("--lr", type=float, help="QAT learning rate (default 0.01)")
    search.add_argument(
        "--pretrain-epochs",
        type=int,
        help="epochs of float pre-training (default 30)",
    )
    search.add_argument("--cache-dir", help="where the float checkpoint is cached")
    search.add_argument(
        "--hessian-max-probes", type=int, help="cap on Hutchinson probes per layer (default 1000)"
    )
    search.add_argument(
        "--threads", type=int, dest="torch_threads", help="torch CPU threads (default: auto)"
    )
    search.add_argument("--quiet", action="store_true", help="no progress bars")

    worker = sub.add_parser(
        "worker",
        help="join an existing study on a shared storage and run trials",
        description="Join a study started by `kmtpe search` (same storage URL and study name) "
        "and run trials; start several workers on one PostgreSQL/MySQL storage to distribute.",
    )
    _add_study_args(worker)
    worker.add_argument(
        "--trials",
        type=int,
        dest="n_trials",
        help="the study's total: COMPLETE trials the whole study must hold, counting every "
        "worker's and the search's, not this worker's own share (default: the number the "
        "study was started with)",
    )
    worker.add_argument("--timeout", type=float, help="stop starting trials after this many s")
    worker.add_argument("--quiet", action="store_true", help="no progress bars")

    sens = sub.add_parser("sensitivity", help="print the per-layer Hessian sensitivity table")
    sens.add_argument(
        "--model", help=f"{_names('model')} or MODULE:CALLABLE (default: the data's model)"
    )
    sens.add_argument(
        "--data", default="digits", help=f"{_names('data')} or MODULE:CALLABLE (default digits)"
    )
    sens.add_argument("--data-dir", help="directory holding torchvision datasets")
    sens.add_argument("--seed", type=int, default=0)
    sens.add_argument("--json", dest="json_out", help="also write the report as JSON here")
    sens.add_argument("--cache-dir", help="where the float checkpoint is cached")

    report = sub.add_parser("report", help="Pareto front of a stored study; export configs/models")
    _add_study_args(report)
    report.add_argument("--json", action="store_true", help="print the front as JSON")
    report.add_argument("--trial", type=int, help="trial number to export")
    report.add_argument("--export-config", metavar="FILE", help="write --trial's config as JSON")
    report.add_argument(
        "--export-model",
        metavar="FILE",
        help="re-train --trial's config exactly as the search did and write the quantized model "
        "in --format, then run the file and compare it with the torch model",
    )
    report.add_argument(
        "--format",
        default="json",
        choices=("qonnx", "onnx", "json"),
        help="qonnx: Quant nodes with each layer's bits, scales, zero points (FINN, hls4ml; also "
        "writes FILE.hls4ml.json, the per-layer precision config); onnx: QuantizeLinear/"
        "DequantizeLinear for onnxruntime (bits <= 8); json: integer weights, scales, zero "
        "points (default)",
    )

    dash = sub.add_parser("dashboard", help="start optuna-dashboard on the study's storage")
    _add_study_args(dash)
    dash.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    dash.add_argument("--port", type=_port, default=8080, help="TCP port (default 8080)")

    sub.add_parser("devices", help="list the FPGA device presets")
    return parser


def _search_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags: every search flag but these, where not None (not given)."""
    not_settings = ("command", "verbose", "config", "quiet")
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in not_settings}
    if "budget" in overrides:
        overrides["budgets"] = dict(overrides.pop("budget"))
    return overrides


def _search_settings_and_names(args: argparse.Namespace) -> tuple[Any, frozenset[str]]:
    from optuna_kmtpe.workflow._settings import load_settings

    return load_settings(config=args.config, overrides=_search_overrides(args))


def _search_settings(args: argparse.Namespace) -> Any:
    return _search_settings_and_names(args)[0]


def _watch_hint(storage: str, study_name: str) -> str:
    command = f"kmtpe dashboard --storage {redact_credentials(storage)}"
    return command + (f" --study-name {study_name}" if study_name != "kmtpe" else "")


def _cmd_search(args: argparse.Namespace) -> int:
    from optuna_kmtpe.workflow import format_pareto_table
    from optuna_kmtpe.workflow import pareto_rows
    from optuna_kmtpe.workflow import run_search

    settings, explicit = _search_settings_and_names(args)
    study = run_search(settings, explicit=explicit, progress=not args.quiet)
    print()
    shown = redact_credentials(settings.storage)
    print(f"Pareto front of study {study.study_name!r} ({shown}):")
    print(format_pareto_table(pareto_rows(study), quality=study_quality(study)))
    print()
    print(f"Watch it live: {_watch_hint(settings.storage, study.study_name)}")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from optuna_kmtpe.workflow import SearchSettings
    from optuna_kmtpe.workflow import run_search

    overrides = {"n_trials": args.n_trials, "timeout": args.timeout}
    given = {name: value for name, value in overrides.items() if value is not None}
    settings = SearchSettings(storage=args.storage, study_name=args.study_name, **given)
    # Only the trial count and timeout come from here; the job is the study's.
    run_search(settings, join_only=True, explicit=given, progress=not args.quiet)
    return 0


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from optuna_kmtpe.workflow import SearchSettings
    from optuna_kmtpe.workflow import sensitivity_report

    settings = SearchSettings(
        model=args.model, data=args.data, data_dir=args.data_dir, seed=args.seed,
        cache_dir=args.cache_dir,
    )  # fmt: skip
    report = sensitivity_report(settings)
    print(report.to_table())
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(report.to_json())
        print(f"Wrote {args.json_out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from optuna_kmtpe.workflow import export_trial_model
    from optuna_kmtpe.workflow import format_pareto_table
    from optuna_kmtpe.workflow import load_study
    from optuna_kmtpe.workflow import pareto_rows
    from optuna_kmtpe.workflow import trial_config

    study = load_study(args.storage, args.study_name)
    if (args.export_config or args.export_model) and args.trial is None:
        raise ValueError("--export-config/--export-model need --trial N (see the table).")
    if args.export_config:
        config = trial_config(study, args.trial)
        with open(args.export_config, "w") as f:
            f.write(config.to_json(indent=2))
        print(f"Wrote the config of trial {args.trial} to {args.export_config}")
    if args.export_model:
        result = export_trial_model(study, args.trial, args.export_model, format=args.format)
        quality = study_quality(study)
        print(
            f"Wrote the quantized model of trial {args.trial} to {args.export_model} "
            f"({args.format}, test {quality.name} {quality.format(result.test_accuracy)})"
        )
        if result.mismatch is None:
            print(
                f"Validation {quality.name} {quality.format(result.val_accuracy)} equals the "
                "search's record: this is the trial's model."
            )
        else:
            print(f"Note: {result.mismatch}.")
        for check in result.checks:
            print(f"Checked the file with {check.summary()}")
        for extra in result.extra_files:
            print(f"Wrote the hls4ml per-layer precision config to {extra}")
    if args.export_config or args.export_model:
        return 0
    rows = pareto_rows(study)
    if args.json:
        # JSON has no Infinity or NaN: a missing or unbounded value is null.
        print(json.dumps(_finite(rows), indent=2, allow_nan=False))
    else:
        print(f"Pareto front of study {study.study_name!r}: {len(rows)} configs")
        print(format_pareto_table(rows, quality=study_quality(study)))
    return 0


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (JSON has none) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_kmtpe.dashboard._serve import run_server
    from optuna_kmtpe.workflow import load_study

    study = load_study(args.storage, args.study_name)
    try:
        from optuna_kmtpe.dashboard import publish_dashboard

        publish_dashboard(study)
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 - a read-only database still serves
        reason = redact_credentials(str(exc).strip().splitlines()[0] if str(exc) else repr(exc))
        print(
            f"kmtpe: warning: could not refresh the kmtpe plots ({reason}); serving the study "
            "as stored.",
            file=sys.stderr,
        )
    page = f"http://{args.host}:{args.port}/dashboard/studies/{study._study_id}"
    print(f"optuna-dashboard on {page} (Ctrl-C to stop)")
    run_server(args.storage, host=args.host, port=args.port)
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from optuna_kmtpe.hardware import DEVICE_PRESETS

    for name, device in DEVICE_PRESETS.items():
        print(f"{name:12s} {device}")
    return 0


_COMMANDS = {
    "search": _cmd_search,
    "worker": _cmd_worker,
    "sensitivity": _cmd_sensitivity,
    "report": _cmd_report,
    "dashboard": _cmd_dashboard,
    "devices": _cmd_devices,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kmtpe`` console script."""
    args = build_parser().parse_args(argv)
    # Called in-process (from Python or a test), the command leaves the caller's logging and
    # warning settings as it found them.
    own_logger = logging.getLogger("optuna_kmtpe")
    saved = optuna.logging.get_verbosity(), own_logger.level
    with warnings.catch_warnings():
        # Heartbeats and metric names are "experimental" in Optuna 5 but stable enough for us;
        # the warnings would only confuse users of the command.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if not args.verbose:
            # The command prints its own line per trial, failures included.
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            own_logger.setLevel(logging.ERROR)
        try:
            return _run_command(args)
        finally:
            optuna.logging.set_verbosity(saved[0])
            own_logger.setLevel(saved[1])


def _run_command(args: argparse.Namespace) -> int:
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(
            "kmtpe: interrupted; finished trials are stored. Run the same command to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (ValueError, OSError, ImportError) as exc:
        if args.verbose:
            raise
        print(f"kmtpe: error: {redact_credentials(_one_line(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) if len(lines) <= 2 else lines[0]


if __name__ == "__main__":
    sys.exit(main())
