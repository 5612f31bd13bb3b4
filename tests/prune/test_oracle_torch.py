"""Exactness oracle on models exported from PyTorch (BN kept and BN folded by the exporter)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from mdp_trt.graph import analyze, load_model
from tests.oracle import assert_oracle, random_plan

torch_models = pytest.importorskip("tests.torch_models", exc_type=ImportError)


@pytest.mark.parametrize("fold_bn", [False, True], ids=["bn", "folded"])
@pytest.mark.parametrize("name", sorted(torch_models.MODELS))
def test_exported_models_prune_exactly(tmp_path, name, fold_bn):
    path = torch_models.export(torch_models.make(name), tmp_path / f"{name}.onnx", (1, 3, 32, 32), fold_bn)
    model = load_model(path)
    if fold_bn:  # the exporter folds every BN that follows a conv (pre-activation BNs stay)
        unfolded = torch_models.export(torch_models.make(name), tmp_path / "bn.onnx", (1, 3, 32, 32), False)
        assert _bn_count(model) < _bn_count(onnx.load(str(unfolded)))
    else:
        assert _bn_count(model) > 0
    structure = analyze(model)
    assert structure.prunable_groups, f"{name}: nothing prunable found"
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert_oracle(model, structure, random_plan(structure, rng), rng)


def test_exported_resnet_finds_its_blocks_and_keeps_parameter_names(tmp_path):
    path = torch_models.export(torch_models.make("resnet_like"), tmp_path / "r.onnx", (1, 3, 32, 32), False)
    model = onnx.load(str(path))
    structure = analyze(model)
    assert structure.blocks, "identity-shortcut blocks of the PyTorch ResNet are found"
    weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert any(name.endswith(".weight") for name in weights)


def _bn_count(model: onnx.ModelProto) -> int:
    return sum(n.op_type == "BatchNormalization" for n in model.graph.node)
