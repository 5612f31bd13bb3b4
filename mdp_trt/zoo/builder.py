"""A tiny graph builder shared by the zoo architectures.

It accumulates ONNX nodes and initializers under readable, torchvision-like names (`layer1.0.conv1`,
`layer1.0.conv1.weight`) and draws seeded weights at realistic scales: He-normal convs and hidden
Gemms; BN with gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1) and running statistics taken from a probe batch
of random images pushed through the graph as it is built (running var = measured var x U(0.5, 1.5),
running mean = measured mean + a small jitter; see `probe`), so activations stay of order one through
fifty layers as they do in a trained network.

Names are claimed in one namespace and a repeat is a bug, so every node, tensor and initializer name is
unique by construction. BN folding happens here, at emission time, so a folded and an unfolded model
built with the same seed draw the same numbers and compute the same function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from mdp_trt.zoo import probe

IR_VERSION = 10
OPSET = 17
BN_EPSILON = 1e-5
PROBE_PIXELS = 128 * 128  # the probe batch holds about this many pixels (at least one image)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor`, never dropping more than 10%.

    This is torchvision's rule for width multipliers; it keeps channel counts hardware-friendly.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class GraphBuilder:
    """Accumulates one graph; every emitting method returns the name of the tensor it produced.

    A node's output tensor takes the node's name, so a tensor can be traced back to its producer by name.
    `values` holds each tensor's value on the probe batch (about PROBE_PIXELS pixels, at least one image,
    at most 8), so building ResNet-50 at 224 holds about 400 MB of float64 activations for a moment.
    """

    def __init__(self, name: str, *, seed: int, fold_bn: bool) -> None:
        self.name = name
        self.fold_bn = fold_bn
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        # initializers go straight into the final model: copying a 500 MB graph twice more (make_graph,
        # make_model) would triple the peak memory of building VGG at 224
        self.model = onnx.ModelProto(ir_version=IR_VERSION, producer_name="mdp-trt.zoo")
        self.model.opset_import.append(helper.make_opsetid("", OPSET))
        self.inputs: list[onnx.ValueInfoProto] = []
        self.values: dict[str, np.ndarray] = {}
        self._names: set[str] = set()
        self._consts: set[str] = set()

    # ---- bookkeeping ---------------------------------------------------------------------------
    def _claim(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"zoo builder: name {name!r} used twice in {self.name}")
        self._names.add(name)
        return name

    def input(self, name: str, channels: int, size: int, batch: int | str) -> str:
        """Declare the NCHW float32 graph input; `batch` is an int or a symbolic dim name."""
        shape = [batch, channels, size, size]
        self.inputs.append(helper.make_tensor_value_info(self._claim(name), TensorProto.FLOAT, shape))
        probe_batch = min(8, math.ceil(PROBE_PIXELS / (size * size)))
        # a separate stream, so the probe never shifts the weights' draws
        images = np.random.default_rng(0).standard_normal((probe_batch, channels, size, size))
        self.values[name] = images
        return name

    def param(self, name: str, array: np.ndarray) -> str:
        """Add an initializer under `name`."""
        tensor = self.model.graph.initializer.add()  # filled in place: appending would copy it
        tensor.name = self._claim(name)
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        little_endian = array.dtype.newbyteorder("<")  # ONNX raw_data is little-endian
        tensor.raw_data = np.ascontiguousarray(array).astype(little_endian, copy=False).tobytes()
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        """A constant shared by several nodes (Clip bounds, Resize scales), created on first use."""
        if name not in self._consts:
            self._consts.add(self.param(name, array))
        return name

    def node(self, op: str, inputs: Sequence[str], name: str, value: np.ndarray, **attrs: object) -> str:
        """Emit one node named `name`; its single output tensor, also called `name`, is `value` on the
        probe batch (float64: BLAS sums in a thread-dependent order, and float32 probe values would let
        that change the BN statistics, so the same seed would not give the same bytes everywhere)."""
        self._claim(name)
        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        self.values[name] = value
        return name

    # ---- weighted layers -----------------------------------------------------------------------
    def normal(self, shape: Sequence[int], std: float) -> np.ndarray:
        """Seeded float32 N(0, std^2) values: the builder's one source of weights, so a seed fixes them all."""
        weights = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        weights *= np.float32(std)  # in place: VGG's first Gemm weight alone is 411 MB
        return weights

    def bias(self, n: int) -> np.ndarray:
        return self.normal((n,), 0.02)

    def _conv_weight(self, cin: int, cout: int, k: int, group: int, gain: float) -> np.ndarray:
        """He-normal weight, variance gain / fan_in: gain 2 keeps the scale through a following ReLU."""
        return self.normal((cout, cin // group, k, k), math.sqrt(gain / (cin // group * k * k)))

    def conv(
        self,
        x: str,
        name: str,
        cin: int,
        cout: int,
        k: int,
        *,
        stride: int = 1,
        group: int = 1,
        bias: bool = False,
        gain: float = 2.0,
        pad: int | None = None,
    ) -> str:
        """A square Conv with padding `pad`, by default k//2 (spatial size kept at stride 1)."""
        weight = self._conv_weight(cin, cout, k, group, gain)
        b = self.bias(cout) if bias else None
        pad = k // 2 if pad is None else pad
        value = probe.conv(self.values[x], weight, b, stride, pad, group)
        return self._emit_conv(x, name, weight, b, value, stride=stride, group=group, pad=pad)

    def _emit_conv(
        self,
        x: str,
        name: str,
        weight: np.ndarray,
        bias: np.ndarray | None,
        value: np.ndarray,
        *,
        stride: int,
        group: int,
        pad: int | None = None,
    ) -> str:
        k = weight.shape[2]
        inputs = [x, self.param(f"{name}.weight", weight)]
        if bias is not None:
            inputs.append(self.param(f"{name}.bias", bias))
        p = k // 2 if pad is None else pad
        return self.node(
            "Conv",
            inputs,
            name,
            value,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[p, p, p, p],
            group=group,
            dilations=[1, 1],
        )

    def _bn_params(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """(gamma, beta, running mean, running var) for a BN that sees probe values `x`."""
        c = x.shape[1]
        mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
        var = x.var(axis=(0, 2, 3), dtype=np.float64)
        var = np.maximum(var, 1e-3 * var.mean() + 1e-6)  # a channel ReLU killed on the probe
        gamma = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        beta = self.normal((c,), 0.1)
        run_mean = (mean + self.normal((c,), 0.1) * np.sqrt(var)).astype(np.float32)
        run_var = (self.rng.uniform(0.5, 1.5, c) * var).astype(np.float32)
        return gamma, beta, run_mean, run_var

    def bn(self, x: str, name: str) -> str:
        """An inference-mode BatchNormalization (one not directly after a Conv, e.g. on a Concat)."""
        params = self._bn_params(self.values[x])
        return self._emit_bn(x, name, params, _batchnorm(self.values[x], params))

    def _emit_bn(self, x: str, name: str, params: tuple[np.ndarray, ...], value: np.ndarray) -> str:
        suffixes = ("weight", "bias", "running_mean", "running_var")
        inputs = [x, *(self.param(f"{name}.{s}", p) for s, p in zip(suffixes, params, strict=True))]
        return self.node("BatchNormalization", inputs, name, value, epsilon=BN_EPSILON)

    def conv_bn(
        self,
        x: str,
        conv_name: str,
        bn_name: str,
        cin: int,
        cout: int,
        k: int,
        *,
        stride: int = 1,
        group: int = 1,
        bias: bool = False,
        gain: float = 2.0,
    ) -> str:
        """Conv (bias-free unless `bias`, as VGG has) followed by BN; with `fold_bn` the BN is folded
        into the Conv's weight and bias.

        The draws and probe values are the same either way, so the folded model equals the unfolded one.
        """
        weight = self._conv_weight(cin, cout, k, group, gain)
        b = self.bias(cout) if bias else None
        z = probe.conv(self.values[x], weight, b, stride, k // 2, group)
        params = self._bn_params(z)
        y = _batchnorm(z, params)
        if not self.fold_bn:
            conv = self._emit_conv(x, conv_name, weight, b, z, stride=stride, group=group)
            return self._emit_bn(conv, bn_name, params, y)
        gamma, beta, run_mean, run_var = (p.astype(np.float64) for p in params)
        scale = gamma / np.sqrt(run_var + BN_EPSILON)
        folded_w = (weight * scale[:, None, None, None]).astype(np.float32)
        folded_b = (beta + ((0 if b is None else b) - run_mean) * scale).astype(np.float32)
        return self._emit_conv(x, conv_name, folded_w, folded_b, y, stride=stride, group=group)

    def conv_transpose(self, x: str, name: str, cin: int, cout: int, k: int) -> str:
        """A ConvTranspose upsampler with kernel = stride = k: each output pixel sees one tap per input
        channel, so its He fan-in is cin."""
        weight = self.normal((cin, cout, k, k), math.sqrt(2.0 / cin))
        bias = self.bias(cout)
        inputs = [x, self.param(f"{name}.weight", weight), self.param(f"{name}.bias", bias)]
        return self.node(
            "ConvTranspose",
            inputs,
            name,
            probe.conv_transpose(self.values[x], weight, bias),
            kernel_shape=[k, k],
            strides=[k, k],
            pads=[0, 0, 0, 0],
        )

    def gemm(self, x: str, name: str, cin: int, cout: int, *, gain: float = 1.0) -> str:
        """A Linear layer as torch exports it: Gemm with transB=1, weight (out, in), bias (out,)."""
        weight = self.normal((cout, cin), math.sqrt(gain / cin))
        bias = self.bias(cout)
        inputs = [x, self.param(f"{name}.weight", weight), self.param(f"{name}.bias", bias)]
        value = probe.gemm(self.values[x], weight, bias)
        return self.node("Gemm", inputs, name, value, alpha=1.0, beta=1.0, transB=1)

    # ---- parameter-free ops --------------------------------------------------------------------
    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name, np.maximum(self.values[x], 0))

    def relu6(self, x: str, name: str) -> str:
        """ReLU6 the way torch exports it: Clip with scalar min 0 and max 6 inputs."""
        bounds = [
            self.const("const.clip_min_0", np.array(0.0, np.float32)),
            self.const("const.clip_max_6", np.array(6.0, np.float32)),
        ]
        return self.node("Clip", [x, *bounds], name, np.clip(self.values[x], 0, 6))

    def sigmoid(self, x: str, name: str) -> str:
        return self.node("Sigmoid", [x], name, 1 / (1 + np.exp(-self.values[x])))

    def add(self, a: str, b: str, name: str) -> str:
        return self.node("Add", [a, b], name, self.values[a] + self.values[b])

    def mul(self, a: str, b: str, name: str) -> str:
        return self.node("Mul", [a, b], name, self.values[a] * self.values[b])

    def split(self, x: str, name: str, sizes: Sequence[int], axis: int) -> list[str]:
        """Split along `axis` into parts of `sizes` (a `split` input, opset 13+); outputs `name.0`, `name.1`..."""
        self._claim(name)
        outputs = [self._claim(f"{name}.{i}") for i in range(len(sizes))]
        label = "_".join(str(s) for s in sizes)
        split = self.const(f"const.split_{label}", np.array(list(sizes), np.int64))
        self.nodes.append(helper.make_node("Split", [x, split], outputs, name=name, axis=axis))
        bounds = np.cumsum(sizes)[:-1]
        for output, value in zip(outputs, np.split(self.values[x], bounds, axis=axis), strict=True):
            self.values[output] = value
        return outputs

    def concat(self, xs: Sequence[str], name: str) -> str:
        """Concatenate on the channel axis."""
        value = np.concatenate([self.values[x] for x in xs], axis=1)
        return self.node("Concat", list(xs), name, value, axis=1)

    def maxpool(self, x: str, name: str, k: int, stride: int, pad: int = 0) -> str:
        return self.node(
            "MaxPool",
            [x],
            name,
            probe.maxpool(self.values[x], k, stride, pad),
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )

    def avgpool(self, x: str, name: str, k: int, stride: int) -> str:
        return self.node(
            "AveragePool",
            [x],
            name,
            probe.avgpool(self.values[x], k, stride),
            kernel_shape=[k, k],
            strides=[stride, stride],
        )

    def gap(self, x: str, name: str) -> str:
        return self.node("GlobalAveragePool", [x], name, self.values[x].mean(axis=(2, 3), keepdims=True))

    def flatten(self, x: str, name: str) -> str:
        value = self.values[x]
        return self.node("Flatten", [x], name, value.reshape(value.shape[0], -1), axis=1)

    def unsqueeze_hw(self, x: str, name: str) -> str:
        """(N, C) -> (N, C, 1, 1), so a Gemm's output can scale a feature map by broadcasting."""
        axes = self.const("const.axes_2_3", np.array([2, 3], np.int64))
        return self.node("Unsqueeze", [x, axes], name, self.values[x][:, :, None, None])

    def resize2x(self, x: str, name: str, mode: str) -> str:
        """Upsample H and W by 2 through Resize's `scales` input (mode 'nearest' or 'linear')."""
        scales = self.const("const.scales_2x", np.array([1.0, 1.0, 2.0, 2.0], np.float32))
        attrs: dict[str, object] = {"mode": mode}
        if mode == "nearest":
            attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            attrs.update(coordinate_transformation_mode="half_pixel")
        return self.node("Resize", [x, "", scales], name, probe.resize2x(self.values[x], mode), **attrs)

    # ---- output --------------------------------------------------------------------------------
    def finish(self, y: str, *, doc: str) -> onnx.ModelProto:
        """Rename the last tensor to `output`, give it its inferred type and shape, return the model."""
        producer = next(n for n in reversed(self.nodes) if y in n.output)
        producer.output[list(producer.output).index(y)] = "output"
        output = self._inferred_output()
        # every zoo model maps batch to batch; inference loses a symbolic batch through Resize's scales
        output.type.tensor_type.shape.dim[0].CopyFrom(self.inputs[0].type.tensor_type.shape.dim[0])
        graph = self.model.graph
        graph.name = self.name
        graph.node.extend(self.nodes)
        graph.input.extend(self.inputs)
        graph.output.append(output)
        self.model.doc_string = doc
        return self.model

    def _inferred_output(self) -> onnx.ValueInfoProto:
        """Shape inference on a weight-less copy: weights become typed graph inputs, which is all it needs
        (the shared constants stay, since inference reads their values)."""
        weights = [t for t in self.model.graph.initializer if t.name not in self._consts]
        consts = [t for t in self.model.graph.initializer if t.name in self._consts]
        inputs = self.inputs + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in weights]
        untyped = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
        light = helper.make_model(
            helper.make_graph(self.nodes, self.name, inputs, [untyped], initializer=consts),
            opset_imports=list(self.model.opset_import),
        )
        light.ir_version = IR_VERSION
        return onnx.shape_inference.infer_shapes(light, strict_mode=True).graph.output[0]


def _batchnorm(x: np.ndarray, params: tuple[np.ndarray, ...]) -> np.ndarray:
    gamma, beta, run_mean, run_var = params
    scale = gamma / np.sqrt(run_var + BN_EPSILON)
    return x * scale[None, :, None, None] + (beta - run_mean * scale)[None, :, None, None]
