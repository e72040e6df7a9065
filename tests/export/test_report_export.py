"""kmtpe report --export-model --format: the exported file is the trial's model."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from optuna_kmtpe.cli import main
from optuna_kmtpe.workflow import SearchSettings
from optuna_kmtpe.workflow import run_search


pytest.importorskip("onnxruntime")
pytest.importorskip("qonnx")


@pytest.mark.slow
def test_report_exports_the_trials_model_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 'kmtpe.db'}"
    settings = SearchSettings(
        storage=storage,
        n_trials=2,
        qat_epochs=1,
        pretrain_epochs=3,
        hessian_max_probes=16,
        quantizer="power_of_two",
        cache_dir=str(tmp_path / "cache"),
    )
    run_search(settings, log=lambda _msg: None, progress=False)
    capsys.readouterr()
    for fmt in ("qonnx", "onnx", "json"):
        path = tmp_path / f"model.{fmt}"
        argv = ["report", "--storage", storage, "--trial", "0", "--export-model", str(path)]
        assert main([*argv, "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "test accuracy" in out
        assert "equals the search's record: this is the trial's model" in out
        if fmt == "json":
            assert json.loads(path.read_text())["trial"] == 0
            continue
        runtime = "qonnx" if fmt == "qonnx" else "onnxruntime"
        assert f"Checked the file with {runtime}: 100.00% argmax agreement" in out
        meta = {p.key: json.loads(p.value) for p in onnx.load(path).metadata_props}
        assert meta["trial"] == 0 and meta["quantizer"] == "power_of_two"
    hls_config = json.loads((tmp_path / "model.qonnx.hls4ml.json").read_text())
    assert hls_config["LayerName"]["features_0"]["kmtpe"]["weight"]["exact_fixed_point"]


def test_report_rejects_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--trial", "0", "--export-model", "m", "--format", "tflite"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
