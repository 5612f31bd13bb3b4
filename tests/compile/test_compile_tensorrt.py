"""`mdp-trt compile --backend tensorrt` against the faithful TensorRT fake (tests/latency/fake_tensorrt.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdp_trt.cli import main
from mdp_trt.io import save_model_atomic
from mdp_trt.zoo import build as zoo_build
from tests.latency import fake_tensorrt


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    path = tmp_path / "toy.onnx"
    save_model_atomic(zoo_build("toy", input_size=32, batch=None), path)
    return path


@pytest.mark.parametrize("version", ["10.7.0", "11.0.0"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_compile_writes_an_engine_and_its_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toy: Path,
                                                   version: str, precision: str) -> None:
    trt, rt = fake_tensorrt.install(monkeypatch, version)
    out = tmp_path / "engine"
    db = tmp_path / "db" / "latency.sqlite"
    code = main(["compile", str(toy), "-o", str(out), "--backend", "tensorrt", "--batch", "4",
                 "--precision", precision, "--db", str(db)])
    assert code == 0
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine((out / "model.engine").read_bytes()) is not None
    sidecar = json.loads((out / "model.engine.json").read_text())
    assert sidecar["tensorrt_version"] == version and sidecar["device"]["name"] == "Fake GPU"
    assert (sidecar["batch"], sidecar["precision"]) == (4, precision)
    assert sidecar["build"]["tf32"] is True
    assert sidecar["build"]["convert_graph_fp16"] == (precision == "fp16" and version.startswith("11"))
    inputs = [t for t in sidecar["io"] if t["mode"] == "input"]
    outputs = [t for t in sidecar["io"] if t["mode"] == "output"]
    assert [(t["name"], t["shape"]) for t in inputs] == [("input", [4, 3, 32, 32])]
    assert [t["shape"] for t in outputs] == [[4, 10]]
    assert {t["dtype"] for t in sidecar["io"]} == {"FLOAT"}  # FP32 I/O in fp16 too, on both versions
    assert list(db.parent.glob("latency.trt-*.timing-cache"))  # the timing cache lives beside the database
    assert rt.unreleased() == {}


def test_compile_without_tensorrt_is_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, toy: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fake_tensorrt.install(monkeypatch, version=None)
    assert main(["compile", str(toy), "-o", str(tmp_path / "o"), "--backend", "tensorrt"]) == 2
    assert "pip install tensorrt" in capsys.readouterr().err
