"""Taylor importance and block ablation scores against hand computations, and the importance file round trip."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mdp_trt.torch as mt  # noqa: E402  (only once torch is known to be there)
from mdp_trt.importance import load_scores  # noqa: E402
from mdp_trt.torch.graph import trace  # noqa: E402
from tests.torch.tiny import batches, tiny  # noqa: E402

# The parameters carrying each prunable group's channels: BN gamma/beta where a BN follows the
# producing conv, the filter and bias where none does.
CARRIERS = {
    "g1": [("stem.1.weight", 0), ("stem.1.bias", 0), ("body.1.weight", 0), ("body.1.bias", 0)],
    "g2": [("head.weight", 0), ("head.bias", 0)],
}


def loss_fn(output, target):
    return torch.nn.functional.cross_entropy(output, target)


def directional_derivative(model, group: str, channel: int, inputs, targets, eps: float = 1e-6) -> float:
    """d/dt of the loss when every parameter carrying `channel` is scaled by (1 + t), at t = 0: by
    definition the sum of w * dL/dw over them, the channel's first-order Taylor term."""
    losses = []
    for t in (eps, -eps):
        scaled = copy.deepcopy(model)
        params = dict(scaled.named_parameters())
        with torch.no_grad():
            for name, axis in CARRIERS[group]:
                params[name].select(axis, channel).mul_(1 + t)
            losses.append(float(loss_fn(scaled(inputs), targets)))
    return (losses[0] - losses[1]) / (2 * eps)


def double_batches(count: int):
    return [(x.double(), y) for x, y in batches(count)]


def test_scores_are_per_batch_absolute_taylor_terms_summed_over_the_groups_producers():
    model = tiny().double().eval()
    data = double_batches(3)
    # blocks=False: the block scores need an ONNX Runtime run, which has no float64 Conv
    scores = mt.taylor_importance(model, data, loss_fn, 2, data[0][0][:1], blocks=False)
    assert set(CARRIERS) <= set(scores)
    discriminates = False
    for group, carriers in CARRIERS.items():
        size = model.get_submodule(carriers[0][0].rsplit(".", 1)[0]).weight.shape[0]
        per_batch = np.array([[directional_derivative(model, group, c, x, y) for c in range(size)]
                              for x, y in data[:2]])  # steps=2: the third batch is not used
        np.testing.assert_allclose(scores[group], np.abs(per_batch).sum(axis=0), rtol=1e-6, atol=1e-10)
        discriminates |= not np.allclose(np.abs(per_batch).sum(axis=0), np.abs(per_batch.sum(axis=0)))
    assert discriminates, "some channel's batches disagree in sign, so |sum| and sum|.| differ"


def test_scoring_leaves_the_model_as_it_was():
    model = tiny().train()
    state = copy.deepcopy(model.state_dict())
    data = batches(2)
    mt.taylor_importance(model, data, loss_fn, 2, data[0][0][:1])
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_importance_file_round_trips_through_load_scores(tmp_path):
    model = tiny()
    data = batches(2)
    example = data[0][0][:1]
    scores = mt.taylor_importance(model, data, loss_fn, 2, example)
    path = tmp_path / "scores.npz"
    mt.save_importance(scores, path)
    graph = trace(model, example)
    loaded = load_scores(path, graph.onnx_model, graph.structure)
    assert set(loaded) == set(scores)
    for gid, values in scores.items():
        np.testing.assert_array_equal(loaded[gid], values)
    assert {gid: v.shape for gid, v in scores.items()} == ({g.id: (g.size,) for g in graph.structure.groups}
                                                          | {b.id: (1,) for b in graph.structure.blocks})


class Zero(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


def test_a_blocks_score_is_the_loss_change_measured_without_it_summed_over_batches():
    model = tiny().eval()
    data = batches(3)
    scores = mt.taylor_importance(model, data, loss_fn, 2, data[0][0][:1])
    (block,) = trace(model, data[0][0][:1]).structure.blocks
    ablated = copy.deepcopy(model)
    ablated.body = Zero()
    with torch.no_grad():
        expected = sum(abs(float(loss_fn(ablated(x), y)) - float(loss_fn(model(x), y))) for x, y in data[:2])
    assert expected > 0
    np.testing.assert_allclose(scores[block.id], [expected], rtol=1e-6)
    without = mt.taylor_importance(model, data, loss_fn, 2, data[0][0][:1], blocks=False)
    assert set(scores) - set(without) == {block.id}


def test_scores_take_their_batches_from_a_one_shot_iterator_once():
    model = tiny().eval()
    data = batches(2)
    from_list = mt.taylor_importance(model, data, loss_fn, 2, data[0][0][:1])
    from_iterator = mt.taylor_importance(model, iter(data), loss_fn, 2, data[0][0][:1])
    assert set(from_list) == set(from_iterator)
    for key, values in from_list.items():
        np.testing.assert_allclose(from_iterator[key], values, rtol=1e-12)


def test_a_head_widths_score_sums_the_taylor_terms_of_its_query_and_key_rows():
    """timm's fused qkv Linear exports as MatMul by the transposed weight: a query/key channel's score is
    the Taylor term of its q row and its k row (weight and bias) of the one qkv parameter."""
    from tests import families as fam

    torch.manual_seed(0)
    model = fam.VisionTransformer(fam.FusedAttention, dim=16, heads=2, depth=1, patch=8, image=16).double().eval()
    generator = torch.Generator().manual_seed(1)
    data = [(torch.randn(4, 3, 16, 16, generator=generator, dtype=torch.float64), torch.arange(4) % 10)
            for _ in range(2)]
    scores = mt.taylor_importance(model, data, loss_fn, 2, data[0][0][:1], blocks=False)
    graph = trace(model, data[0][0][:1])
    qk = next(g for g in graph.structure.groups if g.kind == "qk_dim")
    qkv = next(la for la in graph.structure.weighted_layers if la.name.endswith("qkv/MatMul"))
    tc = graph.structure.channels[graph.node(qkv.name).output[0]]
    group_index = [g.id for g in graph.structure.groups].index(qk.id)
    params = dict(model.named_parameters())
    for channel in (0, qk.size - 1):
        rows = np.flatnonzero((tc.group == group_index) & (tc.channel == channel))
        assert len(rows) == 2  # its q row and its k row
        carriers = [params["blocks.0.attn.qkv.weight"], params["blocks.0.attn.qkv.bias"]]
        per_batch = []
        for x, y in data:
            grads = torch.autograd.grad(loss_fn(model(x), y), carriers)
            per_batch.append(sum(float((p.detach() * g)[rows].sum()) for p, g in zip(carriers, grads, strict=True)))
        np.testing.assert_allclose(scores[qk.id][channel], np.abs(per_batch).sum(), rtol=1e-6)


@pytest.mark.parametrize("attention", ["fused", "mha"])
def test_a_heads_score_is_the_taylor_score_of_its_channels(attention):
    """A head is worth what its query/key and value channels are (timm's fused attention and PyTorch's
    MultiheadAttention): the heads group scores each head with the sum of its members' scores there."""
    from tests import families as fam

    torch.manual_seed(0)
    make = fam.FusedAttention if attention == "fused" else fam.MHAAttention
    model = fam.VisionTransformer(make, dim=16, heads=2, depth=1, patch=8, image=16).eval()
    generator = torch.Generator().manual_seed(1)
    data = [(torch.randn(4, 3, 16, 16, generator=generator), torch.arange(4) % 10) for _ in range(2)]
    scores = mt.taylor_importance(model, data, loss_fn, 2, data[0][0][:1], blocks=False)
    (tie,) = trace(model, data[0][0][:1]).structure.heads
    per_head = sum(scores[m].reshape(2, -1).sum(axis=1) for m in tie.members)
    assert per_head.min() > 0
    np.testing.assert_allclose(scores[tie.heads], per_head, rtol=1e-12)
