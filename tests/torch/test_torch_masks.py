"""Plans as masks: exactly zero through training, equal to `mask_model`, equal to the pruned export."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

import mdp_trt.torch as mt  # noqa: E402  (only once torch is known to be there)
from mdp_trt.errors import InputError  # noqa: E402
from mdp_trt.graph import analyze  # noqa: E402
from mdp_trt.importance.selection import random_channels  # noqa: E402
from mdp_trt.prune import Plan, mask_model, prune_model  # noqa: E402
from mdp_trt.torch.graph import trace  # noqa: E402
from mdp_trt.torch.masks import parameter_masks  # noqa: E402
from tests import torch_models as tm  # noqa: E402

INPUT = (2, 3, 16, 16)


def half_plan(structure, seed: int = 0, blocks: int = 1) -> Plan:
    """Every prunable group keeps a random half (as many in each part); the first `blocks` blocks are removed."""
    rng = np.random.default_rng(seed)
    groups = {g.id: random_channels(rng, g.size, g.parts * max(1, g.part_size // 2), g.parts)
              for g in structure.prunable_groups}
    return Plan(groups, tuple(b.id for b in structure.blocks[:blocks]))


def run_onnx(model, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def noise(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def train(model, optimizer, steps: int, seed: int = 0) -> None:
    model.train()
    for step in range(steps):
        x, y = noise(INPUT, seed + step), torch.arange(INPUT[0]) % 10
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


OPTIMIZERS = {
    "sgd-momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2),
}


@pytest.mark.parametrize("state_before_plan", [False, True], ids=["fresh", "warm-optimizer"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_masked_weights_gradients_and_optimizer_state_stay_exactly_zero(optimizer, state_before_plan):
    model = tm.make("resnet_like")
    x = noise(INPUT, 99)
    plan = half_plan(trace(model, x).structure)
    opt = OPTIMIZERS[optimizer](model.parameters())
    if state_before_plan:  # momentum and Adam moments already non-zero where the masks will be
        train(model, opt, 2, seed=50)
    masks = parameter_masks(trace(model, x), plan)
    mt.apply_plan(model, plan, x)
    params = dict(model.named_parameters())
    before = {name: p.detach().clone() for name, p in params.items()}
    train(model, opt, 4)
    assert len(masks) > 10
    for name, keep in masks.items():
        dropped = torch.as_tensor(~keep)
        param = params[name]
        assert torch.count_nonzero(param.detach()[dropped]) == 0, name
        if param.grad is not None:
            assert torch.count_nonzero(param.grad[dropped]) == 0, name
        for key, value in opt.state[param].items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                assert torch.count_nonzero(value[dropped]) == 0, (name, key)
    kept = {name: torch.as_tensor(keep) for name, keep in masks.items() if keep.any()}
    assert any(not torch.equal(params[name].detach()[keep], before[name][keep]) for name, keep in kept.items()), \
        "the kept weights still train"


@pytest.mark.parametrize("name", sorted(tm.MODELS))
def test_masked_model_computes_what_mask_model_computes(name):
    model = tm.make(name)
    x = noise(INPUT, 1)
    graph = trace(model, x)
    plan = half_plan(graph.structure, seed=3)
    expected = run_onnx(mask_model(graph.onnx_model, graph.structure, plan), x)
    mt.apply_plan(model, plan, x)
    with torch.no_grad():
        got = model.eval()(x).numpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(tm.MODELS))
def test_pruned_export_of_the_finetuned_masked_model_equals_it(name):
    model = tm.make(name)
    x = noise(INPUT, 2)
    plan = half_plan(trace(model, x).structure, seed=5, blocks=2)
    mt.apply_plan(model, plan, x)
    train(model, torch.optim.Adam(model.parameters(), lr=1e-2), 3)
    train(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), 3, seed=10)
    model.eval()
    exported = mt.export(model, x)
    pruned = prune_model(exported, analyze(exported), plan)
    assert sum(t.ByteSize() for t in pruned.graph.initializer) < sum(t.ByteSize() for t in exported.graph.initializer)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(run_onnx(pruned, x), expected, rtol=1e-5, atol=1e-6)


class Identity3x3(torch.nn.Module):
    """What remains of a removed block's branch: nothing (zeros of the branch's shape)."""

    def forward(self, x):
        return torch.zeros_like(x)


def test_removed_block_contributes_nothing_and_trains_nothing():
    model = tm.make("resnet_like")
    x = noise(INPUT, 4)
    reference = copy.deepcopy(model)
    reference.layer1.branch = Identity3x3()  # b0 is layer1's branch: y = relu(x + 0)
    plan = Plan({}, ("b0",))
    assert trace(model, x).structure.block("b0").add == "/layer1/Add"
    mt.apply_plan(model, plan, x)
    with torch.no_grad():
        np.testing.assert_array_equal(model.eval()(x).numpy(), reference.eval()(x).numpy())
    train(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), 3)
    for name, param in model.layer1.branch.named_parameters():
        assert torch.count_nonzero(param) == 0, name
        assert param.grad is None or torch.count_nonzero(param.grad) == 0, name


class ScaledBlock(torch.nn.Module):
    """`x + s * F(x)` with `s` a bare parameter: no submodule returns the branch output."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.body = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = x + self.scale * self.body(x)
        return self.fc(x.mean((2, 3)))


def test_a_block_without_a_module_for_its_branch_output_is_refused():
    model = ScaledBlock()
    x = noise(INPUT, 6)
    structure = trace(model, x).structure
    assert [b.id for b in structure.blocks] == ["b0"]
    with pytest.raises(InputError, match="b0"):
        mt.apply_plan(model, Plan({}, ("b0",)), x)


class ChannelsLastBlock(torch.nn.Module):
    """A ConvNeXt-like stretch: LayerNorm over the channels of a residual stream."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.LayerNorm(8)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x).permute(0, 2, 3, 1)
        return self.fc(self.norm(x).mean((1, 2)))


def test_a_layernorm_over_pruned_channels_normalises_over_the_kept_ones():
    model = ChannelsLastBlock()
    x = noise(INPUT, 7)
    graph = trace(model, x)
    stream = graph.structure.group(graph.structure.layers[0].out_group)
    assert graph.structure.reductions and stream.prunable
    plan = Plan({stream.id: (0, 3, 5)})
    expected = run_onnx(mask_model(graph.onnx_model, graph.structure, plan), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mt.apply_plan(model, plan, x)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    exported = mt.export(model, x)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(prune_model(exported, analyze(exported), plan), x), model(x).numpy(),
                                   rtol=1e-5, atol=1e-6)


class LayerNormArithmetic(torch.nn.Module):
    """ConvNeXt's official channels-first LayerNorm, written as mean/pow/sqrt: no module to hook."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.weight = torch.nn.Parameter(torch.ones(8))
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        mean = x.mean(1, keepdim=True)
        x = (x - mean) / ((x - mean).pow(2).mean(1, keepdim=True) + 1e-6).sqrt() * self.weight[:, None, None]
        return self.fc(x.mean((2, 3)))


def test_a_normalisation_written_as_arithmetic_warns_that_it_is_approximate():
    model = LayerNormArithmetic()
    x = noise(INPUT, 7)
    structure = trace(model, x).structure
    stream = structure.group(structure.layers[0].out_group)
    assert structure.reductions and stream.prunable
    with pytest.warns(UserWarning, match="normalisation"):
        mt.apply_plan(model, Plan({stream.id: (0, 3, 5)}), x)


@pytest.mark.parametrize("attention", ["fused", "sdpa", "mha"])
def test_a_transformers_head_widths_mask_exactly_and_train_to_its_pruned_export(attention):
    """The embedding, one of two heads, q/k and v head widths and the MLP's hidden width (timm's attention,
    with scaled_dot_product_attention, and nn.MultiheadAttention: its heads folded into the dynamic batch of
    the trace), masked: the pruned
    query channels are zero (weights and bias of the projection), so q @ k^T is exact, every LayerNorm
    normalises over the kept embedding channels, and the fine-tuned masked model is its pruned export."""
    from tests import families as fam

    torch.manual_seed(0)
    make = fam.MHAAttention if attention == "mha" else lambda d, h: fam.FusedAttention(d, h, sdpa=attention == "sdpa")
    model = fam.VisionTransformer(make, dim=32, heads=2, depth=1, patch=8, image=16)
    x = noise(INPUT, 3)
    structure = trace(model, x).structure
    widths = {g.id: g for g in structure.prunable_groups if g.kind != "channels"}
    assert {g.kind for g in widths.values()} == {"embedding", "qk_dim", "v_dim", "mlp_hidden", "heads"}
    rng = np.random.default_rng(0)
    (tie,) = structure.heads
    second = (1,)  # head 0 removed whole: its q, k and v stay zero through fine-tuning
    plan = Plan({g.id: random_channels(rng, g.size, max(1, g.part_size // 2) * (1 if g.id in tie.members else g.parts),
                                       g.parts, second if g.id in tie.members else None)
                 for g in widths.values() if g.kind != "heads"} | {tie.heads: second})
    expected = run_onnx(mask_model(trace(model, x).onnx_model, structure, plan), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is approximate
        mt.apply_plan(model, plan, x)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    train(model, torch.optim.Adam(model.parameters(), lr=1e-2), 3)
    model.eval()
    exported = mt.export(model, x)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(prune_model(exported, analyze(exported), plan), x), model(x).numpy(),
                                   rtol=1e-5, atol=1e-5)
