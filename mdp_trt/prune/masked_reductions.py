"""Reductions and normalisations over channels, rewritten to see only the kept channels (masked model).

The pruned model computes a LayerNorm over C, a mean over channels or a GroupNorm over the channels it
keeps. The masked model keeps every channel, so each such node (`Structure.reductions`) is rewritten
with a 0/1 mask `m` of the kept channels, broadcast over the tensor:

* a mean becomes `sum(x * m) / sum(m)` over the same axes: the sum over kept elements over their
  number, in sums so that one kept channel gives back exactly its value (a ratio of two means rounds,
  and a LayerNorm's 1/sqrt(eps) then amplifies the rounding);
* sums and norms (`ReduceSum`, `ReduceL1`, `ReduceL2`, `ReduceSumSquare`, `ReduceLogSum`), and products
  that contract channels (`MatMul`, attention's `q @ k^T`), read `x * m`;
  maxima and log-sum-exp read `x` pushed to -inf where dropped, minima to +inf, products `x * m + 1 - m`;
* LayerNorm, InstanceNorm and GroupNorm become masked mean and variance arithmetic with their own
  epsilon, scale and bias.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from mdp_trt.graph.structure import Reduction, Structure, TensorChannels
from mdp_trt.graph.view import GraphView, attributes
from mdp_trt.prune.constants import ConstantEditor
from mdp_trt.prune.positions import features

# A product of two activations that contracts channels (attention's q @ k^T) sums over them like these.
SUM_LIKE = frozenset({"ReduceSum", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "MatMul"})


def mask_reductions(model: onnx.ModelProto, structure: Structure, kept: dict[str, np.ndarray], view: GraphView,
                    editor: ConstantEditor) -> None:
    for reduction in structure.reductions:
        if reduction.input not in kept:
            continue
        node = view.node_by_name[reduction.node]
        rank = view.rank(reduction.input)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(view.dtypes.get(reduction.input, onnx.TensorProto.FLOAT))
        mask = channel_mask(structure.channels[reduction.input], kept[reduction.input], rank).astype(dtype)
        builder = _Builder(model, node, editor, view.opset, dtype, reduction)
        builder.rewrite(mask, rank)


def channel_mask(tc: TensorChannels, positions: np.ndarray, rank: int) -> np.ndarray:
    """1 where a kept channel's features are, 0 elsewhere; extent 1 on non-channel axes."""
    shape = [1] * rank
    if tc.single:
        keep = np.zeros(len(tc.group) * tc.repeat)
        keep[features(positions, tc.repeat)] = 1
        shape[tc.axis] = keep.size
        return keep.reshape(shape)
    grid = np.zeros(int(np.prod(tc.shape)))
    grid[positions] = 1
    grid = grid.reshape(tc.shape)
    for j, repeat in enumerate(tc.repeats):
        grid = np.repeat(grid, repeat, axis=j)
    for j, axis in enumerate(tc.axes):
        shape[axis] = grid.shape[j]
    return grid.reshape(shape)


class _Builder:
    """Emits the replacement nodes of one reduction, in place of the original node."""

    def __init__(self, model: onnx.ModelProto, node: onnx.NodeProto, editor: ConstantEditor, opset: int,
                 dtype: np.dtype, reduction: Reduction) -> None:
        self.model, self.node, self.editor, self.opset, self.dtype = model, node, editor, opset, dtype
        self.x = reduction.input
        self.nodes: list[onnx.NodeProto] = []
        self.count = 0

    def const(self, value, dtype=None) -> str:
        return self.editor.add(f"{self.node.name}.masked_const", np.asarray(value, dtype=dtype or self.dtype))

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        self.count += 1
        output = output or f"{self.node.name}.masked_{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=f"{self.node.name}.masked_{self.count}",
                                           **attrs))
        return output

    def sum(self, x: str, axes: list[int] | None, keepdims: int = 1, output: str | None = None) -> str:
        """ReduceSum over `axes` (None: all), in the form the model's opset takes."""
        if axes is None:
            return self.op("ReduceSum", [x], output, keepdims=keepdims)
        if self.opset >= 13:
            return self.op("ReduceSum", [x, self.const(axes, np.int64)], output, keepdims=keepdims)
        return self.op("ReduceSum", [x], output, axes=axes, keepdims=keepdims)

    def masked_mean(self, x: str, full: str, axes: list[int] | None, keepdims: int = 1,
                    output: str | None = None) -> str:
        return self.op("Div", [self.sum(self.op("Mul", [x, full]), axes, keepdims),
                               self.sum(full, axes, keepdims)], output)

    def rewrite(self, mask: np.ndarray, rank: int) -> None:
        op = self.node.op_type
        out = self.node.output[0]
        m = self.const(mask)
        if op == "ReduceMean":
            full = self.op("Expand", [m, self.op("Shape", [self.x])])
            attrs = attributes(self.node)
            axes = self.editor.view.static_value(self.node.input[1]) if len(self.node.input) > 1 and \
                self.node.input[1] else attrs.get("axes")
            axes = None if axes is None else [int(a) % rank for a in np.asarray(axes).reshape(-1)]
            self.masked_mean(self.x, full, axes or None, int(attrs.get("keepdims", 1)), out)
        elif op in SUM_LIKE or op in ("ReduceMax", "ReduceMin", "ReduceLogSumExp", "ReduceProd"):
            self.nodes.append(_clone_with_input(self.node, self._masked_input(op, mask, m), out))
        else:
            self._normalise(op, m, rank)
        position = list(self.model.graph.node).index(self.node)
        self.model.graph.node.remove(self.node)
        for offset, new in enumerate(self.nodes):
            self.model.graph.node.insert(position + offset, new)

    def _masked_input(self, op: str, mask: np.ndarray, m: str) -> str:
        if op in SUM_LIKE:
            return self.op("Mul", [self.x, m])
        if op == "ReduceProd":
            return self.op("Add", [self.op("Mul", [self.x, m]), self.const(1 - mask)])
        bound = np.inf if op == "ReduceMin" else -np.inf
        return self.op("Add", [self.x, self.const(np.where(mask > 0, 0, bound))])

    def _normalise(self, op: str, m: str, rank: int) -> None:
        attrs = attributes(self.node)
        eps = self.const(float(attrs.get("epsilon", 1e-5)))
        x, full = self.x, self.op("Expand", [m, self.op("Shape", [self.x])])
        scale = self.node.input[1] if len(self.node.input) > 1 and self.node.input[1] else None
        bias = self.node.input[2] if len(self.node.input) > 2 and self.node.input[2] else None
        if op == "LayerNormalization":
            axes = list(range(int(attrs.get("axis", -1)) % rank, rank))
        elif op == "InstanceNormalization":
            axes = list(range(2, rank))
            scale, bias = (self._per_channel(name, rank) for name in (scale, bias))
        else:  # GroupNormalization: statistics per group of the (N, G, C/G * spatial) view
            groups = int(attrs["num_groups"])
            grouped = self.const([0, groups, -1], np.int64)
            x, full = self.op("Reshape", [x, grouped]), self.op("Reshape", [full, grouped])
            axes = [2]
        centred = self.op("Sub", [x, self.masked_mean(x, full, axes)])
        var = self.masked_mean(self.op("Mul", [centred, centred]), full, axes)
        y = self.op("Div", [centred, self.op("Sqrt", [self.op("Add", [var, eps])])])
        if op == "GroupNormalization":
            y = self.op("Reshape", [y, self.op("Shape", [self.x])])
            scale, bias = (self._group_parameter(name, groups, rank) for name in (scale, bias))
        out = self.node.output[0]
        if scale is not None:
            y = self.op("Mul", [y, scale], None if bias is not None else out)
        if bias is not None:
            y = self.op("Add", [y, bias], out)
        if y != out:
            self.op("Identity", [y], out)

    def _per_channel(self, name: str | None, rank: int) -> str | None:
        """An (C,) parameter as (C, 1, ..., 1), to broadcast along axis 1."""
        value = None if name is None else self.editor.value(name)
        return None if value is None else self.const(value.reshape(-1, *([1] * (rank - 2))))

    def _group_parameter(self, name: str | None, groups: int, rank: int) -> str | None:
        value = None if name is None else self.editor.value(name)
        if value is None:
            return None
        channels = self.editor.view.shape(self.x)[1]
        if value.size == groups and channels != groups:  # opset 18: one value per group
            value = np.repeat(value, channels // groups)
        return self.const(value.reshape(-1, *([1] * (rank - 2))))


def _clone_with_input(node: onnx.NodeProto, data: str, output: str) -> onnx.NodeProto:
    clone = onnx.NodeProto()
    clone.CopyFrom(node)
    clone.input[0] = data
    clone.output[0] = output
    clone.name = f"{node.name}.{output.rsplit('.', 1)[-1]}"
    return clone
