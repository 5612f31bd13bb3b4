"""`mdp_trt.torch.export`: BN kept, initializers named like the parameters, symbolic batch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

import mdp_trt.torch as mt  # noqa: E402  (only once torch is known to be there)
from tests.torch.tiny import TinyResidual, tiny  # noqa: E402


def test_export_keeps_bn_and_parameter_names_even_for_equal_parameters(tmp_path):
    model = TinyResidual().train()  # fresh: every BN scale is ones, every shift zeros (equal values)
    x = torch.randn(1, 3, 8, 8)
    path = tmp_path / "tiny.onnx"
    exported = mt.export(model, x, path)
    assert onnx.load(str(path)) == exported
    assert model.training and all(m.training for m in model.modules()), "the model's mode is restored"
    parameters = dict(model.named_parameters())
    buffers = {name for name, _ in model.named_buffers()}
    initializers = {t.name: t for t in exported.graph.initializer}
    assert set(parameters) <= set(initializers), "every parameter is an initializer under its own name"
    assert set(initializers) <= set(parameters) | buffers
    for name, param in parameters.items():
        assert tuple(initializers[name].dims) == tuple(param.shape)
    assert "Identity" not in {n.op_type for n in exported.graph.node}
    bns = [n for n in exported.graph.node if n.op_type == "BatchNormalization"]
    assert [n.input[1] for n in bns] == ["stem.1.weight", "body.1.weight"]
    assert [i.name for i in exported.graph.input] == ["input"]
    assert [o.name for o in exported.graph.output] == ["output"]
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert exported.opset_import[0].version == 17


def test_export_runs_at_any_batch_and_matches_torch():
    model = tiny().eval()
    x = torch.randn(5, 3, 8, 8)
    session = ort.InferenceSession(mt.export(model, x[:1]).SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_deployment_export_folds_bn():
    exported = mt.export(tiny(), torch.randn(1, 3, 8, 8), keep_bn=False)
    assert "BatchNormalization" not in {n.op_type for n in exported.graph.node}
