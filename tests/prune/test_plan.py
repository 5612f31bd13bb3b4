"""Plan format and validation: invalid plans are clear errors and nothing is written."""

from __future__ import annotations

import json

import onnx
import pytest

from mdp_trt.cli import main
from mdp_trt.errors import InputError
from mdp_trt.graph import analyze
from mdp_trt.prune import Plan, prune_model
from mdp_trt.zoo import build


@pytest.fixture(scope="module")
def toy():
    model = build("resnet18", input_size=32, num_classes=10)
    return model, analyze(model)


def test_round_trip(tmp_path):
    plan = Plan({"g1": (0, 3, 5)}, ("b0",), {"predicted": {"latency_ms": 1.5}})
    path = tmp_path / "plan.json"
    plan.save(path)
    assert json.loads(path.read_text())["format"] == "mdp-plan/1"
    assert Plan.load(path) == plan


@pytest.mark.parametrize("groups, blocks, message", [
    ({"g999": (0,)}, (), "unknown group 'g999'"),
    ({"g1": ()}, (), "keeps no channel"),
    ({"g1": (0, 0)}, (), "lists a channel twice"),
    ({"g1": (10_000,)}, (), "out of range"),
    ({"g0": (0,)}, (), "cannot be pruned"),
    ({}, ("b99",), "unknown block 'b99'"),
])
def test_invalid_plans(toy, groups, blocks, message):
    model, structure = toy
    with pytest.raises(InputError, match=message):
        prune_model(model, structure, Plan(groups, blocks))


@pytest.mark.parametrize("document", [
    {"groups": {}},
    {"format": "mdp-plan/1", "groups": {"g1": [1, 2]}},
    {"format": "mdp-plan/1", "groups": {"g1": {"keep": ["a"]}}},
    {"format": "mdp-plan/1", "remove_blocks": "b0"},
])
def test_malformed_documents(document):
    with pytest.raises(InputError):
        Plan.from_json(document)


def test_cli_invalid_plan_writes_nothing(tmp_path, toy, capsys):
    model, _ = toy
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(src))
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps({"format": "mdp-plan/1", "groups": {"g1": {"keep": [9999]}}}))
    assert main(["prune", str(src), "--plan", str(bad), "-o", str(out)]) == 2
    assert not out.exists()
    assert set(tmp_path.iterdir()) == {src, bad}  # no output, no temp file left behind
    assert "out of range" in capsys.readouterr().err


def test_cli_plan_and_masked_outputs(tmp_path, toy):
    model, structure = toy
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    group = structure.prunable_groups[1]
    plan = Plan({group.id: tuple(range(0, group.size, 2))}, (structure.blocks[0].id,))
    plan.save(tmp_path / "plan.json")
    out, masked = tmp_path / "p.onnx", tmp_path / "masked.onnx"
    assert main(["prune", str(src), "--plan", str(tmp_path / "plan.json"), "-o", str(out),
                 "--emit-masked", str(masked)]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    onnx.checker.check_model(str(masked), full_check=True)
    assert len(onnx.load(str(masked)).graph.node) == len(model.graph.node) + 1  # the block's zero Mul


def test_cli_ratio_shrinks_every_prunable_group(tmp_path, toy):
    model, structure = toy
    src, out = tmp_path / "m.onnx", tmp_path / "p.onnx"
    onnx.save(model, str(src))
    assert main(["prune", str(src), "--ratio", "0.5", "-o", str(out)]) == 0
    pruned = analyze(onnx.load(str(out)))
    expected = sorted(max(1, round(0.5 * g.size)) for g in structure.prunable_groups)
    assert sorted(g.size for g in pruned.prunable_groups) == expected


@pytest.mark.parametrize("args", [["--ratio", "0"], ["--ratio", "1.5"], []])
def test_cli_ratio_and_plan_arguments(tmp_path, toy, args):
    model, _ = toy
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    assert main(["prune", str(src), *args, "-o", str(tmp_path / "p.onnx")]) == 2
