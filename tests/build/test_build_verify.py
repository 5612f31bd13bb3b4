"""`build` writes nothing unless the pruned model runs and equals the masked model, and never overwrites
its input."""

from __future__ import annotations

import pytest

import mdp_trt.closed_loop as closed_loop_module
from mdp_trt.cli import main
from mdp_trt.io import save_model_atomic
from mdp_trt.prune import prune_model
from mdp_trt.zoo import build
from tests.prune.broken import bad_bias, perturbed


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("verify") / "toy.onnx"
    save_model_atomic(build("toy", input_size=16, batch=None), path)
    return path


def build_args(model, out, db, *extra):
    # The analytic backend measures nothing, so these builds stop, if at all, at the compile step.
    return ["build", str(model), "-o", str(out), "--db", str(db), "--backend", "analytic", "--speedup", "1.2",
            "--align", "2", "--grid", "3", "--no-plots", *extra]


@pytest.mark.parametrize(("breaker", "expected"), [(bad_bias, "does not run"), (perturbed, "output 'output' differs")])
def test_a_pruned_model_that_fails_verification_exits_4_and_writes_nothing(toy, tmp_path, monkeypatch, capsys,
                                                                           breaker, expected):
    monkeypatch.setattr(closed_loop_module, "prune_model", lambda *a, **k: breaker(prune_model(*a, **k)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("a file of the user's")
    assert main(build_args(toy, out, tmp_path / "db.sqlite")) == 4
    err = capsys.readouterr().err
    assert expected in err and "please report this model" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"], "nothing staged or half-written is left"


def test_an_output_folder_that_holds_the_input_under_a_name_build_writes_is_refused(toy, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    model = out / "model.pruned.onnx"
    model.write_bytes(toy.read_bytes())
    assert main(build_args(model, out, tmp_path / "db.sqlite")) == 2
    assert "would be overwritten" in capsys.readouterr().err
    assert model.read_bytes() == toy.read_bytes() and not (tmp_path / "db.sqlite").exists()


def test_an_output_that_is_a_file_is_refused(toy, tmp_path, capsys):
    assert main(build_args(toy, toy, tmp_path / "db.sqlite")) == 2
    assert "is a file" in capsys.readouterr().err
