"""`mdp_trt.torch.prune`: the whole flow on the analytic backend (fast, no timing noise)."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

import mdp_trt.torch as mt  # noqa: E402  (only once torch is known to be there)
from mdp_trt.errors import InputError  # noqa: E402
from mdp_trt.graph import analyze  # noqa: E402
from mdp_trt.prune import prune_model  # noqa: E402
from tests import torch_models as tm  # noqa: E402


def test_prune_meets_the_target_and_its_masked_model_is_the_pruned_export(tmp_path):
    model = tm.make("resnet_like")
    generator = torch.Generator().manual_seed(0)
    data = [(torch.randn(4, 3, 16, 16, generator=generator), torch.randint(0, 10, (4,), generator=generator))
            for _ in range(2)]
    example = data[0][0][:1]
    common = {"backend": "analytic", "grid": 3, "db": tmp_path / "db.sqlite", "steps": 2}
    dense = mt.setup(model, example, data, torch.nn.functional.cross_entropy, **common).dense_ms
    masked, plan = mt.prune(model, example, data, torch.nn.functional.cross_entropy, latency_ms=0.6 * dense,
                            solver="milp", **common)
    assert masked is model
    recalibrated = mt.recalibrate_batch_norm(copy.deepcopy(masked), data, 2)  # prune did it on the same batches
    for name, value in recalibrated.state_dict().items():
        torch.testing.assert_close(masked.state_dict()[name], value, rtol=1e-6, atol=0)
    assert plan.extra["met"] and plan.extra["measured_ms"] <= 0.6 * dense
    assert plan.groups or plan.remove_blocks
    exported = mt.export(masked, example)
    pruned = prune_model(exported, analyze(exported), plan)
    x = torch.randn(3, 3, 16, 16, generator=generator)
    session = ort.InferenceSession(pruned.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], masked.eval()(x).numpy(),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", [{}, {"fps": 100.0, "latency_ms": 5.0}, {"fps": 0.0}, {"speedup": 0.5}])
def test_a_bad_target_is_refused_before_any_work(target):
    def no_data():
        raise AssertionError("the data was touched")
        yield

    with pytest.raises(InputError):
        mt.prune(tm.make("resnet_like"), torch.zeros(1, 3, 16, 16), no_data(), None, **target)
