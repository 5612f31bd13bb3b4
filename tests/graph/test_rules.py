"""Channel rules on the patterns the family exports do not all hold, each pinned and held to the oracle."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

from mdp_trt.graph import analyze
from mdp_trt.prune import Plan, mask_model, prune_model
from tests.onnx_graphs import Graph
from tests.oracle import assert_oracle, random_inputs, random_plan, run


def head(g: Graph, x: str, c: int) -> onnx.ModelProto:
    return g.model(g.gemm(g.node("Flatten", [g.node("GlobalAveragePool", [x])]), c, 5))


def exact_for_random_plans(model: onnx.ModelProto, seeds: int = 3):
    structure = analyze(model)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        assert_oracle(model, structure, random_plan(structure, rng), rng)
    return structure


def test_gather_of_channels_by_constant_indices_permutes_them():
    g = Graph()
    a = g.node("Relu", [g.conv("input", 3, 6)])
    picked = g.node("Gather", [a, g.const(np.array([4, 0, 2, 5, 1], np.int64))], axis=1)
    structure = exact_for_random_plans(head(g, g.conv(picked, 5, 4), 4))
    # the picked channels and the one left out are pruned separately, each freely
    segments = structure.layers[0].out_segments
    assert sum(s.size for s in segments) == 6 and all(structure.group(s.group).prunable for s in segments)


def test_gather_of_one_channel_by_position_freezes_it():
    g = Graph()
    a = g.node("Relu", [g.conv("input", 3, 6)])
    one = g.node("Unsqueeze", [g.node("Gather", [a, g.const(np.array(2, np.int64))], axis=1),
                               g.const(np.array([1], np.int64))])
    structure = analyze(head(g, g.node("Mul", [a, one]), 6))
    reasons = [grp.reason for grp in structure.groups if not grp.prunable]
    assert any("reads channel 2 by position" in r for r in reasons)


def test_a_slice_of_channels_with_a_step_freezes_them_with_the_reason():
    g = Graph()
    a = g.node("Relu", [g.conv("input", 3, 8)])
    every_other = g.node("Slice", [a, *(g.const(np.array([v], np.int64)) for v in (0, 8, 1, 2))])
    structure = analyze(head(g, g.conv(every_other, 4, 4), 4))
    assert not structure.group(structure.layers[0].out_group).prunable
    assert "step" in structure.group(structure.layers[0].out_group).reason


def test_expand_of_per_channel_values_follows_them():
    g = Graph()
    a = g.node("Relu", [g.conv("input", 3, 6)])
    gate = g.node("Sigmoid", [g.node("GlobalAveragePool", [a])])
    wide = g.node("Expand", [gate, g.const(np.array([1, 6, 8, 8], np.int64))])
    exact_for_random_plans(head(g, g.node("Mul", [a, wide]), 6))


def test_group_normalization_keeps_equal_parts_per_group():
    """onnx's own inference gives GroupNormalization no output shape; the analysis carries it on."""
    g = Graph(opset=21)
    a = g.conv("input", 3, 12)
    scale, bias = g.const(np.linspace(0.5, 1.5, 12, dtype=np.float32)), g.const(np.zeros(12, np.float32) + 0.1)
    normed = g.node("Relu", [g.node("GroupNormalization", [a, scale, bias], num_groups=3, epsilon=1e-5)])
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [g.conv(normed, 12, 4)])])
    model = g.model(g.gemm(pooled, 4, 5), out_shape=[1, 5])
    structure = analyze(model)
    group = structure.group(structure.layers[0].out_group)
    assert (group.parts, group.part_size) == (3, 4) and structure.reductions
    feeds = random_inputs(model, np.random.default_rng(0))
    for seed in range(3):
        plan = random_plan(structure, np.random.default_rng(seed))
        (got,) = run(prune_model(model, structure, plan), feeds)
        (want,) = run(mask_model(model, structure, plan), feeds)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


torch = pytest.importorskip("torch")


def _export(module: torch.nn.Module, *, dynamo: bool = False, dynamic_batch: bool = False) -> onnx.ModelProto:
    import io

    module.eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            return torch.onnx.export(module, (x,), dynamo=True, opset_version=18, verbose=False).model_proto
        buffer = io.BytesIO()
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17, input_names=["input"],
                          dynamic_axes={"input": {0: "batch"}} if dynamic_batch else None)
    return onnx.load_from_string(buffer.getvalue())


class SqueezeExcitationView(torch.nn.Module):
    """SENet as its reference code writes it: `view(b, c)`, Linear gates, `view(b, c, 1, 1)`, expand_as;
    with a dynamic batch the views' targets are computed from `x.size()`."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.fc1, self.fc2 = torch.nn.Linear(16, 4), torch.nn.Linear(4, 16)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        b, c, _, _ = x.size()
        y = torch.nn.functional.adaptive_avg_pool2d(x, 1).view(b, c)
        y = torch.sigmoid(self.fc2(torch.relu(self.fc1(y)))).view(b, c, 1, 1)
        return self.fc((x * y.expand_as(x)).mean((2, 3)))


class ForeignReshape(torch.nn.Module):
    """PSA-style: `v` reshaped to the channel count read from another tensor, `x` (as many, untied)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.v = torch.nn.Conv2d(8, 8, 1)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.a(x))
        b, c, h, w = x.shape
        v = self.v(x).flatten(2).reshape(b, c, h, w)
        return self.fc(torch.cat([x.mean((2, 3)), v.mean((2, 3))], 1))


@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static", "dynamic-batch"])
def test_squeeze_excitation_with_computed_views_keeps_the_stream_prunable(dynamic_batch):
    structure = exact_for_random_plans(_export(SqueezeExcitationView(), dynamic_batch=dynamic_batch))
    assert structure.group(structure.layers[0].out_group).prunable


@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["static", "dynamic-batch"])
def test_a_reshape_to_another_tensors_channel_count_gets_its_own(dynamic_batch):
    """The target's channel entry (read from `x`) is written with `v`'s pruned count, its batch and spatial
    entries stay computed: both tensors stay prunable, apart."""
    model = _export(ForeignReshape(), dynamic_batch=dynamic_batch)
    structure = exact_for_random_plans(model)
    first, second = (structure.layers[0].out_group, structure.layers[1].out_group)
    assert first != second and structure.group(first).prunable and structure.group(second).prunable
    assert len(structure.channel_targets) == int(dynamic_batch)  # a static export holds a constant target


class GroupNormNet(torch.nn.Module):
    """GroupNorm as FCOS/RetinaNet heads use it, after a conv and after a grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.gn_a = torch.nn.GroupNorm(4, 16)
        self.b = torch.nn.Conv2d(16, 16, 3, padding=1, groups=2)
        self.gn_b = torch.nn.GroupNorm(8, 16)
        self.fc = torch.nn.Linear(16, 5)
        for norm in (self.gn_a, self.gn_b):
            torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
            torch.nn.init.uniform_(norm.bias, -0.2, 0.2)

    def forward(self, x):
        x = torch.relu(self.gn_a(self.a(x)))
        return self.fc(torch.relu(self.gn_b(self.b(x))).mean((2, 3)))


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_groupnorm_as_each_exporter_writes_it_keeps_its_groups(dynamo):
    structure = exact_for_random_plans(_export(GroupNormNet(), dynamo=dynamo))
    first = structure.group(structure.layers[0].out_group)
    second = structure.group(structure.layers[1].out_group)
    assert first.prunable and first.parts == 4  # GroupNorm(4) and the grouped conv's 2 parts nest
    assert second.prunable and second.parts == 8


class GroupedTransposeNet(torch.nn.Module):
    """A grouped ConvTranspose decoder step (groups=2) and a depthwise one."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose2d(8, 12, 2, stride=2, groups=2)
        self.dw = torch.nn.ConvTranspose2d(12, 12, 3, padding=1, groups=12)
        self.fc = torch.nn.Linear(12, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.dw(torch.relu(self.up(torch.relu(self.a(x)))))).mean((2, 3)))


def test_grouped_and_depthwise_conv_transpose_prune_exactly():
    structure = exact_for_random_plans(_export(GroupedTransposeNet()))
    parts = sorted(g.parts for g in structure.prunable_groups)
    assert parts == [2, 2]


def test_a_plan_that_keeps_unequal_parts_is_refused():
    structure = analyze(_export(GroupedTransposeNet()))
    group = next(g for g in structure.prunable_groups if g.parts == 2 and g.size == 8)
    from mdp_trt.errors import InputError

    with pytest.raises(InputError, match="as many in each"):
        Plan({group.id: (0, 1, 2, 4)}).validate(structure)


class TokenStem(torch.nn.Module):
    """A ViT stem as timm writes it: patches, class token `cls.expand(B, -1, -1)` joined along the tokens,
    position embedding, a pre-norm MLP sub-block, the head on the class token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.patch = torch.nn.Conv2d(3, 16, 4, 4)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 16))
        self.pos = torch.nn.Parameter(torch.randn(1, 17, 16) * 0.1)
        self.norm = torch.nn.LayerNorm(16)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16))
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = x + self.mlp(self.norm(x))
        return self.head(x[:, 0])


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_the_class_token_is_cut_with_the_embedding_channels(dynamo):
    structure = exact_for_random_plans(_export(TokenStem(), dynamo=dynamo))
    embedding = structure.group(structure.layers[0].out_group)
    assert embedding.prunable and embedding.size == 16 and len(structure.blocks) == 1
