"""`mdp-trt prune`: verified before anything is written; never overwrites its input."""

from __future__ import annotations

import onnx
import pytest

import mdp_trt.cli.prune_cmd as prune_cmd
from mdp_trt.cli import main
from mdp_trt.io import save_model_atomic
from mdp_trt.prune import mask_model, prune_model
from mdp_trt.zoo import build
from tests.prune.broken import bad_bias, perturbed


@pytest.fixture()
def toy(tmp_path):
    path = tmp_path / "toy.onnx"
    save_model_atomic(build("toy", input_size=16, batch=None), path)
    return path


def prune_args(model, out, *extra):
    return ["prune", str(model), "--ratio", "0.5", "-o", str(out), *extra]


def test_happy_path_writes_both_after_checking_them(toy, tmp_path, capsys):
    out, masked = tmp_path / "p.onnx", tmp_path / "m.onnx"
    assert main(prune_args(toy, out, "--emit-masked", str(masked))) == 0
    onnx.checker.check_model(str(out), full_check=True)
    assert masked.exists()
    assert "equals the masked model" in capsys.readouterr().err


def test_a_pruned_model_ort_cannot_run_exits_4_and_writes_nothing(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prune_cmd, "prune_model", lambda *a, **k: bad_bias(prune_model(*a, **k)))
    assert main(prune_args(toy, tmp_path / "p.onnx", "--emit-masked", str(tmp_path / "m.onnx"))) == 4
    err = capsys.readouterr().err
    assert "bias must be a 1D tensor" in err and "please report" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.onnx"]


def test_a_pruned_model_computing_something_else_exits_4_naming_the_output(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prune_cmd, "prune_model", lambda *a, **k: perturbed(prune_model(*a, **k)))
    assert main(prune_args(toy, tmp_path / "p.onnx")) == 4
    assert "output 'output' differs" in capsys.readouterr().err
    assert not (tmp_path / "p.onnx").exists()


def test_a_masked_model_that_does_not_run_writes_neither(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prune_cmd, "mask_model", lambda *a, **k: bad_bias(mask_model(*a, **k)))
    assert main(prune_args(toy, tmp_path / "p.onnx", "--emit-masked", str(tmp_path / "m.onnx"))) == 4
    assert "the masked model does not run" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.onnx"]


@pytest.mark.parametrize("case", ["output", "output_via_dotdot", "masked_is_input", "masked_is_output"])
def test_outputs_that_would_overwrite_the_input_or_each_other_are_refused(toy, tmp_path, capsys, case):
    before = toy.read_bytes()
    other = tmp_path / "p.onnx"
    argv = {
        "output": prune_args(toy, toy),
        "output_via_dotdot": prune_args(toy, tmp_path / "sub" / ".." / "toy.onnx"),
        "masked_is_input": prune_args(toy, other, "--emit-masked", str(toy)),
        "masked_is_output": prune_args(toy, other, "--emit-masked", str(other)),
    }[case]
    (tmp_path / "sub").mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("input model" in err or "same file" in err)
    assert toy.read_bytes() == before and not other.exists()


def symbolic_hw(path):
    model = build("toy", input_size=16, batch=None)
    for axis, name in ((2, "H"), (3, "W")):
        dim = model.graph.input[0].type.tensor_type.shape.dim[axis]
        dim.Clear()
        dim.dim_param = name
    save_model_atomic(model, path)
    return path


def test_symbolic_sizes_are_kept_and_checked_at_the_given_shape(tmp_path, capsys):
    model, out = symbolic_hw(tmp_path / "hw.onnx"), tmp_path / "p.onnx"
    assert main(prune_args(model, out)) == 2
    err = capsys.readouterr().err
    assert "symbolic size 'H' (axis 2), 'W' (axis 3)" in err and "--input-shape input:1x3xHxW" in err
    assert not out.exists()
    assert main(prune_args(model, out, "--input-shape", "1x3x24x20")) == 0
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]
