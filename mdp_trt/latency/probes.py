"""Probes: a minimal ONNX model of one layer (weighted op + fused epilogue, or an attention product) at chosen
channel counts.

A probe's *signature* hashes everything that changes its latency except the channel counts (they are
the table's axes) and the names, so identical layers in one model, or across models, share database
entries. Probes are built at the layer's real spatial size and the requested batch, with seeded
random weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from latency_db import content_hash
from mdp_trt.errors import InputError
from mdp_trt.graph.structure import ATTENTION_OPS, ATTENTION_SCORES, Layer

PROBE_VERSION = 1  # bump when probe construction changes what is measured
DEFAULT_OPSET = 17
IR_VERSION = 10
_NAME_ONLY_ATTRS = {"group"}  # depthwise: group follows k; otherwise kept as a real attribute


def _jsonable(value: Any) -> Any:
    """Attribute values as plain JSON (bytes to str, numpy scalars/arrays to Python)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ProbeSpec:
    """What a probe measures, minus its channel counts.

    `in_spatial`/`out_spatial` are the input/output shapes without batch and channel axes (for
    MatMul, the middle axes); `epilogue` is ((op, attrs), ...).
    """

    op: str
    attrs: dict[str, Any]
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    in_repeat: int
    has_bias: bool
    epilogue: tuple[tuple[str, dict[str, Any]], ...]
    dtype: str
    depthwise: bool
    opset: int = DEFAULT_OPSET

    @classmethod
    def from_layer(cls, layer: Layer, opset: int = DEFAULT_OPSET) -> ProbeSpec:
        if layer.op in ATTENTION_OPS:
            return cls._attention(layer, opset)
        if layer.op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            raise InputError(f"layer {layer.name}: no probe for op {layer.op}")
        if len(layer.input_shape) < 2 or any(d is None for d in layer.input_shape[1:]):
            raise InputError(f"layer {layer.name}: input shape {layer.input_shape} is not static")
        conv = layer.op in ("Conv", "ConvTranspose")
        in_spatial = tuple(layer.input_shape[2:] if conv else layer.input_shape[1:-1])
        out_spatial = tuple(layer.output_shape[2:] if conv else layer.output_shape[1:-1])
        attrs = {k: _jsonable(v) for k, v in layer.attrs.items()}
        if layer.depthwise:
            attrs = {k: v for k, v in attrs.items() if k not in _NAME_ONLY_ATTRS}
        if conv and "kernel_shape" not in attrs:
            attrs["kernel_shape"] = list(layer.weight_shape[2:])
        epilogue = tuple((op.op, {k: _jsonable(v) for k, v in op.attrs.items()}) for op in layer.epilogue)
        return cls(
            op=layer.op,
            attrs=attrs,
            in_spatial=tuple(int(d) for d in in_spatial),  # type: ignore[arg-type]
            out_spatial=tuple(int(d) for d in out_spatial if d is not None),
            in_repeat=layer.in_repeat,
            has_bias=layer.has_bias,
            epilogue=epilogue,
            dtype=layer.dtype,
            depthwise=layer.depthwise,
            opset=opset,
        )

    @classmethod
    def _attention(cls, layer: Layer, opset: int) -> ProbeSpec:
        """One of an attention's products: `in_spatial` is (queries,), its attrs hold the keys and the windows;
        the heads and the width are the probe's k_in and k_out."""
        queries = int(layer.input_shape[2])
        return cls(op=layer.op, attrs={k: _jsonable(v) for k, v in layer.attrs.items()},
                   in_spatial=(queries,), out_spatial=(queries,), in_repeat=1,
                   has_bias=False, epilogue=(), dtype=layer.dtype, depthwise=False, opset=opset)

    def description(self) -> dict[str, Any]:
        """The canonical content of the signature (also stored in the database's probe table)."""
        return {
            "probe_version": PROBE_VERSION,
            "op": self.op,
            "attrs": self.attrs,
            "in_spatial": list(self.in_spatial),
            "out_spatial": list(self.out_spatial),
            "in_repeat": self.in_repeat,
            "has_bias": self.has_bias,
            "epilogue": [{"op": op, "attrs": attrs} for op, attrs in self.epilogue],
            "dtype": self.dtype,
            "depthwise": self.depthwise,
            "opset": self.opset,
        }

    @property
    def signature(self) -> str:
        return content_hash(self.description())

    @property
    def conv(self) -> bool:
        return self.op in ("Conv", "ConvTranspose")


def build_probe(spec: ProbeSpec, k_in: int, k_out: int, batch: int = 1) -> onnx.ModelProto:
    """The probe model of `spec` with `k_in` input and `k_out` output channels at `batch`."""
    if k_in < 1 or k_out < 1 or batch < 1:
        raise InputError(
            f"probe needs positive channels and batch, got k_in={k_in} k_out={k_out} batch={batch}"
        )
    if spec.depthwise and k_out % k_in:
        raise InputError(f"a depthwise probe's outputs are a multiple of its inputs, got {k_in} and {k_out}")
    seed = int(content_hash([spec.signature, k_in, k_out])[:8], 16)
    return _ProbeBuilder(spec, k_in, k_out, batch, np.random.default_rng(seed)).model()


class _ProbeBuilder:
    """Assembles one probe graph; a class only to share the growing node/initializer lists."""

    def __init__(self, spec: ProbeSpec, k_in: int, k_out: int, batch: int, rng: np.random.Generator):
        self.spec, self.k_in, self.k_out, self.batch, self.rng = spec, k_in, k_out, batch, rng
        self.np_dtype = np.dtype(spec.dtype)
        self.elem_type = helper.np_dtype_to_tensor_dtype(self.np_dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=self.np_dtype), name))
        return name

    def model(self) -> onnx.ModelProto:
        spec = self.spec
        if spec.op in ATTENTION_OPS:
            return self.attention()
        x_shape = self.input_shape()
        y = self.weighted("X")
        for index, (op, attrs) in enumerate(spec.epilogue):
            y = self.epilogue_op(index, op, attrs, y)
        self.nodes[-1].output[0] = "Y"
        graph = helper.make_graph(
            self.nodes,
            f"probe_{spec.op}",
            [helper.make_tensor_value_info("X", self.elem_type, x_shape)],
            [helper.make_tensor_value_info("Y", self.elem_type, self.output_shape())],
            initializer=self.inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", spec.opset)], producer_name="mdp-trt probe"
        )
        model.ir_version = IR_VERSION
        return model

    def attention(self) -> onnx.ModelProto:
        """`softmax(Q @ K^T * scale)` with Q (B, h, N, d), K (B, h, M, d), or `A @ V` with A (B, h, N, M) and V
        (B, h, M, d): h = k_in heads of d = k_out / h channels, B the batch times the windows per image (the
        scale's value does not change the cost).

        A width that does not divide by the heads is read at the nearest one that does: such a cell is never
        chosen, as every kept head keeps as many channels, but the table holds one."""
        spec = self.spec
        (queries,), keys, heads = spec.in_spatial, int(spec.attrs["keys"]), self.k_in
        width = max(1, round(self.k_out / heads))
        rows = self.batch * int(spec.attrs.get("windows", 1))  # Swin attends within windows: B * windows rows
        if spec.op == ATTENTION_SCORES:
            shapes = {"Q": [rows, heads, queries, width], "K": [rows, heads, keys, width]}
            out_shape = [rows, heads, queries, keys]
            scale = self.const("scale", np.asarray(width ** -0.5))
            self.nodes += [
                helper.make_node("Transpose", ["K"], ["k_t"], name="k_transpose", perm=[0, 1, 3, 2]),
                helper.make_node("Mul", ["Q", scale], ["q_scaled"], name="scale"),
                helper.make_node("MatMul", ["q_scaled", "k_t"], ["scores"], name="scores"),
                helper.make_node("Softmax", ["scores"], ["Y"], name="softmax", axis=-1),
            ]
        else:
            shapes = {"A": [rows, heads, queries, keys], "V": [rows, heads, keys, width]}
            out_shape = [rows, heads, queries, width]
            self.nodes.append(helper.make_node("MatMul", ["A", "V"], ["Y"], name="context"))
        graph = helper.make_graph(
            self.nodes, f"probe_{spec.op}",
            [helper.make_tensor_value_info(name, self.elem_type, shape) for name, shape in shapes.items()],
            [helper.make_tensor_value_info("Y", self.elem_type, out_shape)],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.opset)],
                                  producer_name="mdp-trt probe")
        model.ir_version = IR_VERSION
        return model

    @property
    def features(self) -> int:
        """Input features of a Gemm/MatMul: channels times the per-channel repeat (Flatten)."""
        return self.k_in * self.spec.in_repeat

    def input_shape(self) -> list[int]:
        spec = self.spec
        if spec.conv:
            return [self.batch, self.k_in, *spec.in_spatial]
        if spec.op == "Gemm" and spec.attrs.get("transA", 0):
            return [self.features, self.batch]
        return [self.batch, *spec.in_spatial, self.features]

    def output_shape(self) -> list[int]:
        spec = self.spec
        if spec.conv:
            return [self.batch, self.k_out, *spec.out_spatial]
        return [self.batch, *spec.out_spatial, self.k_out]

    def weighted(self, x: str) -> str:
        spec = self.spec
        attrs = dict(spec.attrs)
        inputs = [x]
        if spec.conv:
            group = self.k_in if spec.depthwise else int(attrs.get("group", 1))
            if self.k_in % group or self.k_out % group:
                raise InputError(f"grouped {spec.op} (group={group}) needs channels divisible by the group")
            attrs["group"] = group
            kernel = list(attrs["kernel_shape"])
            if spec.op == "Conv":
                w_shape = [self.k_out, self.k_in // group, *kernel]
                fan_in = self.k_in // group * math.prod(kernel)
            else:
                w_shape = [self.k_in, self.k_out // group, *kernel]
                fan_in = self.k_in * math.prod(kernel)
        elif spec.op == "Gemm":
            w_shape = [self.k_out, self.features] if attrs.get("transB", 0) else [self.features, self.k_out]
            fan_in = self.features
        else:
            w_shape = [self.features, self.k_out]
            fan_in = self.features
        scale = math.sqrt(2.0 / max(1, fan_in))
        inputs.append(self.const("W", self.rng.standard_normal(w_shape) * scale))
        if spec.has_bias:
            inputs.append(self.const("B", self.rng.standard_normal(self.k_out) * 0.1))
        self.nodes.append(helper.make_node(spec.op, inputs, ["weighted_out"], name="probe", **attrs))
        return "weighted_out"

    def emit(self, op: str, inputs: list[str], name: str) -> str:
        """One node whose output is named after it."""
        self.nodes.append(helper.make_node(op, inputs, [name], name=name))
        return name

    def channel_param(self, name: str, values: np.ndarray) -> str:
        """A per-output-channel constant broadcastable against the layer output."""
        trailing = len(self.spec.out_spatial) if self.spec.conv else 0
        return self.const(name, values.reshape(self.k_out, *([1] * trailing)))

    def epilogue_op(self, index: int, op: str, attrs: dict[str, Any], x: str) -> str:
        out = f"epilogue{index}_out"
        attrs = dict(attrs)
        inputs = [x]
        if op == "BatchNormalization":
            k = self.k_out
            inputs += [
                self.const(f"bn{index}_scale", self.rng.uniform(0.5, 1.5, k)),
                self.const(f"bn{index}_bias", self.rng.standard_normal(k) * 0.1),
                self.const(f"bn{index}_mean", self.rng.standard_normal(k) * 0.1),
                self.const(f"bn{index}_var", self.rng.uniform(0.5, 1.5, k)),
            ]
            attrs = {k_: v for k_, v in attrs.items() if k_ in ("epsilon", "momentum")}
        elif op == "Clip":
            low, high = attrs.pop("min", None), attrs.pop("max", None)
            inputs.append(self.const(f"clip{index}_min", np.array(low)) if low is not None else "")
            if high is not None:
                inputs.append(self.const(f"clip{index}_max", np.array(high)))
        elif op == "PRelu":
            inputs.append(self.channel_param(f"prelu{index}_slope", self.rng.uniform(0.0, 0.3, self.k_out)))
        elif op == "BiasAdd":  # a Linear's bias, written apart after its MatMul (see graph.layers._bias_add)
            op, inputs = "Add", [x, self.const(f"bias{index}", self.rng.standard_normal(self.k_out) * 0.1)]
        elif op == "Gelu":  # x * 0.5 * (1 + erf(x / sqrt(2))), as the model writes it (graph.layers._erf_gelu)
            scaled = self.emit("Div", [x, self.const(f"gelu{index}_sqrt2", np.array(2 ** 0.5))], f"gelu{index}_div")
            erf = self.emit("Erf", [scaled], f"gelu{index}_erf")
            shifted = self.emit("Add", [erf, self.const(f"gelu{index}_one", np.array(1.0))], f"gelu{index}_add")
            op, inputs = "Mul", [self.emit("Mul", [x, shifted], f"gelu{index}_mul"),
                                 self.const(f"gelu{index}_half", np.array(0.5))]
        elif op == "Swish":  # x * gate(x), as the model writes it (see graph.layers._self_gated)
            gate = attrs.pop("gate")
            self.nodes.append(helper.make_node(gate, [x], [f"gate{index}_out"], name=f"gate{index}", **attrs))
            op, inputs, attrs = "Mul", [x, f"gate{index}_out"], {}
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"epilogue{index}", **attrs))
        return out
