"""The PyTorch fixtures export to valid ONNX that onnxruntime runs to PyTorch's own output."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from tests import torch_models as tm  # noqa: E402  (only once torch is known to be there)


@pytest.mark.parametrize("name", sorted(tm.MODELS))
@pytest.mark.parametrize("fold_bn", [False, True])
def test_export_checks_runs_and_matches_torch(name: str, fold_bn: bool, tmp_path) -> None:
    model = tm.make(name)
    path = tm.export(model, tmp_path / f"{name}.onnx", tm.INPUT_SHAPE, fold_bn=fold_bn)
    onnx_model = onnx.load(path)
    onnx.checker.check_model(onnx_model, full_check=True)
    assert onnx_model.opset_import[0].version == 17
    ops = collections.Counter(n.op_type for n in onnx_model.graph.node)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # folding takes every BN that follows a Conv; DenseNet's pre-activation BNs stay
    assert ops["BatchNormalization"] == (n_bn if not fold_bn else 6 if name == "dense_like" else 0)

    x = torch.randn(tm.INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.numpy()})
    assert np.abs(expected).max() > 0.1  # outputs of order one, so the tolerance below means something
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_bn_statistics_are_not_the_identity() -> None:
    for name in tm.MODELS:
        for module in tm.make(name).modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert not torch.allclose(module.running_var, torch.ones_like(module.running_var))
                assert not torch.allclose(module.running_mean, torch.zeros_like(module.running_mean))
