"""End-to-end `build` on a small zoo model with ONNX Runtime on the CPU and a tiny grid."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import mdp_trt.build as build_module
from mdp_trt.cli import main
from mdp_trt.io import save_model_atomic
from mdp_trt.latency.backends.ort import nchwc_block
from mdp_trt.zoo import build as zoo_build

REPORT_KEYS = {"target", "backend", "dense", "predicted", "measured", "importance_kept", "groups",
               "blocks_removed", "solver", "profiling"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    # 64 px: at 32 px the toy runs in 0.13 ms, mostly per-op overhead that no pruning removes, and its fastest
    # plan measured over 70% of dense on a busy host
    save_model_atomic(zoo_build("toy", input_size=64, batch=None), root / "toy.onnx")
    return root


def args(workdir, out, *extra):
    return ["build", str(workdir / "toy.onnx"), "-o", str(out), "--db", str(workdir / "db.sqlite"), "--grid", "3",
            "--threads", "1", *extra]


def exit_code_matches_report(code: int, out) -> None:
    """A build that needs pruning is measured on this shared CPU, so a burst of load can make it miss its
    target: then it still writes OUT/ and exits 3 (README "Exit codes"). Either way the code says what the
    report says."""
    report = json.loads((out / "report.json").read_text())
    assert code == (0 if report["measured"]["met"] else 3)
    assert report["outcome"]["exit_code"] == code


@pytest.fixture(scope="module")
def pruned_build(workdir):
    """One build at a target that needs pruning: 70% of the dense latency predicted by a first build."""
    first = workdir / "first"
    assert main(args(workdir, first, "--fps", "0.001", "--no-plots")) == 0  # dense meets it: keeps all
    dense = json.loads((first / "report.json").read_text())["dense"]["latency_ms"]
    out = workdir / "out"
    code = main(args(workdir, out, "--latency-ms", f"{0.7 * dense:.6f}"))
    return code, out, dense


def test_outputs_and_report_schema(pruned_build):
    code, out, _ = pruned_build
    exit_code_matches_report(code, out)
    names = {p.name for p in out.iterdir()}
    assert {"model.pruned.onnx", "plan.json", "report.json", "problem.json", "model.ort.onnx",
            "model.ort.json"} <= names
    assert {"kept_channels.png", "layer_latency.png", "pareto.png"} <= names
    assert not any(name.startswith(".") for name in names), "no staging or temp files left"
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= REPORT_KEYS
    measured = report["measured"]
    low, high = measured["latency_ci_ms"]
    assert low <= measured["latency_ms"] <= high and measured["confidence"] == 0.95
    assert measured["decision"] == ("met" if high <= measured["target_ms"] else
                                    "not met" if low > measured["target_ms"] else "undecided")
    assert measured["met"] == (measured["decision"] == "met")
    assert measured["scheme"] == "interleaved" and measured["pairs"] >= 3, "timed against dense, in pairs"
    assert measured["ratio_ci"][0] <= measured["ratio"] <= measured["ratio_ci"][1]
    assert measured["target_ms"] == pytest.approx(report["target"]["latency_ms"]), "an absolute target"
    assert 0 < report["importance_kept"] <= 1
    assert report["backend"]["name"] == "ort" and report["backend"]["estimate"] is False
    assert report["rounds"], "the closed loop records its rounds"
    assert report["profiling"]["grid"] == {"levels": 3, "align": nchwc_block() or 8}, "the host's NCHWc block"
    onnx.checker.check_model(str(out / "model.pruned.onnx"), full_check=True)


def test_pruned_model_follows_the_plan(pruned_build):
    _, out, _ = pruned_build
    report = json.loads((out / "report.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    kept = {g["id"]: g["kept"] for g in report["groups"]}
    for gid, entry in plan["groups"].items():
        assert len(entry["keep"]) == kept[gid]
    assert report["blocks_removed"] == plan["remove_blocks"]


def test_dense_model_already_meeting_the_target_still_writes_outputs(workdir):
    report = json.loads((workdir / "first" / "report.json").read_text())
    assert report["measured"]["met"] and report["importance_kept"] == 1.0
    assert report["solver"]["status"] == "skipped"
    assert (workdir / "first" / "model.pruned.onnx").exists()


def test_unreachable_target_exits_3_and_says_the_floor(workdir, pruned_build, capsys):
    out = workdir / "impossible"
    assert main(args(workdir, out, "--latency-ms", "0.000001", "--no-plots")) == 3
    err = capsys.readouterr().err
    assert "smallest reachable latency" in err
    assert not out.exists() or not any(out.iterdir())


def test_failure_leaves_no_output(workdir, pruned_build, monkeypatch):
    def broken(*_, **__):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(build_module, "compile_model", broken)
    out = workdir / "failed"
    with pytest.raises(RuntimeError, match="injected"):
        main(args(workdir, out, "--fps", "0.001", "--no-plots"))
    assert not out.exists() or not any(out.iterdir()), "an OUT/ that did not exist is not left behind"


@pytest.mark.parametrize("extra", [["--fps", "100", "--latency-ms", "1"], [], ["--fps", "-3"],
                                   ["--batch", "0", "--fps", "1"], ["--speedup", "0.5"],
                                   ["--speedup", "2", "--fps", "3"]])
def test_bad_targets_exit_2(workdir, extra):
    assert main(args(workdir, workdir / "bad", *extra)) == 2


def test_fixed_batch_mismatch_is_a_clear_error(workdir, tmp_path, capsys):
    save_model_atomic(zoo_build("toy", input_size=32, batch=1), tmp_path / "b1.onnx")
    code = main(["build", str(tmp_path / "b1.onnx"), "-o", str(tmp_path / "o"), "--fps", "1", "--batch", "4",
                 "--db", str(workdir / "db.sqlite")])
    assert code == 2 and "batch is fixed to 1" in capsys.readouterr().err


def test_compile_alone(workdir, pruned_build):
    _, out, _ = pruned_build
    target = workdir / "compiled"
    assert main(["compile", str(out / "model.pruned.onnx"), "-o", str(target), "--backend", "ort",
                 "--threads", "1"]) == 0
    sidecar = json.loads((target / "model.ort.json").read_text())
    assert sidecar["session_options"]["intra_op_num_threads"] == 1
    onnx.load(str(target / "model.ort.onnx"))


def test_doctor_reports_what_is_here(capsys):
    assert main(["doctor", "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["onnxruntime"]["ok"]
    assert "tensorrt" in checks


def test_block_scores_in_an_importance_file_price_removing_the_block(workdir, tmp_path):
    from mdp_trt.graph import analyze

    structure = analyze(onnx.load(str(workdir / "toy.onnx")))
    scores = {g.id: np.ones(g.size) for g in structure.prunable_groups}
    (block,) = structure.blocks
    np.savez(tmp_path / "scores.npz", **scores, **{block.id: np.array([1e6])})
    out = tmp_path / "out"
    exit_code_matches_report(main(args(workdir, out, "--speedup", "1.1", "--align", "2", "--no-plots",
                                       "--importance", str(tmp_path / "scores.npz"))), out)
    assert json.loads((out / "report.json").read_text())["profiling"]["grid"]["align"] == 2, "--align overrides"
    problem = json.loads((out / "problem.json").read_text())
    (term,) = [layer for layer in problem["layers"] if layer["id"] == f"importance:{block.id}"]
    assert term["block"] == block.id and term["importance"][0] > 0.5, "the block outweighs all its groups"
    assert block.id not in json.loads((out / "plan.json").read_text())["remove_blocks"]


def test_a_model_with_symbolic_height_and_width_builds_at_the_input_shape_given(workdir, pruned_build, tmp_path,
                                                                               capsys):
    model = onnx.load(str(workdir / "toy.onnx"))
    for axis, name in ((2, "H"), (3, "W")):
        dim = model.graph.input[0].type.tensor_type.shape.dim[axis]
        dim.Clear()
        dim.dim_param = name
    save_model_atomic(model, tmp_path / "hw.onnx")
    out = tmp_path / "out"
    build_args = ["build", str(tmp_path / "hw.onnx"), "-o", str(out), "--db", str(workdir / "db.sqlite"), "--grid", "3",
                  "--threads", "1", "--speedup", "1.1", "--no-plots"]
    assert main(build_args) == 2
    assert "give --input-shape input:1x3xHxW" in capsys.readouterr().err and not out.exists()
    exit_code_matches_report(main([*build_args, "--input-shape", "input:1x3x64x64"]), out)
    pruned = onnx.load(str(out / "model.pruned.onnx"))
    assert [d.dim_param or d.dim_value for d in pruned.graph.input[0].type.tensor_type.shape.dim] == ["N", 3, 64, 64]
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["ran"] and report["verification"]["compared"]


def test_a_host_that_changed_speed_during_the_build_is_said_so():
    assert build_module.host_shift(2.0, 2.1) is None, "5% is within what a shared host does"
    slower = build_module.host_shift(0.73, 1.39)
    assert slower and "+90%" in slower and "0.730 ms" in slower and "1.390 ms" in slower
    assert "-" in build_module.host_shift(2.0, 1.5)
