"""Weighted ops: Conv, ConvTranspose, Gemm and MatMul with a constant weight create channels.

Patterns covered:
* `Conv`/`ConvTranspose` with `group` 1: fresh output channels (the layer's own filters).
* depthwise (`group` = input channels, as MobileNet, EfficientNet, ConvNeXt and GhostNet's cheap
  operation write it): output channel o is computed from input channel o // m, so output channels are
  the input's (repeated m times for a channel multiplier m) and both sides form one group.
* grouped (1 < `group` < input channels: ResNeXt, RegNet, ShuffleNet v1): the pruned layer keeps
  `group`, so it keeps the same number of input channels in each of its groups and the same number of
  output channels in each (`keep_parts_equal` on both sides).
* `Gemm` (2-D, `transB` either way) and `MatMul` by a constant 2-D weight over the last axis: a
  Linear layer, channels-first after a Flatten or channels-last after a Transpose to NHWC; a `MatMul`
  of two activations is attention's (`rules/products.py`).
"""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.channels import Walker, WeightedUse
from mdp_trt.graph.rules.products import product
from mdp_trt.graph.view import attributes


def conv(w: Walker, node: onnx.NodeProto) -> None:
    weight = w.view.constant_shape(node.input[1]) if len(node.input) > 1 else None
    if weight is None or len(weight) < 3:
        w.unsupported(node, "weights are not a constant")
        return
    group = int(attributes(node).get("group", 1))
    if node.op_type == "Conv":
        c_in, c_out = weight[1] * group, weight[0]
    else:
        c_in, c_out = weight[0], weight[1] * group
    x = w.map(node.input[0], 1)
    out = node.output[0]
    if x is None or not x.single or x.axis != 1 or x.repeat != 1 or len(x.flat) != c_in:
        reason = f"{node.op_type} '{node.name}': input channels could not be traced"
        w.freeze(x, reason)
        w.set(out, ChannelMap.on(w.fresh(c_out, frozen=reason), 1))
        return
    depthwise = group > 1 and group == c_in and c_out % c_in == 0
    if group == 1:
        ids = w.fresh(c_out, origin=node.name)
    elif depthwise:
        ids = np.repeat(x.flat, c_out // c_in)
    elif c_in % group == 0 and c_out % group == 0:
        w.keep_parts_equal(x.flat.reshape(group, -1), node)
        ids = w.fresh(c_out, origin=node.name)
        w.keep_parts_equal(ids.reshape(group, -1), node)
    else:
        w.unsupported(node, f"group={group} does not divide its channels")
        return
    w.set(out, ChannelMap.on(ids, 1))
    w.weighted.append(WeightedUse(node, node.input[0], out, depthwise))


def gemm(w: Walker, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    weight = w.view.constant_shape(node.input[1])
    if weight is None or len(weight) != 2 or attrs.get("transA", 0) or w.view.is_constant(node.input[0]):
        w.unsupported(node, "only Gemm with a constant B and untransposed A is pruned")
        return
    k, n = weight[::-1] if attrs.get("transB", 0) else weight
    _linear(w, node, 1, int(k), int(n))


def matmul(w: Walker, node: onnx.NodeProto) -> None:
    if not w.view.is_constant(node.input[0]) and not w.view.is_constant(node.input[1]):
        product(w, node)
        return
    weight = w.view.constant_shape(node.input[1])
    rank = w.rank(node.input[0])
    if weight is None or len(weight) != 2 or not rank or rank < 2 or w.view.is_constant(node.input[0]):
        w.unsupported(node, "only MatMul of a tensor by a constant 2-D weight is pruned")
        return
    _linear(w, node, rank - 1, weight[0], weight[1])


def _linear(w: Walker, node: onnx.NodeProto, axis: int, k: int, n: int) -> None:
    x = w.map(node.input[0], axis)
    out = node.output[0]
    if x is None or not x.single or x.axis != axis or len(x.flat) * x.repeat != k:
        reason = f"{node.op_type} '{node.name}': input features could not be traced to channels"
        w.freeze(x, reason)
        w.set(out, ChannelMap.on(w.fresh(n, frozen=reason), axis))
        return
    w.set(out, ChannelMap.on(w.fresh(n, origin=node.name), axis))
    w.weighted.append(WeightedUse(node, node.input[0], out, False))


RULES = {"Conv": conv, "ConvTranspose": conv, "Gemm": gemm, "MatMul": matmul}
