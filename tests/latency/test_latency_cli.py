"""The db, profile, bench and predict commands, including the remote-bundle round trip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest

from latency_db import LatencyDB
from mdp_trt.cli import main
from mdp_trt.zoo import build


@pytest.fixture()
def toy_path(tmp_path: Path) -> Path:
    path = tmp_path / "toy.onnx"
    onnx.save(build("toy", input_size=16), path)
    return path


def test_profile_dry_run_then_profile_then_show(tmp_path: Path, toy_path: Path, capsys) -> None:
    db = str(tmp_path / "lat.sqlite")
    assert main(["profile", str(toy_path), "--backend", "analytic", "--db", db, "--align", "2",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "unique probes" in out and "estimate" in out
    assert main(["profile", str(toy_path), "--backend", "analytic", "--db", db, "--align", "2"]) == 0
    assert "analytic estimates" in capsys.readouterr().out
    assert main(["db", "show", "--db", db, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (fp,) = summary["fingerprints"]
    assert fp["estimate"] is True and fp["entries"] > 0 and summary["size_bytes"] > 0
    assert main(["db", "show", "--db", db]) == 0


def test_db_export_import_merge(tmp_path: Path, toy_path: Path, capsys) -> None:
    a, b, c = (str(tmp_path / f"{n}.sqlite") for n in "abc")
    assert main(["profile", str(toy_path), "--backend", "analytic", "--db", a]) == 0
    assert main(["db", "export", str(tmp_path / "a.jsonl"), "--db", a]) == 0
    assert main(["db", "import", str(tmp_path / "a.jsonl"), "--db", b]) == 0
    assert main(["db", "merge", a, "--db", c]) == 0
    capsys.readouterr()
    records = [list(LatencyDB(p).records()) for p in (a, b, c)]
    assert records[0] == records[1] == records[2] and records[0]


def test_corrupt_database_is_a_one_line_error(tmp_path: Path, toy_path: Path, capsys) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(os.urandom(4096))
    assert main(["db", "show", "--db", str(bad)]) == 2
    assert main(["profile", str(toy_path), "--backend", "analytic", "--db", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a readable SQLite database" in err and "Traceback" not in err
    assert main(["db", "merge", str(tmp_path / "missing.sqlite"), "--db", str(tmp_path / "ok.sqlite")]) == 2


def test_bench_json(toy_path: Path, capsys) -> None:
    assert main(["bench", str(toy_path), "--backend", "analytic", "--batch", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"latency_ms", "fps", "p10_ms", "p90_ms", "runs", "backend"}
    assert result["fps"] == pytest.approx(1000.0 / result["latency_ms"]) and result["estimate"] is True


def test_tensorrt_missing_is_exit_2(toy_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert main(["bench", str(toy_path), "--backend", "tensorrt"]) == 2
        assert "pip install tensorrt" in capsys.readouterr().err


def test_bundle_round_trip(tmp_path: Path, toy_path: Path, capsys) -> None:
    bundle = tmp_path / "bundle"
    assert main(["profile", str(toy_path), "--export-probes", str(bundle), "--align", "2"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["batch"] == 1 and manifest["precision"] == "fp32" and manifest["probes"]
    first = manifest["probes"][0]
    assert {"signature", "k_in", "k_out", "file"} <= set(first)
    onnx.checker.check_model(onnx.load(str(bundle / first["file"])), full_check=True)
    remote = str(tmp_path / "remote.sqlite")
    assert main(["profile", "--run-bundle", str(bundle), "--backend", "analytic", "--db", remote]) == 0
    assert main(["profile", "--run-bundle", str(bundle), "--backend", "analytic", "--db", remote]) == 0
    assert "measured 0 probes" in capsys.readouterr().out
    home = str(tmp_path / "home.sqlite")
    assert main(["db", "merge", remote, "--db", home]) == 0
    assert main(["profile", str(toy_path), "--backend", "analytic", "--db", home, "--align", "2"]) == 0
    assert "measured 0, reused" in capsys.readouterr().out
    (bundle / "manifest.json").unlink()
    assert main(["profile", "--run-bundle", str(bundle), "--backend", "analytic", "--db", remote]) == 2


def test_predict_json(tmp_path: Path, toy_path: Path, capsys) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "mdp-plan/1", "groups": {"g2": {"keep": [0, 1, 2, 3]}},
                                "remove_blocks": ["b0"]}))
    db = str(tmp_path / "lat.sqlite")
    args = ["predict", str(toy_path), "--plan", str(plan), "--backend", "analytic", "--db", db, "--align", "2",
            "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["latency_ms"] > 0 and first["estimate"] is True
    assert main(args) == 0  # second time: tables and calibration come from the database
    assert json.loads(capsys.readouterr().out)["latency_ms"] == pytest.approx(first["latency_ms"])
    plan.write_text(json.dumps({"format": "mdp-plan/1", "groups": {"nope": {"keep": [0]}}}))
    assert main(args) == 2


def symbolic_hw(path: Path, size: int = 16) -> Path:
    """The toy model with its height and width symbolic, as an export with dynamic H and W has them."""
    model = build("toy", input_size=size, batch=None)
    for axis, name in ((2, "H"), (3, "W")):
        dim = model.graph.input[0].type.tensor_type.shape.dim[axis]
        dim.Clear()
        dim.dim_param = name
    onnx.save(model, path)
    return path


def test_profile_and_bench_need_static_sizes_and_take_them_from_input_shape(tmp_path: Path, capsys) -> None:
    model, db = str(symbolic_hw(tmp_path / "hw.onnx")), str(tmp_path / "lat.sqlite")
    for command in (["profile", model, "--backend", "analytic", "--db", db], ["bench", model, "--backend", "analytic"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "symbolic size 'H' (axis 2), 'W' (axis 3)" in err and "--input-shape" in err
        assert main([*command, "--input-shape", "input:1x3x16x16"]) == 0
        capsys.readouterr()
    assert main(["bench", model, "--backend", "analytic", "--input-shape", "4x3x16x16"]) == 2
    assert "gives batch 4 for input 'input' but --batch is 1" in capsys.readouterr().err
    assert main(["bench", model, "--backend", "analytic", "--json", "--batch", "4", "--input-shape", "4x3x16x16"]) == 0


def test_bench_of_a_custom_op_onnx_runtime_does_not_know_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    model = build("toy", input_size=16)
    last = model.graph.node[-1]
    model.graph.node.append(onnx.helper.make_node("FooBar", [last.output[0]], ["custom"], name="custom",
                                                  domain="com.microsoft"))
    model.graph.output[0].name = "custom"
    model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, tmp_path / "custom.onnx")
    assert main(["bench", str(tmp_path / "custom.onnx"), "--backend", "ort", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "ONNX Runtime (CPUExecutionProvider) cannot load the model" in err and "com.microsoft:FooBar" in err
