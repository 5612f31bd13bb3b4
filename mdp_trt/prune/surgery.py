"""Pruning surgery: cut a plan's channels and blocks out of an ONNX graph.

Each tensor's kept positions come from the plan (`positions.py`); each node then slices the constants
it holds along the axes that carry those channels (weights on both axes, biases, BN statistics,
per-channel constants, Split sizes, Reshape targets). Removed blocks become `y = x`. The result is
checked with the full ONNX checker before it is returned, so a broken graph never leaves this module.
"""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.errors import MdpError
from mdp_trt.graph.analyze import prepare
from mdp_trt.graph.channels import ELEMENTWISE_OPS, split_sizes
from mdp_trt.graph.structure import Structure
from mdp_trt.graph.view import GraphView, attributes, skeleton
from mdp_trt.prune.cleanup import remove_dead_nodes, rewire_identities
from mdp_trt.prune.constants import ConstantEditor
from mdp_trt.prune.plan import Plan
from mdp_trt.prune.positions import features, kept_positions


class SurgeryError(MdpError):
    """The pruned graph failed validation: a bug in mdp-trt, reported instead of writing a bad file."""

    exit_code = 1


def prune_model(model: onnx.ModelProto, structure: Structure, plan: Plan,
                check: bool = True) -> onnx.ModelProto:
    """A new model with the plan's channels and blocks removed; the input model is not modified."""
    plan.validate(structure)
    model = prepare(model)
    bypassed = _bypass_blocks(model, structure, plan)
    remove_dead_nodes(model)
    view = GraphView(model)
    kept = kept_positions(structure, plan)
    editor = ConstantEditor(model, view)
    surgeon = _Surgeon(view, structure, kept, editor)
    for node in model.graph.node:
        surgeon.slice(node)
    editor.commit()
    rewire_identities(model, bypassed)
    remove_dead_nodes(model)
    del model.graph.value_info[:]
    if check:
        validate(model)
    return model


def validate(model: onnx.ModelProto) -> None:
    """Full ONNX check (structure, types, strict shape inference) of the graph and its weights' shapes.

    It checks the weightless skeleton (weights become typed inputs of the same shapes), so validation
    costs no copy of the weights.
    """
    try:
        onnx.checker.check_model(skeleton(model), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SurgeryError(f"internal error: the pruned graph failed ONNX validation ({first}); "
                           "please report this model") from None


def _bypass_blocks(model: onnx.ModelProto, structure: Structure, plan: Plan) -> set[str]:
    """Turn each removed block's Add into Identity(x); returns the names of those Identity nodes."""
    adds = {structure.block(bid).add: structure.block(bid) for bid in plan.remove_blocks}
    bypassed: set[str] = set()
    for node in model.graph.node:
        block = adds.get(node.name)
        if block is None:
            continue
        output = node.output[0]
        node.Clear()
        node.CopyFrom(onnx.helper.make_node("Identity", [block.input], [output], name=block.add))
        bypassed.add(node.name)
    return bypassed


class _Surgeon:
    def __init__(self, view: GraphView, structure: Structure, kept: dict[str, np.ndarray],
                 editor: ConstantEditor) -> None:
        self.view = view
        self.structure = structure
        self.kept = kept
        self.editor = editor

    def feature_keep(self, tensor: str) -> np.ndarray | None:
        """Kept feature indices along a tensor's channel axis, or None when it keeps everything."""
        positions = self.kept.get(tensor)
        if positions is None:
            return None
        return features(positions, self.structure.channels[tensor].repeat)

    def take(self, node: onnx.NodeProto, index: int, keep: np.ndarray | None, axis: int) -> None:
        if keep is None or len(node.input) <= index or not node.input[index]:
            return
        value = self.editor.get(node, index)
        if value is not None:
            self.editor.set(node, index, np.take(value, keep, axis=axis))

    def slice(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            return
        if op in ("Conv", "ConvTranspose"):
            self._conv(node)
        elif op in ("Gemm", "MatMul"):
            self._linear(node)
        elif op == "BatchNormalization":
            for index in range(1, 5):
                self.take(node, index, self.feature_keep(node.input[0]), 0)
        elif op == "InstanceNormalization":
            for index in (1, 2):
                self.take(node, index, self.feature_keep(node.input[0]), 0)
        elif op in ELEMENTWISE_OPS:
            self._elementwise(node)
        elif op == "Split":
            self._split(node)
        elif op == "Reshape":
            self._reshape(node)

    def _conv(self, node: onnx.NodeProto) -> None:
        if node.input[0] not in self.structure.channels:
            return
        keep_in, keep_out = self.feature_keep(node.input[0]), self.feature_keep(node.output[0])
        group = int(attributes(node).get("group", 1))
        if group > 1:  # depthwise: one filter per channel; frozen grouped convs never lose channels
            if keep_out is not None:
                self.take(node, 1, keep_out, 0)
                _set_int_attribute(node, "group", len(keep_out))
        elif node.op_type == "Conv":
            self.take(node, 1, keep_out, 0)
            self.take(node, 1, keep_in, 1)
        else:
            self.take(node, 1, keep_in, 0)
            self.take(node, 1, keep_out, 1)
        self.take(node, 2, keep_out, 0)

    def _linear(self, node: onnx.NodeProto) -> None:
        if node.input[0] not in self.structure.channels or node.output[0] not in self.structure.channels:
            return
        keep_in, keep_out = self.feature_keep(node.input[0]), self.feature_keep(node.output[0])
        transposed = node.op_type == "Gemm" and bool(attributes(node).get("transB", 0))
        self.take(node, 1, keep_in, 1 if transposed else 0)
        self.take(node, 1, keep_out, 0 if transposed else 1)
        if node.op_type == "Gemm" and len(node.input) > 2 and keep_out is not None:
            bias = self.editor.get(node, 2)
            if bias is not None and bias.ndim >= 1 and bias.shape[-1] > 1:
                self.take(node, 2, keep_out, bias.ndim - 1)

    def _elementwise(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        keep = self.feature_keep(out)
        if keep is None:
            return
        tc = self.structure.channels[out]
        out_rank = self.view.rank(out)
        if out_rank is None:
            return
        width = len(tc.group) * tc.repeat
        for index, name in enumerate(node.input):
            value = self.editor.get(node, index)
            if value is None:
                continue
            axis = tc.axis - (out_rank - value.ndim)
            if axis >= 0 and value.shape[axis] == width and width > 1:
                self.take(node, index, keep, axis)

    def _split(self, node: onnx.NodeProto) -> None:
        source = node.input[0]
        if source not in self.kept:
            return
        tc = self.structure.channels[source]
        rank = self.view.rank(source)
        axis = int(attributes(node).get("axis", 0)) % (rank or 1)
        if axis != tc.axis:
            return
        old = split_sizes(self.view, node, len(tc.group) * tc.repeat)
        kept = set(self.kept[source].tolist())
        sizes, offset = [], 0
        for size in old or []:
            sizes.append(sum(1 for p in range(offset, offset + size) if p in kept))
            offset += size
        for attr in list(node.attribute):
            if attr.name in ("split", "num_outputs"):
                node.attribute.remove(attr)
        if self.view.opset < 13:
            node.attribute.append(onnx.helper.make_attribute("split", sizes))
            return
        value = np.asarray(sizes, dtype=np.int64)
        if len(node.input) > 1 and node.input[1]:
            self.editor.set(node, 1, value)
        else:
            node.input.append(self.editor.add(f"{node.name}.split", value))

    def _reshape(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        positions = self.kept.get(out)
        if positions is None:
            return
        shape = self.editor.get(node, 1)
        tc = self.structure.channels[out]
        if shape is None or tc.axis >= shape.size or shape[tc.axis] <= 0:
            return
        shape = shape.copy()
        shape[tc.axis] = len(positions) * tc.repeat
        self.editor.set(node, 1, shape)


def _set_int_attribute(node: onnx.NodeProto, name: str, value: int) -> None:
    for attr in node.attribute:
        if attr.name == name:
            attr.i = value
            return
    node.attribute.append(onnx.helper.make_attribute(name, value))
