"""`recalibrate_batch_norm`: running statistics re-estimated from data, nothing else changed."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import mdp_trt.torch as mt  # noqa: E402  (only once torch is known to be there)
from mdp_trt.prune import Plan  # noqa: E402
from tests.torch.tiny import batches, tiny  # noqa: E402


def bn_inputs(model, data):
    """Each BN's input on each batch, in train mode (what its statistics are estimated from); `model`
    is a throw-away copy (train mode updates its statistics)."""
    seen = {}
    norms = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    for name, norm in norms.items():
        norm.register_forward_hook(lambda m, args, out, name=name: seen.setdefault(name, []).append(args[0]))
    with torch.no_grad():
        for x, _ in data:
            model.train()(x)
    return norms, seen


def test_statistics_are_the_average_over_batches_of_each_batchs_statistics():
    model = tiny().eval()
    data = batches(3)
    reference = copy.deepcopy(model)
    norms, seen = bn_inputs(reference, data[:2])
    mt.recalibrate_batch_norm(model, data, 2)
    for name, inputs in seen.items():
        norm = model.get_submodule(name)
        means = torch.stack([x.mean((0, 2, 3)) for x in inputs])
        variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs])
        torch.testing.assert_close(norm.running_mean, means.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var, variances.mean(0), rtol=1e-5, atol=1e-6)
        assert norm.num_batches_tracked == 2
    assert len(norms) == 2


def test_parameters_modes_momentum_and_masks_are_left_as_they_were():
    model = tiny()
    data = batches(2)
    example = data[0][0][:1]
    mt.apply_plan(model, Plan({"g1": (0, 2)}), example)
    model.train()
    model.stem[1].momentum = 0.3
    parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
    mt.recalibrate_batch_norm(model, iter(data), 5)  # more steps than batches: uses what there is
    assert model.training and all(m.training for m in model.modules())
    assert model.stem[1].momentum == 0.3 and model.body[1].momentum == 0.1
    for name, p in model.named_parameters():
        assert torch.equal(p, parameters[name]), name
    assert torch.count_nonzero(model.stem[1].weight[[1, 3]]) == 0


def test_no_batch_is_refused_before_any_statistic_is_touched():
    model = tiny()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="no batch"):
        mt.recalibrate_batch_norm(model, iter([]), 3)
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
