"""A hypothesis strategy for random small CNNs in ONNX, to fuzz the pruner against onnxruntime.

`cnn_models()` draws a graph of 1 to 6 stages on a 1x3x16x16 float32 input, each stage one of the
patterns real exports contain and channel pruning must see through, written op for op as PyTorch's
TorchScript exporter (Constant nodes, `Shape`-computed arguments, Identity aliases) or its dynamo
exporter (initializers, constant shapes) writes them:

* Conv (bias, BN, activation); depthwise Conv, also with a channel multiplier (group = C_in,
  C_out = m * C_in); grouped Conv (1 < group < C_in, ResNeXt/RegNet), plain or residual;
* residual Adds (identity and x + s*F(x)), channel Concat, SE gates (squeeze by GlobalAveragePool or
  `ReduceMean`/`ReduceMax` over axes [2, 3]), pooling, spatial Pad, Resize by scales or by `sizes`
  (a constant [N, C, H', W'] or `Concat(Shape(x)[:2], [H', W'])`), `Expand` of a per-channel gate or
  parameter (to `Shape(x)`, to a constant [1, C, H, W], or through TorchScript's Where form);
* Split of the channel axis in every opset-17 form: a `split` input, equal parts, `chunk` as two
  Slices with bounds `(Shape(x)[1] + 1) / 2 * k`; GhostNet's `Concat([x1, dw(x1)])[:, :oup]`;
* channel shuffle `Reshape([N, g, C/g, H, W]) -> Transpose(0, 2, 1, 3, 4) -> Reshape([N, C or -1, H, W])`
  after a ShuffleNetV2 unit (split in halves, a conv branch, concat) or a Concat of two branches;
* `Gather` of channels by constant indices (a permutation or a subset, some negative);
* parameters behind aliases: a bias or BN parameter shared by two layers through `Identity` nodes
  (TorchScript's dedup of equal parameters), weights read through `Cast` (from float16), `Reshape`
  (from a flat initializer) or `Identity`;
* a ConvNeXt block: depthwise Conv, Transpose to NHWC, LayerNormalization(axis=-1), MatMul + Add (4C),
  GELU, [GRN: ReduceL2 over H, W, ReduceMean over C], MatMul + Add (C), [layer scale], Transpose back,
  residual Add;
* normalisations over channels: ConvNeXt's channels-first LayerNorm as ReduceMean/Sub/Pow/Sqrt/Div
  arithmetic or timm's Transpose/LayerNormalization/Transpose; GroupNorm as `Reshape([0, G, -1]) ->
  InstanceNormalization -> Reshape(Shape(x) or a constant)` and a per-channel affine;
* Softmax / LogSoftmax over the channel axis (the analysis freezes those channels) or over W;
* scalar and per-channel Mul/Add, PRelu, BatchNormalization and InstanceNormalization outside a
  Conv, and eleven activations (GELU as the Erf pattern torch exports).

It ends in GAP, `ReduceMean`/`ReduceMax` over axes [2, 3] (keepdims 0) or a Flatten of the whole
(N, C, H, W) map, into a Gemm. Hypothesis draws the structure; a drawn seed fills the weights
(He-scaled, BN statistics near but not at the identity), so shrinking simplifies the graph. Every model
is IR 10, opset 17, passes `onnx.checker.check_model(full_check=True)` and runs in ORT.
`cnn_models(require=kind)` draws models that hold the stage `kind` at least once, after a Conv.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn
from onnx import TensorProto, helper, numpy_helper

MAX_SIDE = 32  # Resize doubles H and W only while they stay within this


@dataclass
class _Tensor:
    name: str
    c: int
    h: int
    w: int


@dataclass
class _Graph:
    """Nodes and initializers under construction; `x` is the tensor the next stage reads."""

    rng: np.random.Generator
    x: _Tensor
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def scalar(self, name: str, value: float) -> str:
        return self.const(name, np.array(value, np.float32))

    def constant(self, name: str, value: np.ndarray) -> str:
        """A Constant node, as the TorchScript exporter writes shape arguments and fixed tensors."""
        tensor = numpy_helper.from_array(np.asarray(value), name)
        self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=tensor))
        return name

    def value(self, name: str, value: np.ndarray, *, node: bool) -> str:
        """A Constant node (TorchScript) or an initializer (dynamo)."""
        return self.constant(name, value) if node else self.const(name, value)

    def ints(self, name: str, values: list[int], *, node: bool = True) -> str:
        return self.value(name, np.array(values, np.int64), node=node)

    def node(self, op: str, inputs: list[str], name: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def normal(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, shape).astype(np.float32)


# ---- building blocks ------------------------------------------------------------------------------
def _conv(
    g: _Graph, x: str, name: str, cin: int, cout: int, k: int, *, stride: int = 1, group: int = 1, bias: bool
) -> str:
    fan_in = cin // group * k * k
    inputs = [x, g.const(f"{name}.weight", g.normal((cout, cin // group, k, k), math.sqrt(2 / fan_in)))]
    if bias:
        inputs.append(g.const(f"{name}.bias", g.normal((cout,), 0.1)))
    p = k // 2
    return g.node("Conv", inputs, name, kernel_shape=[k, k], strides=[stride, stride], pads=[p, p, p, p], group=group)


def _bn(g: _Graph, x: str, name: str, c: int) -> str:
    params = {
        "weight": g.uniform((c,), 0.5, 1.5),
        "bias": g.normal((c,), 0.1),
        "running_mean": g.normal((c,), 0.1),
        "running_var": g.uniform((c,), 0.5, 1.5),
    }
    return g.node("BatchNormalization", [x, *(g.const(f"{name}.{k}", v) for k, v in params.items())], name)


ACTIVATIONS = (
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Softplus",
    "Gelu",
)  # fmt: skip


def _gelu(g: _Graph, x: str, name: str) -> str:
    """x * 0.5 * (1 + erf(x / sqrt(2))), as torch exports GELU before opset 20."""
    y = g.node("Div", [x, g.scalar(f"{name}.sqrt2", math.sqrt(2))], f"{name}.div")
    y = g.node("Erf", [y], f"{name}.erf")
    y = g.node("Add", [y, g.scalar(f"{name}.one", 1.0)], f"{name}.add")
    y = g.node("Mul", [x, y], f"{name}.mul")
    return g.node("Mul", [y, g.scalar(f"{name}.half", 0.5)], name)


def _activation(g: _Graph, draw: DrawFn, x: str, name: str) -> str:
    kind = draw(st.sampled_from(ACTIVATIONS))
    if kind == "Gelu":
        return _gelu(g, x, name)
    if kind == "Clip":
        low, high = draw(st.sampled_from([(0.0, 6.0), (-1.0, 1.0)]))
        return g.node("Clip", [x, g.scalar(f"{name}.min", low), g.scalar(f"{name}.max", high)], name)
    if kind == "LeakyRelu":
        return g.node(kind, [x], name, alpha=draw(st.sampled_from([0.01, 0.1, 0.2])))
    return g.node(kind, [x], name)


def _conv_unit(
    g: _Graph, draw: DrawFn, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1
) -> str:
    """Conv with an optional bias, optional BN and optional activation."""
    y = _conv(g, x, f"{name}.conv", cin, cout, k, stride=stride, group=group, bias=draw(st.booleans()))
    if draw(st.booleans()):
        y = _bn(g, y, f"{name}.bn", cout)
    return _activation(g, draw, y, f"{name}.act") if draw(st.booleans()) else y


def _widen_to(g: _Graph, draw: DrawFn, name: str, multiple: int, low: int = 1) -> _Tensor:
    """g.x when its width is a multiple of `multiple` and at least `low` times it, else a 1x1 conv unit to such a
    width (at most 12 unless `multiple * low` is more)."""
    x = g.x
    if x.c % multiple == 0 and x.c >= multiple * low:
        return x
    width = multiple * draw(st.integers(low, max(low, 12 // multiple)))
    return _Tensor(_conv_unit(g, draw, x.name, f"{name}.pre", x.c, width, 1), width, x.h, x.w)


def _narrow(g: _Graph, draw: DrawFn, name: str, most: int) -> _Tensor:
    """g.x when it has at most `most` channels, else a 1x1 conv unit to 2..8 (keeps expanding stages small)."""
    x = g.x
    if x.c <= most:
        return x
    width = draw(st.integers(2, 8))
    return _Tensor(_conv_unit(g, draw, x.name, f"{name}.pre", x.c, width, 1), width, x.h, x.w)


def _split(g: _Graph, draw: DrawFn, x: _Tensor, name: str, *, halves: bool = False) -> list[tuple[str, int]]:
    """Split x's channels into parts as an exporter writes it; returns (tensor, width) per part.

    `input`: Split with a `split` input (sizes drawn, or halves); `equal`: opset-17 Split without one
    (2 or 3 equal parts; an odd width falls back to `input`); `chunk`: TorchScript's `x.chunk(2, 1)`, two
    Slices on axis 1 whose bounds are `(Shape(x)[1] + 1) / 2 * k`, static values rather than constants.
    """
    form = draw(st.sampled_from(["input", "equal", "chunk"]))
    counts = [n for n in ((2,) if halves else (2, 3)) if x.c % n == 0]
    if form == "equal" and not counts:
        form = "input"
    if form == "chunk":
        one = g.ints(f"{name}.one", [1])  # also the Slices' axes, as TorchScript reuses it
        channels = g.node("Gather", [g.node("Shape", [x.name], f"{name}.shape"), one], f"{name}.channels", axis=0)
        half = g.node("Div", [g.node("Add", [channels, g.ints(f"{name}.plus", [1])], f"{name}.add"),
                              g.ints(f"{name}.two", [2])], f"{name}.half")
        end0 = g.node("Mul", [half, g.ints(f"{name}.k1", [1])], f"{name}.end0")
        end1 = g.node("Mul", [half, g.ints(f"{name}.k2", [2])], f"{name}.end1")
        part0 = g.node("Slice", [x.name, g.ints(f"{name}.zero", [0]), end0, one], f"{name}.part0")
        part1 = g.node("Slice", [x.name, end0, end1, one], f"{name}.part1")
        first = (x.c + 1) // 2
        return [(part0, first), (part1, x.c - first)]
    if form == "equal":
        n = draw(st.sampled_from(counts))
        sizes, inputs = [x.c // n] * n, [x.name]
    else:
        first = x.c // 2 if halves else draw(st.integers(1, x.c - 1))
        sizes = [first, x.c - first]
        inputs = [x.name, g.ints(f"{name}.sizes", sizes, node=draw(st.booleans()))]
    outs = [f"{name}.part{i}" for i in range(len(sizes))]
    g.nodes.append(helper.make_node("Split", inputs, outs, name=name, axis=1))
    return list(zip(outs, sizes, strict=True))


def _channel_shuffle(g: _Graph, draw: DrawFn, x: _Tensor, name: str, groups: int) -> str:
    """torchvision's channel_shuffle: view(N, g, C/g, H, W), transpose(1, 2), view(N, C or -1, H, W)."""
    node = draw(st.booleans())
    split = g.ints(f"{name}.shape0", [1, groups, x.c // groups, x.h, x.w], node=node)
    y = g.node("Reshape", [x.name, split], f"{name}.view0")
    y = g.node("Transpose", [y], f"{name}.transpose", perm=[0, 2, 1, 3, 4])
    merged = g.ints(f"{name}.shape1", [1, -1 if draw(st.booleans()) else x.c, x.h, x.w], node=node)
    return g.node("Reshape", [y, merged], f"{name}.view1")


def _grn(g: _Graph, x: str, name: str, c: int) -> str:
    """ConvNeXt V2's GRN on an NHWC tensor: gamma * (x * Nx) + beta + x, Nx = Gx / (mean_C(Gx) + eps)."""
    gx = g.node("ReduceL2", [x], f"{name}.l2", axes=[1, 2], keepdims=1)
    mean = g.node("ReduceMean", [gx], f"{name}.mean", axes=[-1], keepdims=1)
    nx = g.node("Div", [gx, g.node("Add", [mean, g.constant(f"{name}.eps", np.array(1e-6, np.float32))],
                                   f"{name}.add_eps")], f"{name}.nx")
    y = g.node("Mul", [x, nx], f"{name}.mul")
    y = g.node("Mul", [g.const(f"{name}.gamma", g.uniform((1, 1, 1, c), 0.2, 0.5)), y], f"{name}.scale")
    y = g.node("Add", [y, g.const(f"{name}.beta", g.normal((1, 1, 1, c), 0.1))], f"{name}.shift")
    return g.node("Add", [y, x], f"{name}.residual")


# ---- stages: each reads g.x and leaves its output in g.x -------------------------------------------
def _stage_conv(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    cout = draw(st.integers(2, 12))
    k = draw(st.sampled_from([1, 3]))
    stride = draw(st.sampled_from([1, 2])) if min(x.h, x.w) >= 2 else 1
    y = _conv_unit(g, draw, x.name, name, x.c, cout, k, stride)
    g.x = _Tensor(y, cout, (x.h - 1) // stride + 1, (x.w - 1) // stride + 1)


def _stage_depthwise(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    y = _conv(g, x.name, f"{name}.dw", x.c, x.c, 3, group=x.c, bias=draw(st.booleans()))
    if draw(st.booleans()):
        y = _bn(g, y, f"{name}.bn", x.c)
    g.x = _Tensor(_activation(g, draw, y, f"{name}.act"), x.c, x.h, x.w)


def _stage_residual(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    f = _conv_unit(g, draw, x.name, f"{name}.f1", x.c, x.c, 3)
    f = _conv_unit(g, draw, f, f"{name}.f2", x.c, x.c, draw(st.sampled_from([1, 3])))
    if draw(st.booleans()):  # x + s * F(x)
        f = g.node("Mul", [f, g.scalar(f"{name}.scale", draw(st.sampled_from([0.1, 0.5, -1.0])))], f"{name}.mul")
    y = g.node("Add", [x.name, f] if draw(st.booleans()) else [f, x.name], f"{name}.add")
    if draw(st.booleans()):
        y = _activation(g, draw, y, f"{name}.act")
    g.x = _Tensor(y, x.c, x.h, x.w)


def _stage_concat(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    parts, width = [], 0
    for i in range(draw(st.integers(2, 3))):
        if i > 0 and draw(st.booleans()):
            parts.append(x.name)  # the input itself, as DenseNet concatenates it
            width += x.c
            continue
        cout = draw(st.integers(2, 12))
        parts.append(_conv_unit(g, draw, x.name, f"{name}.b{i}", x.c, cout, draw(st.sampled_from([1, 3]))))
        width += cout
    g.x = _Tensor(g.node("Concat", parts, f"{name}.concat", axis=1), width, x.h, x.w)


def _stage_split(g: _Graph, draw: DrawFn, name: str) -> None:
    """Split the channels (every exporter form, see `_split`), treat each part, Concat them in a drawn order."""
    x = g.x
    if x.c < 2:
        return _stage_conv(g, draw, name)
    parts, widths = [], []
    for i, (part, c) in enumerate(_split(g, draw, x, f"{name}.split")):
        kind = draw(st.sampled_from(["keep", "activation", "conv"]))
        if kind == "activation":
            part = _activation(g, draw, part, f"{name}.p{i}.act")
        elif kind == "conv":
            cout = draw(st.integers(2, 12))
            part, c = _conv_unit(g, draw, part, f"{name}.p{i}", c, cout, 3), cout
        parts.append(part)
        widths.append(c)
    order = draw(st.permutations(range(len(parts))))  # a reordered concat permutes channels
    concat = g.node("Concat", [parts[i] for i in order], f"{name}.concat", axis=1)
    g.x = _Tensor(concat, sum(widths), x.h, x.w)
    return None


def _stage_se(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    r = draw(st.integers(1, max(1, x.c // 2)))
    squeeze = draw(st.sampled_from(["GlobalAveragePool", "ReduceMean", "ReduceMax"]))
    if squeeze == "GlobalAveragePool":
        s = g.node("GlobalAveragePool", [x.name], f"{name}.pool")
    else:  # x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        s = g.node(squeeze, [x.name], f"{name}.pool", axes=[2, 3], keepdims=1)
    s = _conv(g, s, f"{name}.fc1", x.c, r, 1, bias=True)
    s = g.node("Relu", [s], f"{name}.relu")
    s = _conv(g, s, f"{name}.fc2", r, x.c, 1, bias=True)
    s = g.node("Sigmoid", [s], f"{name}.sigmoid")
    g.x = _Tensor(g.node("Mul", [x.name, s], f"{name}.mul"), x.c, x.h, x.w)


def _stage_pool(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    op = draw(st.sampled_from(["MaxPool", "AveragePool"]))
    if min(x.h, x.w) >= 2 and draw(st.booleans()):
        y = g.node(op, [x.name], name, kernel_shape=[2, 2], strides=[2, 2])
        g.x = _Tensor(y, x.c, x.h // 2, x.w // 2)
    else:
        y = g.node(op, [x.name], name, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
        g.x = _Tensor(y, x.c, x.h, x.w)


def _stage_pad(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    top, left, bottom, right = (draw(st.integers(0, 2)) for _ in range(4))
    pads = g.const(f"{name}.pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
    mode = draw(st.sampled_from(["constant", "reflect", "edge"]))
    if mode == "reflect" and min(x.h, x.w) <= 2:
        mode = "edge"  # reflect needs more pixels than it pads
    y = g.node("Pad", [x.name, pads], name, mode=mode)
    g.x = _Tensor(y, x.c, x.h + top + bottom, x.w + left + right)


def _stage_resize(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    if 2 * max(x.h, x.w) > MAX_SIDE:
        return _stage_pool(g, draw, name)
    scales = g.const(f"{name}.scales", np.array([1, 1, 2, 2], np.float32))
    mode = draw(st.sampled_from(["nearest", "linear"]))
    y = g.node("Resize", [x.name, "", scales], name, mode=mode)
    g.x = _Tensor(y, x.c, 2 * x.h, 2 * x.w)
    return None


def _stage_affine(g: _Graph, draw: DrawFn, name: str) -> None:
    """Mul or Add by a scalar or by a per-channel constant of shape (1, C, 1, 1) or (C, 1, 1)."""
    x = g.x
    op = draw(st.sampled_from(["Mul", "Add"]))
    shape = draw(st.sampled_from([(), (1, x.c, 1, 1), (x.c, 1, 1)]))
    value = g.uniform(shape, 0.5, 1.5) * g.rng.choice([-1, 1]) if op == "Mul" else g.normal(shape, 0.5)
    const = g.const(f"{name}.value", np.asarray(value, np.float32))
    inputs = [x.name, const] if draw(st.booleans()) else [const, x.name]
    g.x = _Tensor(g.node(op, inputs, name), x.c, x.h, x.w)


def _stage_prelu(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    slope = g.const(f"{name}.slope", g.uniform((x.c, 1, 1), 0.0, 0.3))
    g.x = _Tensor(g.node("PRelu", [x.name, slope], name), x.c, x.h, x.w)


def _stage_instance_norm(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    scale = g.const(f"{name}.weight", g.uniform((x.c,), 0.5, 1.5))
    bias = g.const(f"{name}.bias", g.normal((x.c,), 0.1))
    g.x = _Tensor(g.node("InstanceNormalization", [x.name, scale, bias], name), x.c, x.h, x.w)


def _stage_bn(g: _Graph, draw: DrawFn, name: str) -> None:
    """A BN that follows something other than a Conv, so it cannot be folded."""
    x = g.x
    g.x = _Tensor(_bn(g, x.name, name, x.c), x.c, x.h, x.w)


def _stage_activation(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    g.x = _Tensor(_activation(g, draw, x.name, name), x.c, x.h, x.w)


def _stage_grouped(g: _Graph, draw: DrawFn, name: str) -> None:
    """Grouped Conv (ResNeXt, RegNet, ShuffleNet v1): 1 < group < C_in, with optional bias/BN/activation,
    plain or as a residual branch."""
    group = draw(st.sampled_from([2, 4]))
    x = _widen_to(g, draw, name, group, low=2)  # two channels per group at least: not depthwise
    residual = draw(st.booleans())
    cout = x.c if residual else group * draw(st.integers(1, 3))
    y = _conv_unit(g, draw, x.name, name, x.c, cout, draw(st.sampled_from([1, 3])), group=group)
    if residual:
        y = g.node("Add", [x.name, y], f"{name}.add")
    g.x = _Tensor(y, cout, x.h, x.w)


def _stage_depthwise_multiplier(g: _Graph, draw: DrawFn, name: str) -> None:
    """Depthwise Conv with a channel multiplier: group = C_in, C_out = m * C_in."""
    x = _narrow(g, draw, name, 12)
    cout = draw(st.sampled_from([2, 3])) * x.c
    y = _conv(g, x.name, f"{name}.dw", x.c, cout, 3, group=x.c, bias=draw(st.booleans()))
    if draw(st.booleans()):
        y = _bn(g, y, f"{name}.bn", cout)
    if draw(st.booleans()):
        y = _activation(g, draw, y, f"{name}.act")
    g.x = _Tensor(y, cout, x.h, x.w)


def _stage_shuffle(g: _Graph, draw: DrawFn, name: str) -> None:
    """Channel shuffle after a ShuffleNetV2 unit (split in halves, conv branch on one, concat; groups 2) or after
    a Concat of two conv branches (groups 2, 3 or 4)."""
    if draw(st.booleans()):
        x = _widen_to(g, draw, name, 2, low=2)
        (x1, _), (x2, c) = _split(g, draw, x, f"{name}.split", halves=True)
        b = _conv_unit(g, draw, x2, f"{name}.b1", c, c, 1)
        b = _bn(g, _conv(g, b, f"{name}.b2", c, c, 3, group=c, bias=False), f"{name}.b2.bn", c)
        b = _conv_unit(g, draw, b, f"{name}.b3", c, c, 1)
        width, groups = x.c, 2
        joined = g.node("Concat", [x1, b], f"{name}.concat", axis=1)
    else:
        x = g.x
        groups = draw(st.sampled_from([2, 3, 4]))
        width = groups * draw(st.integers(2, 4))
        first = draw(st.integers(2, width - 2))
        branches = [_conv_unit(g, draw, x.name, f"{name}.b{i}", x.c, c, draw(st.sampled_from([1, 3])))
                    for i, c in enumerate((first, width - first))]
        joined = g.node("Concat", branches, f"{name}.concat", axis=1)
    g.x = _Tensor(_channel_shuffle(g, draw, _Tensor(joined, width, x.h, x.w), name, groups), width, x.h, x.w)


def _stage_ghost(g: _Graph, draw: DrawFn, name: str) -> None:
    """GhostNet's module: x1 = primary conv (ceil(oup / 2)), x2 = depthwise cheap op on x1,
    `torch.cat([x1, x2], 1)[:, :oup]` (a Slice with Constant bounds; a real cut when oup is odd)."""
    x = g.x
    oup = draw(st.integers(2, 12))
    init = -(-oup // 2)
    x1 = _conv_unit(g, draw, x.name, f"{name}.primary", x.c, init, 1)
    x2 = _conv(g, x1, f"{name}.cheap", init, init, 3, group=init, bias=False)
    x2 = _bn(g, x2, f"{name}.cheap.bn", init)
    if draw(st.booleans()):
        x2 = g.node("Relu", [x2], f"{name}.cheap.relu")
    y = g.node("Concat", [x1, x2], f"{name}.concat", axis=1)
    bounds = [g.ints(f"{name}.{k}", [v]) for k, v in (("start", 0), ("end", oup), ("axis", 1), ("step", 1))]
    g.x = _Tensor(g.node("Slice", [y, *bounds], f"{name}.slice"), oup, x.h, x.w)


def _weight(g: _Graph, draw: DrawFn, name: str, shape: tuple[int, ...], std: float) -> str:
    """A weight read through an alias: the initializer itself, Identity, Cast from float16 or Reshape of a flat one."""
    value = g.normal(shape, std)
    form = draw(st.sampled_from(["plain", "identity", "cast", "reshape"]))
    if form == "plain":
        return g.const(name, value)
    if form == "identity":
        return g.node("Identity", [g.const(f"{name}.source", value)], name)
    if form == "cast":
        return g.node("Cast", [g.const(f"{name}.fp16", value.astype(np.float16))], name, to=TensorProto.FLOAT)
    target = g.ints(f"{name}.shape", list(shape), node=draw(st.booleans()))
    return g.node("Reshape", [g.const(f"{name}.flat", value.reshape(-1)), target], name)


def _stage_alias(g: _Graph, draw: DrawFn, name: str) -> None:
    """Two Convs of width c that share a bias or BN parameters, as the TorchScript exporter dedups equal
    parameters: one initializer, read directly by the first and through `Identity` by the second (or through an
    Identity each); the weights read through `_weight`'s aliases."""
    x = g.x
    c = draw(st.integers(2, 12))
    first_direct = draw(st.booleans())
    shared_bn = draw(st.booleans())

    def alias(source: str, reader: str, direct: bool) -> str:
        return source if direct else g.node("Identity", [source], reader)

    params: dict[str, str] = {}
    if shared_bn:
        keys = draw(st.sets(st.sampled_from(["weight", "bias", "running_mean", "running_var"]), min_size=1))
        values = {"weight": g.uniform((c,), 0.5, 1.5), "bias": g.normal((c,), 0.1),
                  "running_mean": g.normal((c,), 0.1), "running_var": g.uniform((c,), 0.5, 1.5)}
        params = {k: g.const(f"{name}.shared.{k}", values[k]) for k in sorted(keys)}
    else:
        params = {"bias": g.const(f"{name}.shared.bias", g.normal((c,), 0.1))}
    y, cin = x.name, x.c
    for i in range(2):
        unit = f"{name}.c{i}"
        k = draw(st.sampled_from([1, 3]))
        inputs = [y, _weight(g, draw, f"{unit}.weight", (c, cin, k, k), math.sqrt(2 / (cin * k * k)))]
        if not shared_bn:
            inputs.append(alias(params["bias"], f"{unit}.bias", first_direct and i == 0))
        y = g.node("Conv", inputs, unit, kernel_shape=[k, k], pads=[k // 2] * 4)
        if shared_bn:
            bn = [alias(params[key], f"{unit}.bn.{key}", first_direct and i == 0) if key in params
                  else g.const(f"{unit}.bn.{key}", g.uniform((c,), 0.5, 1.5) if key in ("weight", "running_var")
                               else g.normal((c,), 0.1))
                  for key in ("weight", "bias", "running_mean", "running_var")]
            y = g.node("BatchNormalization", [y, *bn], f"{unit}.bn")
        if draw(st.booleans()):
            y = _activation(g, draw, y, f"{unit}.act")
        cin = c
    g.x = _Tensor(y, c, x.h, x.w)


def _stage_convnext(g: _Graph, draw: DrawFn, name: str) -> None:
    """A ConvNeXt block as TorchScript writes it: depthwise Conv, Transpose to NHWC, LayerNormalization(axis -1),
    Add(b, MatMul(., W1 (C, 4C))), GELU, [V2: GRN], Add(b, MatMul(., W2 (4C, C))), [V1: Mul by a layer scale
    (C,)], Transpose back, residual Add."""
    x = _narrow(g, draw, name, 12)
    c, hidden = x.c, 4 * x.c
    k = draw(st.sampled_from([3, 7]))
    y = _conv(g, x.name, f"{name}.dwconv", c, c, k, group=c, bias=True)
    y = g.node("Transpose", [y], f"{name}.nhwc", perm=[0, 2, 3, 1])
    y = g.node("LayerNormalization", [y, g.const(f"{name}.norm.weight", g.uniform((c,), 0.5, 1.5)),
                                      g.const(f"{name}.norm.bias", g.normal((c,), 0.1))],
               f"{name}.norm", axis=-1, epsilon=1e-6)
    y = g.node("MatMul", [y, g.const(f"{name}.fc1.weight", g.normal((c, hidden), math.sqrt(2 / c)))], f"{name}.fc1")
    y = g.node("Add", [g.const(f"{name}.fc1.bias", g.normal((hidden,), 0.1)), y], f"{name}.fc1.add")
    y = _gelu(g, y, f"{name}.act")
    v2 = draw(st.booleans())
    if v2:
        y = _grn(g, y, f"{name}.grn", hidden)
    w2 = g.normal((hidden, c), math.sqrt(1 / hidden))
    y = g.node("MatMul", [y, g.const(f"{name}.fc2.weight", w2)], f"{name}.fc2")
    y = g.node("Add", [g.const(f"{name}.fc2.bias", g.normal((c,), 0.1)), y], f"{name}.fc2.add")
    if not v2:
        y = g.node("Mul", [y, g.const(f"{name}.gamma", g.uniform((c,), 0.1, 1.0))], f"{name}.layer_scale")
    y = g.node("Transpose", [y], f"{name}.nchw", perm=[0, 3, 1, 2])
    g.x = _Tensor(g.node("Add", [x.name, y], f"{name}.add"), c, x.h, x.w)


def _stage_channel_ln(g: _Graph, draw: DrawFn, name: str) -> None:
    """A LayerNorm over the channels of an NCHW tensor: ConvNeXt's official arithmetic (u = mean_C(x), d = x - u,
    v = mean_C(d^2), w * d / sqrt(v + eps) + b), or timm's LayerNorm2d (Transpose to NHWC, LayerNormalization
    over the last axis, Transpose back)."""
    x = g.x
    if draw(st.booleans()):
        y = g.node("Transpose", [x.name], f"{name}.nhwc", perm=[0, 2, 3, 1])
        y = g.node("LayerNormalization", [y, g.const(f"{name}.weight", g.uniform((x.c,), 0.5, 1.5)),
                                          g.const(f"{name}.bias", g.normal((x.c,), 0.1))],
                   f"{name}.norm", axis=-1, epsilon=1e-6)
        g.x = _Tensor(g.node("Transpose", [y], name, perm=[0, 3, 1, 2]), x.c, x.h, x.w)
        return
    u = g.node("ReduceMean", [x.name], f"{name}.mean", axes=[1], keepdims=1)
    d = g.node("Sub", [x.name, u], f"{name}.sub")
    if draw(st.booleans()):
        sq = g.node("Pow", [d, g.constant(f"{name}.two", np.array(2.0, np.float32))], f"{name}.pow")
    else:
        sq = g.node("Mul", [d, d], f"{name}.square")
    v = g.node("ReduceMean", [sq], f"{name}.var", axes=[1], keepdims=1)
    v = g.node("Add", [v, g.constant(f"{name}.eps", np.array(1e-6, np.float32))], f"{name}.add_eps")
    y = g.node("Div", [d, g.node("Sqrt", [v], f"{name}.sqrt")], f"{name}.div")
    y = g.node("Mul", [g.const(f"{name}.weight", g.uniform((x.c, 1, 1), 0.5, 1.5)), y], f"{name}.scale")
    y = g.node("Add", [y, g.const(f"{name}.bias", g.normal((x.c, 1, 1), 0.1))], name)
    g.x = _Tensor(y, x.c, x.h, x.w)


def _stage_group_norm(g: _Graph, draw: DrawFn, name: str) -> None:
    """GroupNorm at opset 17: Reshape(x, [0, G, -1]), InstanceNormalization(ones(G), zeros(G)), Reshape back to
    Shape(x) (TorchScript) or to a constant (dynamo), Mul by w (C, 1, 1), Add b (C, 1, 1)."""
    x = g.x
    groups = draw(st.sampled_from([d for d in range(1, x.c + 1) if x.c % d == 0]))
    node = draw(st.booleans())
    y = g.node("Reshape", [x.name, g.ints(f"{name}.groups", [0, groups, -1], node=node)], f"{name}.view")
    scale = g.value(f"{name}.ones", np.ones(groups, np.float32), node=node)
    bias = g.value(f"{name}.zeros", np.zeros(groups, np.float32), node=node)
    y = g.node("InstanceNormalization", [y, scale, bias], f"{name}.norm", epsilon=1e-5)
    if node:
        target = g.node("Shape", [x.name], f"{name}.shape")
    else:
        target = g.ints(f"{name}.shape", [1, x.c, x.h, x.w], node=False)
    y = g.node("Reshape", [y, target], f"{name}.unview")
    y = g.node("Mul", [y, g.const(f"{name}.weight", g.uniform((x.c, 1, 1), 0.5, 1.5))], f"{name}.scale")
    y = g.node("Add", [y, g.const(f"{name}.bias", g.normal((x.c, 1, 1), 0.1))], name)
    g.x = _Tensor(y, x.c, x.h, x.w)


def _stage_gather(g: _Graph, draw: DrawFn, name: str) -> None:
    """`x[:, idx]` / index_select on the channels with constant 1-D indices: a permutation or a subset of two
    or more, some written negative."""
    x = g.x
    if x.c >= 3 and draw(st.booleans()):
        indices = draw(st.lists(st.integers(0, x.c - 1), min_size=2, max_size=x.c - 1, unique=True))
    else:
        indices = list(draw(st.permutations(range(x.c))))
    if draw(st.booleans()):
        indices = [i - x.c if j % 2 else i for j, i in enumerate(indices)]
    y = g.node("Gather", [x.name, g.ints(f"{name}.indices", indices, node=draw(st.booleans()))], name, axis=1)
    g.x = _Tensor(y, len(indices), x.h, x.w)


def _stage_resize_sizes(g: _Graph, draw: DrawFn, name: str) -> None:
    """Resize to sizes: the constant [N, C, H', W'] dynamo writes, or TorchScript's Concat(Shape(x)[0:2], [H', W']).
    H', W' double H, W while within MAX_SIDE, else halve them."""
    x = g.x
    if 2 * max(x.h, x.w) <= MAX_SIDE:
        h, w = 2 * x.h, 2 * x.w
    else:
        h, w = max(1, x.h // 2), max(1, x.w // 2)
    if draw(st.booleans()):
        sizes = g.ints(f"{name}.sizes", [1, x.c, h, w], node=False)
    else:
        head = g.node("Slice", [g.node("Shape", [x.name], f"{name}.shape"), g.ints(f"{name}.start", [0]),
                                g.ints(f"{name}.end", [2]), g.ints(f"{name}.axis", [0])], f"{name}.batch_channels")
        sizes = g.node("Concat", [head, g.ints(f"{name}.hw", [h, w])], f"{name}.sizes", axis=0)
    if draw(st.booleans()):
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        attrs = {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}
    g.x = _Tensor(g.node("Resize", [x.name, "", "", sizes], name, **attrs), x.c, h, w)


def _stage_expand(g: _Graph, draw: DrawFn, name: str) -> None:
    """Expand of a per-channel tensor (a spatial mean or max of x, or a (1, C, 1, 1) parameter) to x's shape, then
    Mul or Add with x. The shape: Shape(x) (expand_as), a constant [1, C, H, W] (dynamo), or TorchScript's
    `expand(-1, -1, H, W)`: Where(Equal(c, -ones), ones, c) with c = [-1, -1, H, W]."""
    x = g.x
    source = draw(st.sampled_from(["ReduceMean", "ReduceMax", "parameter"]))
    if source == "parameter":
        s = g.const(f"{name}.parameter", g.normal((1, x.c, 1, 1), 0.5))
    else:
        s = g.node(source, [x.name], f"{name}.pool", axes=[2, 3], keepdims=1)
        if draw(st.booleans()):
            s = g.node("Sigmoid", [s], f"{name}.sigmoid")
    form = draw(st.sampled_from(["shape", "constant", "where"]))
    if form == "shape":
        shape = g.node("Shape", [x.name], f"{name}.shape")
    elif form == "constant":
        shape = g.ints(f"{name}.shape", [1, x.c, x.h, x.w], node=False)
    else:
        ones = g.node("ConstantOfShape", [g.ints(f"{name}.rank", [4])], f"{name}.ones",
                      value=numpy_helper.from_array(np.array([1], np.int64)))
        minus = g.node("Mul", [ones, g.constant(f"{name}.minus", np.array(-1, np.int64))], f"{name}.minus_ones")
        wanted = [-1, -1, x.h, x.w]
        equal = g.node("Equal", [g.ints(f"{name}.wanted", wanted), minus], f"{name}.equal")
        shape = g.node("Where", [equal, ones, g.ints(f"{name}.wanted2", wanted)], f"{name}.shape")
    e = g.node("Expand", [s, shape], f"{name}.expand")
    op = draw(st.sampled_from(["Mul", "Add"]))
    g.x = _Tensor(g.node(op, [x.name, e], name), x.c, x.h, x.w)


def _stage_softmax(g: _Graph, draw: DrawFn, name: str) -> None:
    """Softmax or LogSoftmax over the channel axis (categories: the analysis freezes them) or over W."""
    x = g.x
    op = draw(st.sampled_from(["Softmax", "LogSoftmax"]))
    axis = draw(st.sampled_from([1, 1, -1]))
    g.x = _Tensor(g.node(op, [x.name], name, axis=axis), x.c, x.h, x.w)


STAGES: dict[str, Callable[[_Graph, DrawFn, str], None]] = {
    "conv": _stage_conv,
    "depthwise": _stage_depthwise,
    "residual": _stage_residual,
    "concat": _stage_concat,
    "split": _stage_split,
    "se": _stage_se,
    "pool": _stage_pool,
    "pad": _stage_pad,
    "resize": _stage_resize,
    "affine": _stage_affine,
    "prelu": _stage_prelu,
    "instance_norm": _stage_instance_norm,
    "bn": _stage_bn,
    "activation": _stage_activation,
    "grouped": _stage_grouped,
    "depthwise_multiplier": _stage_depthwise_multiplier,
    "shuffle": _stage_shuffle,
    "ghost": _stage_ghost,
    "alias": _stage_alias,
    "convnext": _stage_convnext,
    "channel_ln": _stage_channel_ln,
    "group_norm": _stage_group_norm,
    "gather": _stage_gather,
    "resize_sizes": _stage_resize_sizes,
    "expand": _stage_expand,
    "softmax": _stage_softmax,
}


def _head(g: _Graph, draw: DrawFn) -> tuple[int, str]:
    """The classifier; returns the number of classes and a description."""
    x = g.x
    classes = draw(st.integers(2, 10))
    pool = draw(st.sampled_from(["GlobalAveragePool", "ReduceMean", "ReduceMax", "Flatten"]))
    if pool == "GlobalAveragePool":
        y = g.node("Flatten", [g.node("GlobalAveragePool", [x.name], "head.pool")], "head.flatten", axis=1)
        features = x.c
    elif pool != "Flatten":  # x.mean((2, 3)), x.amax((2, 3)): (N, C) directly
        y = g.node(pool, [x.name], "head.pool", axes=[2, 3], keepdims=0)
        features = x.c
    else:  # every (channel, pixel) is a Gemm input: channel c owns H*W consecutive features
        y = g.node("Flatten", [x.name], "head.flatten", axis=1)
        features = x.c * x.h * x.w
    weight = g.const("head.fc.weight", g.normal((classes, features), 1 / math.sqrt(features)))
    bias = g.const("head.fc.bias", g.normal((classes,), 0.1))
    g.nodes.append(helper.make_node("Gemm", [y, weight, bias], ["output"], name="head.fc", transB=1))
    source = {"GlobalAveragePool": "GAP", "Flatten": f"Flatten {x.c}x{x.h}x{x.w}"}.get(pool, pool)
    return classes, f"Gemm to {classes} classes from {source}"


@st.composite
def cnn_models(
    draw: DrawFn, min_stages: int = 1, max_stages: int = 6, require: str | None = None
) -> onnx.ModelProto:
    """Draw a random small CNN (input `input` 1x3x16x16, output `output` (1, classes)).

    `require` names a stage the model holds at least once, at a drawn position after a first `conv` stage (the
    input's channels are not prunable: a stage that reads them alone would exercise nothing). The model's
    doc_string lists its stages (`stage_kinds` reads them back), so a failing example reads without decoding
    the graph.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    g = _Graph(np.random.default_rng(seed), _Tensor("input", 3, 16, 16))
    count = draw(st.integers(max(min_stages, 2) if require else min_stages, max(max_stages, 2)))
    required = draw(st.integers(1, count - 1)) if require is not None else -1
    for i in range(count):
        if i == required:
            kind = require
        elif i == 0 and require is not None:
            kind = "conv"
        else:
            kind = draw(st.sampled_from(sorted(STAGES)))
        STAGES[kind](g, draw, f"s{i}")
        g.stages.append(f"s{i}:{kind}->{g.x.c}x{g.x.h}x{g.x.w}")
    classes, head = _head(g, draw)
    g.stages.append(head)
    graph = helper.make_graph(
        g.nodes,
        "random_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, classes])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="random_graphs")
    model.ir_version = 10
    model.doc_string = f"seed {seed}: " + ", ".join(g.stages)
    return model


def stage_kinds(model: onnx.ModelProto) -> list[str]:
    """The stages a model `cnn_models()` drew holds, in order (read from its doc_string)."""
    return re.findall(r"\bs\d+:(\w+)->", model.doc_string)
