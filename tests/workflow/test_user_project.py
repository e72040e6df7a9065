"""A user's own project, as a user would write one: a module with a model function and a data
function in its own directory, run through kmtpe search, worker, report and export, the Python
call, and every mistake a user makes (bad paths, wrong return types, class-count mismatch,
resuming after the module changed)."""

from __future__ import annotations

from collections.abc import Iterator
import itertools
from pathlib import Path
import socket
import subprocess
import sys
import textwrap

import optuna
from optuna.trial import TrialState
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import optuna_kmtpe
from optuna_kmtpe import cli
from optuna_kmtpe.models import build_model
from optuna_kmtpe.models import model_names
from optuna_kmtpe.models import register_model
from optuna_kmtpe.models import unregister_model
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import run_search
from optuna_kmtpe.workflow._sources import STUDY_SOURCES


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cli"))
from tests_cli_helpers import kmtpe_command  # noqa: E402
from tests_cli_helpers import kmtpe_env  # noqa: E402


_TABULAR = """
import torch
from torch import nn
from torch.utils.data import TensorDataset
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split


def data(seed=0):
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    xtr, xva, ytr, yva = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    pair = lambda a, b: TensorDataset(torch.tensor(a, dtype=torch.float32), torch.tensor(b))
    return pair(xtr, ytr), pair(xva, yva)


def model(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0], 32), nn.ReLU(), nn.Linear(32, num_classes))


def three_outputs():
    return nn.Sequential(nn.Linear(30, 3))


class _Doubled(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def linear_subclass(input_shape, num_classes):
    return nn.Sequential(_Doubled(input_shape[0], num_classes))


class _Matrix(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n_in, n_out))

    def forward(self, x):
        return x @ self.w


def no_layer(input_shape, num_classes):
    return _Matrix(input_shape[0], num_classes)


class _Embedded(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.embed = nn.Embedding(64, 8)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.embed(x.long()).mean(1))


def embedding(input_shape, num_classes):
    return _Embedded(num_classes)


def not_a_model():
    return "a string"


def one_dataset():
    return data()[0]


def top1_error(outputs, targets):
    return (outputs.argmax(1) != targets).float().mean()


CALLS = {"data": 0, "model": 0}


def counted_data(seed=0):
    CALLS["data"] += 1
    return data(seed)


def counted_model(input_shape, num_classes):
    CALLS["model"] += 1
    return model(input_shape, num_classes)
"""

_RESIDUAL = '''
import torch
from torch import nn
from torch.utils.data import Dataset
from sklearn.datasets import load_digits


class Digits(Dataset):
    """A map-style Dataset of (image, label), not a TensorDataset."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.tensor(self.x[i], dtype=torch.float32).reshape(1, 8, 8), int(self.y[i])


def data():
    bunch = load_digits()
    x, y = bunch.data[:600] / 16.0, bunch.target[:600]
    return Digits(x[:400], y[:400]), Digits(x[400:500], y[400:500]), Digits(x[500:], y[500:])


class ResidualNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, num_classes))

    def forward(self, x):
        x = self.stem(x)
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.head(torch.relu(x + y))


def model(num_classes):
    return ResidualNet(num_classes)
'''

_REGRESSION = """
import torch
from torch import nn
from torch.utils.data import TensorDataset
from sklearn.datasets import load_diabetes


def data(seed=0):
    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()  # standardized: the MSE starts near 1
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x = torch.tensor(x, dtype=torch.float32)[order]
    y = torch.tensor(y, dtype=torch.float32)[order]
    return TensorDataset(x[:300], y[:300]), TensorDataset(x[300:], y[300:])


def model(input_shape):
    return nn.Sequential(nn.Linear(input_shape[0], 32), nn.ReLU(), nn.Linear(32, 1))


def two_outputs(input_shape):
    return nn.Sequential(nn.Linear(input_shape[0], 2))


def rmse(outputs, targets):
    return float(((outputs.squeeze(1) - targets) ** 2).mean().sqrt())
"""

_FAST = [
    "--pretrain-epochs", "2", "--qat-epochs", "1", "--hessian-max-probes", "8",
    "--threads", "1", "--quiet",
]  # fmt: skip
_counter = itertools.count()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A user project directory (the working directory) and a unique module name in it."""
    name = f"user_project_{next(_counter)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(_TABULAR))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KMTPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path, name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def _main_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(args) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("kmtpe: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ("missing_module:model", "{m}:data", "cannot import 'missing_module'"),
        ("{m}:nope", "{m}:data", "has no attribute 'nope'"),
        ("{m}:not_a_model", "{m}:data", "must return a torch nn.Module, got a str"),
        ("{m}:model", "{m}:one_dataset", "must return (train, val) or (train, val, test)"),
        ("{m}:three_outputs", "{m}:data", "outputs of shape (2, 3)"),
        ("digits_cnn", "{m}:data", "fails on a batch of the data"),
        ("{m}:model", "nomodule:data", "cannot import 'nomodule'"),
        ("vgg", "{m}:data", "Unknown model 'vgg'"),
        # Refused before the float pre-training (no checkpoint cached), not after it.
        ("{m}:linear_subclass", "{m}:data", "a subclass of nn.Linear"),
        ("{m}:no_layer", "{m}:data", "has no quantizable layer"),
        ("{m}:embedding", "{m}:data", "has an nn.Embedding ('embed')"),
    ],
)
def test_user_mistakes_end_in_one_line_before_anything_is_written(
    project: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
    model: str,
    data: str,
    message: str,
) -> None:
    root, name = project
    args = ["search", "--model", model.format(m=name), "--data", data.format(m=name), *_FAST]
    assert message in _main_error(args, capsys)
    assert not (root / "kmtpe.db").exists()
    assert not (root / "cache").exists()  # nothing trained


def test_class_count_mismatch_names_the_classes(
    project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, name = project
    err = _main_error(
        ["search", "--model", f"{name}:three_outputs", "--data", f"{name}:data"], capsys
    )
    assert "the data has 2 classes (labels 0..1)" in err and "(2, 2)" in err


def test_bad_checkpoint_and_metric(
    project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, name = project
    base = ["search", "--model", f"{name}:model", "--data", f"{name}:data"]
    assert "no such file" in _main_error([*base, "--checkpoint", "absent.pt"], capsys)
    torch.save(nn.Linear(3, 3).state_dict(), root / "wrong.pt")
    assert "does not fit the model" in _main_error([*base, "--checkpoint", "wrong.pt"], capsys)
    assert "has no attribute 'f1'" in _main_error([*base, "--metric", f"{name}:f1"], capsys)
    assert "metric_direction applies to a metric" in _main_error(
        [*base, "--metric-direction", "minimize"], capsys
    )
    assert not (root / "kmtpe.db").exists()


def _kmtpe_ok(root: Path, env: dict[str, str], *args: str) -> str:
    """Run ``kmtpe *args`` in the project directory; it must succeed. Returns stdout."""
    proc = subprocess.run(
        [*kmtpe_command(), *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_tabular_project_through_search_worker_report_export(project: tuple[Path, str]) -> None:
    root, name = project
    env = kmtpe_env(root / "cache")
    common = ["--model", f"{name}:model", "--data", f"{name}:data", *_FAST]

    def kmtpe(*args: str) -> str:
        return _kmtpe_ok(root, env, *args)

    out = kmtpe("search", *common, "--trials", "3")
    assert f"Training the float {name}:model on {name}.data" in out and "Pareto front" in out
    # The worker and the report know nothing but the storage: they import the stored paths.
    kmtpe("worker", "--trials", "4", "--quiet")
    out = kmtpe("report", "--trial", "0", "--export-model", "trial0.json")
    assert "equals the search's record" in out
    study = optuna.load_study(study_name="kmtpe", storage="sqlite:///kmtpe.db")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4
    assert study.user_attrs["kmtpe:run"]["model"] == f"{name}:model"
    assert study.user_attrs[STUDY_SOURCES]["data"] == f"{name}:data"
    cached = sorted(p.name for p in (root / "cache").glob("*.pt"))
    assert len(cached) == 1 and cached[0].startswith(f"{name}_model-{name}.data-")


def test_resume_after_the_module_changed_is_refused(project: tuple[Path, str]) -> None:
    root, name = project
    settings = SearchSettings(
        model=f"{name}:model", data=f"{name}:data", n_trials=1, pretrain_epochs=1, qat_epochs=1,
        hessian_max_probes=8, torch_threads=1, warm_start=True,
        storage=f"sqlite:///{root / 'kmtpe.db'}",
    )  # fmt: skip
    study = run_search(settings, log=lambda _m: None, progress=False)
    assert len(study.trials) == 1
    # A trial whose process died: a resumed run would fail and retry it.
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = study._storage.create_new_trial(study._study_id)
    study._storage.set_trial_user_attr(orphan, "worker", f"{socket.gethostname()}:{dead.pid}")
    with open(root / f"{name}.py", "a") as handle:
        handle.write("\n\ndef model(input_shape, num_classes):\n    return None\n")
    lines: list[str] = []
    with pytest.raises(ValueError, match="another version of your model or data.*model's code"):
        run_search(settings.replace(n_trials=2), log=lines.append, progress=False)
    # Refused before anything is said or written: no "Resuming", the orphan left as it was.
    assert not any("Resuming" in line for line in lines), lines
    trials = optuna.load_study(study_name="kmtpe", storage=settings.storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING]


def test_one_process_loads_the_data_and_builds_the_model_once(
    project: tuple[Path, str],
) -> None:
    root, name = project
    settings = SearchSettings(
        model=f"{name}:counted_model", data=f"{name}:counted_data", n_trials=1,
        pretrain_epochs=1, qat_epochs=1, hessian_max_probes=8, torch_threads=1,
        warm_start=False, storage=f"sqlite:///{root / 'kmtpe.db'}",
    )  # fmt: skip
    run_search(settings, log=lambda _m: None, progress=False)
    run_search(settings.replace(n_trials=2), log=lambda _m: None, progress=False)  # resumed
    # The checks, the fingerprint, the float model and the resume share one load and build.
    assert sys.modules[name].CALLS == {"data": 1, "model": 1}


def test_two_projects_never_share_a_checkpoint(project: tuple[Path, str]) -> None:
    from optuna_kmtpe.workflow._prepare import _checkpoint_path
    from optuna_kmtpe.workflow._prepare import load_data
    from optuna_kmtpe.workflow._sources import source_key

    def cache_path(settings: SearchSettings) -> Path:
        splits = load_data(settings)
        return _checkpoint_path(settings, splits.name, sources=source_key(settings, splits))

    root, name = project
    settings = SearchSettings(model=f"{name}:model", data=f"{name}:data")
    first = cache_path(settings)
    source = (root / f"{name}.py").read_text()
    (root / f"{name}.py").write_text(source.replace(", 32)", ", 16)").replace("(32,", "(16,"))
    del sys.modules[name]
    second = cache_path(settings)
    assert first != second


def test_residual_conv_project_with_a_map_style_dataset(project: tuple[Path, str]) -> None:
    root, _ = project
    (root / "resnet_project.py").write_text(textwrap.dedent(_RESIDUAL))
    try:
        settings = SearchSettings(
            model="resnet_project:model", data="resnet_project:data", n_trials=2,
            pretrain_epochs=2, qat_epochs=1, hessian_max_probes=8, torch_threads=1,
            widths=(0.5, 1.0), storage=f"sqlite:///{root / 'kmtpe.db'}",
        )  # fmt: skip
        study = run_search(settings, log=lambda _m: None, progress=False)
    finally:
        sys.modules.pop("resnet_project", None)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    config = study.trials[0].user_attrs["config"]
    assert set(config) == {"stem.0", "conv1", "conv2", "head.2"}
    # The residual addition ties the stem's and conv2's channels: their widths stay whole.
    assert all(
        t.user_attrs["config"][name]["width"] == 1.0
        for t in study.trials
        for name in ("stem.0", "conv2")
    )


def test_python_search_with_a_metric_resumes_and_tells_workers_to_use_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.datasets import load_wine
    from sklearn.metrics import f1_score

    monkeypatch.setenv("KMTPE_CACHE_DIR", str(tmp_path / "cache"))
    x, y = load_wine(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train = TensorDataset(x[order[:120]], y[order[:120]])
    val = TensorDataset(x[order[120:]], y[order[120:]])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Linear(16, 3))

    def macro_f1(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return float(f1_score(targets, outputs.argmax(1), average="macro"))

    storage = f"sqlite:///{tmp_path / 'mine.db'}"
    kwargs = dict(
        trained=False, pretrain_epochs=5, qat_epochs=1, hessian_max_probes=8, torch_threads=1,
        storage=storage, metric=macro_f1, log=lambda _m: None, progress=False,
    )  # fmt: skip
    study = optuna_kmtpe.search(model, train, val, n_trials=2, **kwargs)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.user_attrs["kmtpe:run"]["metric"] == "python.macro_f1"
    study = optuna_kmtpe.search(model, train, val, n_trials=3, **kwargs)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    with pytest.raises(ValueError, match="need the import-path form"):
        run_search(SearchSettings(storage=storage), join_only=True, explicit=())


def test_registered_model_and_mlp_on_any_input() -> None:
    assert build_model("mlp", input_shape=(1, 40))(torch.zeros(2, 1, 40)).shape == (2, 10)
    assert build_model("mlp", input_shape=(3, 32, 32), num_classes=4)(
        torch.zeros(2, 3, 32, 32)
    ).shape == (2, 4)
    register_model(
        "tiny_linear", lambda input_shape, num_classes: nn.Linear(input_shape[0], num_classes)
    )
    try:
        assert "tiny_linear" in model_names()
        assert SearchSettings(model="tiny_linear").model == "tiny_linear"
        assert build_model("tiny_linear", input_shape=(5,), num_classes=3).out_features == 3
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny_linear", lambda: None)
        with pytest.raises(ValueError, match="no ':'"):
            register_model("a:b", lambda: None)
    finally:
        unregister_model("tiny_linear")
    with pytest.raises(ValueError, match="tiny_linear"):
        SearchSettings(model="tiny_linear")
    with pytest.raises(ValueError, match="has no default model"):
        SearchSettings(data="somewhere:load")


def test_metric_by_import_path_is_minimized_and_exported_as_recorded(
    project: tuple[Path, str],
) -> None:
    from optuna_kmtpe.workflow import export_trial_model

    root, name = project
    settings = SearchSettings(
        model=f"{name}:model", data=f"{name}:data", metric=f"{name}:top1_error",
        metric_direction="minimize", n_trials=2, pretrain_epochs=2, qat_epochs=1,
        hessian_max_probes=8, torch_threads=1, storage=f"sqlite:///{root / 'kmtpe.db'}",
    )  # fmt: skip
    study = run_search(settings, log=lambda _m: None, progress=False)
    assert study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["top1_error", "latency_s", "energy_j"]
    errors = [t.values[0] for t in study.trials]
    assert all(0.0 <= e < 0.5 for e in errors)  # an error rate, not an accuracy
    result = export_trial_model(study, 0, str(root / "t0.json"), verify=False)
    assert result.mismatch is None and result.val_accuracy == errors[0]


def test_toml_takes_the_same_keys(tmp_path: Path) -> None:
    (tmp_path / "search.toml").write_text(
        'model = "my_project:model"\ndata = "my_project:data"\ncheckpoint = "float.pt"\n'
        'metric = "my_project:f1"\nmetric-direction = "maximize"\n'
    )
    settings = SearchSettings.from_toml(tmp_path / "search.toml")
    assert (settings.model, settings.data, settings.checkpoint, settings.metric) == (
        "my_project:model", "my_project:data", "float.pt", "my_project:f1",
    )  # fmt: skip


def test_trained_model_from_a_checkpoint_skips_pretraining(project: tuple[Path, str]) -> None:
    root, name = project
    sys.path.insert(0, str(root))  # the fixture restores sys.path
    module = __import__(name)
    torch.save(module.model((30,), 2).state_dict(), root / "float.pt")
    lines: list[str] = []
    settings = SearchSettings(
        model=f"{name}:model", data=f"{name}:data", checkpoint="float.pt", n_trials=1,
        qat_epochs=1, hessian_max_probes=8, torch_threads=1,
        storage=f"sqlite:///{root / 'kmtpe.db'}",
    )  # fmt: skip
    study = run_search(settings, log=lines.append, progress=False)
    assert any("from the checkpoint float.pt" in line for line in lines)
    assert not any(line.startswith("Training the float") for line in lines)
    assert "checkpoint" in study.user_attrs[STUDY_SOURCES]


@pytest.fixture
def regression(project: tuple[Path, str]) -> tuple[Path, str]:
    """The user project with a regression module (diabetes, a small MLP, an RMSE) next to it."""
    root, name = project
    (root / f"{name}_reg.py").write_text(textwrap.dedent(_REGRESSION))
    return root, f"{name}_reg"


def test_loss_setting_is_validated_and_mse_needs_a_metric(
    regression: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root, name = regression
    base = ["search", "--model", f"{name}:model", "--data", f"{name}:data"]
    assert "loss must be one of ['cross_entropy', 'mse'], got 'l1'" in _main_error(
        [*base, "--loss", "l1", "--metric", f"{name}:rmse"], capsys
    )
    assert "needs a metric: accuracy means nothing there" in _main_error(
        [*base, "--loss", "mse"], capsys
    )
    # Float targets under the default loss: the data check points to --loss mse.
    assert "labels must be integer class indices" in _main_error(base, capsys)
    assert "--loss mse" in _main_error(base, capsys)
    err = _main_error(
        ["search", "--model", f"{name}:two_outputs", "--data", f"{name}:data", "--loss", "mse",
         "--metric", f"{name}:rmse", "--metric-direction", "minimize"],
        capsys,
    )  # fmt: skip
    assert "outputs of shape (2, 2)" in err and "must return outputs of shape (2, 1)" in err
    assert not (root / "kmtpe.db").exists() and not (root / "cache").exists()
    with pytest.raises(ValueError, match="loss must be one of"):
        SearchSettings(loss="huber", metric="m:rmse")
    (tmp_path / "search.toml").write_text('loss = "mse"\nmetric = "my_project:rmse"\n')
    assert SearchSettings.from_toml(tmp_path / "search.toml").loss == "mse"
    assert SearchSettings().loss == "cross_entropy"


def test_the_default_loss_keeps_the_cache_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_kmtpe.workflow._prepare import _checkpoint_path

    monkeypatch.setattr(torch, "__version__", "2.13.0")
    settings = SearchSettings(cache_dir="/c")
    path = _checkpoint_path(settings, "digits")
    # The name this checkpoint had before the loss setting existed: caches stay valid.
    assert path.name == "digits_cnn-digits-4aa12d22b289ecdc.pt"
    mse = settings.replace(loss="mse", metric="m:rmse", metric_direction="minimize")
    assert _checkpoint_path(mse, "digits") != path


@pytest.mark.slow
def test_regression_project_through_search_and_report(regression: tuple[Path, str]) -> None:
    root, name = regression
    env = kmtpe_env(root / "cache")
    common = [
        "--model", f"{name}:model", "--data", f"{name}:data", "--loss", "mse",
        "--metric", f"{name}:rmse", "--metric-direction", "minimize", *_FAST,
    ]  # fmt: skip

    def kmtpe(*args: str) -> str:
        return _kmtpe_ok(root, env, *args)

    out = kmtpe("search", *common, "--trials", "3")
    assert "Pareto front" in out
    study = optuna.load_study(study_name="kmtpe", storage="sqlite:///kmtpe.db")
    assert study.metric_names[0] == "rmse"
    assert study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    errors = [t.values[0] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(errors) == 3 and all(0.0 < e < 1.0 for e in errors)  # better than the mean
    out = kmtpe("report")
    lines = out[out.index("trial  ") :].splitlines()
    rows = lines[2 : next((i for i, line in enumerate(lines) if not line.strip()), len(lines))]
    assert lines[0].split()[:2] == ["trial", "rmse"] and rows, out
    column = lines[0].index("rmse")
    cells = [row[column:].split()[0] for row in rows]
    assert not any("%" in cell for cell in cells), out  # an error, not a percentage
    shown = [float(cell) for cell in cells]
    assert shown == sorted(shown), out  # a minimized metric: best first
    out = kmtpe("report", "--trial", "0", "--export-model", "t0.onnx", "--format", "onnx")
    assert "equals the search's record" in out, out
    assert "outputs compared numerically" in out and "% argmax agreement" not in out, out


def test_a_float_model_near_chance_is_warned_about() -> None:
    from optuna_kmtpe.workflow._prepare import near_chance_warning

    labels = torch.arange(100) % 10
    inputs = nn.functional.one_hot(labels, 10).float()
    data = [(inputs, labels)]
    constant = nn.Linear(10, 10)
    nn.init.zeros_(constant.weight)
    nn.init.zeros_(constant.bias)  # always class 0: 10% on balanced labels
    warning = near_chance_warning(constant, data, 10)
    assert warning is not None and "scores 10.0%" in warning and "--pretrain-epochs" in warning
    identity = nn.Linear(10, 10)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(10))
        identity.bias.zero_()
    assert near_chance_warning(identity, data, 10) is None


def test_a_fractional_label_is_the_one_quoted() -> None:
    from optuna_kmtpe.workflow._sources import _as_tensor_dataset

    pairs = TensorDataset(torch.zeros(4, 2), torch.tensor([3.0, 2.5, 1.0, 3.5]))
    with pytest.raises(ValueError, match=r"got floats such as 2\.5;"):
        _as_tensor_dataset(pairs, "--data x (train split)")


def test_layers_left_in_float_and_out_of_the_costs_are_named() -> None:
    from optuna_kmtpe.workflow._prepare import unquantized_warning

    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(8, 16, batch_first=True)
            self.norm = nn.LayerNorm(16)
            self.head = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.norm(self.rnn(x)[0][:, -1]))

    warning = unquantized_warning(Recurrent())
    assert warning is not None and warning.startswith("Warning: 'rnn' (LSTM) hold 95%")
    assert "norm" not in warning  # normalization runs in float by design
    cnn = build_model("digits_cnn", num_classes=10, in_channels=1)
    assert unquantized_warning(cnn) is None


def test_python_objects_are_named_as_objects_not_cli_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMTPE_CACHE_DIR", str(tmp_path / "cache"))
    data = TensorDataset(torch.randn(40, 6), torch.arange(40) % 2)
    three_classes = nn.Sequential(nn.Linear(6, 3))  # the data has two
    with pytest.raises(ValueError, match=r"^the model Sequential returns outputs of shape"):
        optuna_kmtpe.search(three_classes, data, data, storage=f"sqlite:///{tmp_path}/s.db")
    with pytest.raises(ValueError, match=r"^the data given to search\(\) \(train split\): items"):
        optuna_kmtpe.search(nn.Linear(6, 2), [1, 2, 3], data, storage=f"sqlite:///{tmp_path}/s.db")
    assert not (tmp_path / "s.db").exists()
