"""A hypothesis strategy for random small CNNs in ONNX, to fuzz the pruner against onnxruntime.

`cnn_models()` draws a graph of 1 to 6 stages on a 1x3x16x16 float32 input, each stage one of the
patterns real exports contain and channel pruning must see through: Conv (bias, BN, activation),
depthwise Conv, residual Adds (identity and x + s*F(x)), channel Concat and Split, SE gates, pooling,
spatial Pad, Resize, scalar and per-channel Mul/Add, PRelu, InstanceNormalization and eleven
activations (GELU as the Erf pattern torch exports). It ends in GAP + Flatten + Gemm or in a Flatten
of the whole (N, C, H, W) map into a Gemm. Hypothesis draws the structure; a drawn seed fills the
weights (He-scaled, BN statistics near but not at the identity), so shrinking simplifies the graph.
Every model is IR 10, opset 17, passes `onnx.checker.check_model(full_check=True)` and runs in ORT.
"""

from __future__ import annotations

import math
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


def _activation(g: _Graph, draw: DrawFn, x: str, name: str) -> str:
    kind = draw(st.sampled_from(ACTIVATIONS))
    if kind == "Gelu":  # x * 0.5 * (1 + erf(x / sqrt(2))), as torch exports GELU before opset 20
        y = g.node("Div", [x, g.scalar(f"{name}.sqrt2", math.sqrt(2))], f"{name}.div")
        y = g.node("Erf", [y], f"{name}.erf")
        y = g.node("Add", [y, g.scalar(f"{name}.one", 1.0)], f"{name}.add")
        y = g.node("Mul", [x, y], f"{name}.mul")
        return g.node("Mul", [y, g.scalar(f"{name}.half", 0.5)], name)
    if kind == "Clip":
        low, high = draw(st.sampled_from([(0.0, 6.0), (-1.0, 1.0)]))
        return g.node("Clip", [x, g.scalar(f"{name}.min", low), g.scalar(f"{name}.max", high)], name)
    if kind == "LeakyRelu":
        return g.node(kind, [x], name, alpha=draw(st.sampled_from([0.01, 0.1, 0.2])))
    return g.node(kind, [x], name)


def _conv_unit(g: _Graph, draw: DrawFn, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
    """Conv with an optional bias, optional BN and optional activation."""
    y = _conv(g, x, f"{name}.conv", cin, cout, k, stride=stride, bias=draw(st.booleans()))
    if draw(st.booleans()):
        y = _bn(g, y, f"{name}.bn", cout)
    return _activation(g, draw, y, f"{name}.act") if draw(st.booleans()) else y


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
    x = g.x
    if x.c < 2:
        return _stage_conv(g, draw, name)
    first = draw(st.integers(1, x.c - 1))
    sizes = g.const(f"{name}.sizes", np.array([first, x.c - first], np.int64))
    outs = [f"{name}.part0", f"{name}.part1"]
    g.nodes.append(helper.make_node("Split", [x.name, sizes], outs, name=f"{name}.split", axis=1))
    parts, widths = [], []
    for i, (part, c) in enumerate(zip(outs, (first, x.c - first), strict=True)):
        kind = draw(st.sampled_from(["keep", "activation", "conv"]))
        if kind == "activation":
            part = _activation(g, draw, part, f"{name}.p{i}.act")
        elif kind == "conv":
            cout = draw(st.integers(2, 12))
            part, c = _conv_unit(g, draw, part, f"{name}.p{i}", c, cout, 3), cout
        parts.append(part)
        widths.append(c)
    if draw(st.booleans()):  # swap the halves: the concat permutes channels
        parts.reverse()
    g.x = _Tensor(g.node("Concat", parts, f"{name}.concat", axis=1), sum(widths), x.h, x.w)
    return None


def _stage_se(g: _Graph, draw: DrawFn, name: str) -> None:
    x = g.x
    r = draw(st.integers(1, max(1, x.c // 2)))
    s = g.node("GlobalAveragePool", [x.name], f"{name}.pool")
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
}


def _head(g: _Graph, draw: DrawFn) -> tuple[int, str]:
    """The classifier; returns the number of classes and a description."""
    x = g.x
    classes = draw(st.integers(2, 10))
    if draw(st.booleans()):
        y = g.node("Flatten", [g.node("GlobalAveragePool", [x.name], "head.pool")], "head.flatten", axis=1)
        features = x.c
    else:  # every (channel, pixel) is a Gemm input: channel c owns H*W consecutive features
        y = g.node("Flatten", [x.name], "head.flatten", axis=1)
        features = x.c * x.h * x.w
    weight = g.const("head.fc.weight", g.normal((classes, features), 1 / math.sqrt(features)))
    bias = g.const("head.fc.bias", g.normal((classes,), 0.1))
    g.nodes.append(helper.make_node("Gemm", [y, weight, bias], ["output"], name="head.fc", transB=1))
    source = "GAP" if features == x.c else f"Flatten {x.c}x{x.h}x{x.w}"
    return classes, f"Gemm to {classes} classes from {source}"


@st.composite
def cnn_models(draw: DrawFn, min_stages: int = 1, max_stages: int = 6) -> onnx.ModelProto:
    """Draw a random small CNN (input `input` 1x3x16x16, output `output` (1, classes)).

    The model's doc_string lists its stages, so a failing example reads without decoding the graph.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    g = _Graph(np.random.default_rng(seed), _Tensor("input", 3, 16, 16))
    for i in range(draw(st.integers(min_stages, max_stages))):
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
