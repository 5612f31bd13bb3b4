"""Constants wherever they come from: initializers, Constant nodes, and anything computed from them alone.

Exporters rarely hand a parameter to a node directly. PyTorch's TorchScript exporter writes equal
parameters once and passes them on through `Identity` nodes (`a.bias -> Identity -> c.bias`); weights
arrive through `Cast`, shape arguments through `Reshape`/`Unsqueeze`/`Concat` of constants. Every
analysis rule and the surgeon ask this resolver, so no rule ever meets such an alias.

Two kinds of computed values:

* **constant**: computed from initializers and Constant nodes alone. Its value is the same in the
  pruned model.
* **static**: may also read the shape of a tensor whose inferred shape is fully known (`Shape`,
  `Size`). `x.chunk(2, 1)` exports its split points as `Shape(x)[1] / 2`: known for this model, but
  not a constant, since pruning `x` changes it. Rules read static values to understand the graph;
  surgery writes constants of the pruned model in their place.

Values are computed on demand, one node at a time, with onnx's reference evaluator at the model's
own opset (so `Squeeze`'s axes and the like follow the version the model was written for).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

CONSTANT, STATIC = "constant", "static"
# Ops whose output is not a function of their inputs alone, or that we never fold.
NOT_FOLDED = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
    "If", "Loop", "Scan", "SequenceConstruct", "SequenceEmpty", "Optional",
})
SHAPE_OPS = frozenset({"Shape", "Size"})


class ConstantResolver:
    """Which tensors are constant (or static), and their values."""

    def __init__(self, nodes: Sequence[onnx.NodeProto], initializers: Mapping[str, onnx.TensorProto],
                 shapes: Mapping[str, tuple], opset_imports: Sequence[onnx.OperatorSetIdProto],
                 ir_version: int) -> None:
        self._initializers = initializers
        self._shapes = shapes
        self._opset_imports = list(opset_imports)
        self._ir_version = ir_version
        self._kind: dict[str, str] = dict.fromkeys(initializers, CONSTANT)
        self._producer: dict[str, onnx.NodeProto] = {}
        self._values: dict[str, np.ndarray] = {}
        for node in nodes:
            kind = self._node_kind(node)
            if kind is None:
                continue
            for out in node.output:
                if out:
                    self._kind[out] = kind
                    self._producer[out] = node

    def _node_kind(self, node: onnx.NodeProto) -> str | None:
        if node.domain not in ("", "ai.onnx") or node.op_type in NOT_FOLDED:
            return None
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            return None
        if node.op_type == "Constant":
            return CONSTANT
        inputs = [name for name in node.input if name]
        if node.op_type in SHAPE_OPS and inputs:
            if self._kind.get(inputs[0]) == CONSTANT:
                return CONSTANT
            shape = self._shapes.get(inputs[0])
            return STATIC if shape is not None and all(isinstance(d, int) for d in shape) else None
        kinds = [self._kind.get(name) for name in inputs]
        if not inputs or any(k is None for k in kinds):
            return None
        return CONSTANT if all(k == CONSTANT for k in kinds) else STATIC

    def with_shapes(self, shapes: Mapping[str, tuple]) -> ConstantResolver:
        """The same resolver, its static values as they would be were these tensors of these shapes."""
        other = copy.copy(self)
        other._shapes = {**self._shapes, **shapes}
        other._kind = dict(self._kind)
        other._values = {k: v for k, v in self._values.items() if self._kind.get(k) == CONSTANT}
        return other

    def shape_reads(self, name: str) -> set[str]:
        """The tensors whose shapes a static value is computed from (inputs of its Shape/Size nodes)."""
        reads: set[str] = set()
        stack, seen = [name], set()
        while stack:
            current = stack.pop()
            node = self._producer.get(current)
            if current in seen or node is None:
                continue
            seen.add(current)
            if self._reads_shape_only(node):
                reads.add(node.input[0])
            else:
                stack.extend(i for i in node.input if i)
        return reads

    # --- queries ---------------------------------------------------------------------------------
    def is_constant(self, name: str) -> bool:
        return self._kind.get(name) == CONSTANT

    def is_static(self, name: str) -> bool:
        """Constant, or computed from constants and static shapes."""
        return name in self._kind

    def is_computed(self, name: str) -> bool:
        """A constant or static value produced by a node rather than stored (an alias, a fold)."""
        return name in self._producer

    def producer(self, name: str) -> onnx.NodeProto | None:
        return self._producer.get(name)

    def source(self, name: str) -> str | None:
        """The initializer that `name` is an alias of (through Identity nodes), if it is one."""
        seen = 0
        while name in self._producer and self._producer[name].op_type == "Identity" and seen < 1 << 16:
            name, seen = self._producer[name].input[0], seen + 1
        return name if name in self._initializers else None

    def value(self, name: str) -> np.ndarray | None:
        """The value of a constant, else None."""
        return self._evaluate(name) if self.is_constant(name) else None

    def static_value(self, name: str) -> np.ndarray | None:
        """The value of a constant or static tensor in this model, else None."""
        return self._evaluate(name) if self.is_static(name) else None

    def shape(self, name: str) -> tuple[int, ...] | None:
        """A constant's shape; stored tensors are not decoded for it."""
        if name in self._initializers:
            return tuple(int(d) for d in self._initializers[name].dims)
        value = self.value(name)
        return None if value is None else tuple(int(d) for d in value.shape)

    # --- evaluation ------------------------------------------------------------------------------
    def _evaluate(self, name: str) -> np.ndarray | None:
        """Evaluate `name`, walking producers iteratively (exporters chain hundreds of folds)."""
        stack = [name]
        while stack:
            current = stack[-1]
            if current in self._values:
                stack.pop()
                continue
            if current in self._initializers:
                self._values[current] = numpy_helper.to_array(self._initializers[current])
                stack.pop()
                continue
            node = self._producer.get(current)
            if node is None:
                return None
            pending = [i for i in self._needed_inputs(node) if i not in self._values]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            try:
                outputs = self._run(node)
            except Exception:  # an op the reference evaluator cannot run: not foldable after all
                for out in node.output:
                    self._kind.pop(out, None)
                return None
            for out, value in zip(node.output, outputs, strict=False):
                if out:
                    self._values[out] = np.asarray(value)
        return self._values.get(name)

    def _reads_shape_only(self, node: onnx.NodeProto) -> bool:
        """Shape/Size of a tensor that is not a constant: answered from its inferred shape."""
        return node.op_type in SHAPE_OPS and self._kind.get(node.input[0]) != CONSTANT

    def _needed_inputs(self, node: onnx.NodeProto) -> list[str]:
        return [] if self._reads_shape_only(node) else [i for i in node.input if i]

    def _run(self, node: onnx.NodeProto) -> list[np.ndarray]:
        if self._reads_shape_only(node):
            return [_shape_value(node, self._shapes[node.input[0]])]
        inputs = [self._values[i] if i else None for i in node.input]
        if node.op_type == "Identity":
            return [inputs[0]]
        feeds = {f"in{i}": value for i, value in enumerate(inputs) if value is not None}
        renamed = onnx.NodeProto()
        renamed.CopyFrom(node)
        renamed.ClearField("input")
        renamed.input.extend(f"in{i}" if value is not None else "" for i, value in enumerate(inputs))
        renamed.ClearField("output")
        renamed.output.extend(f"out{i}" for i in range(len(node.output)))
        graph = onnx.helper.make_graph(
            [renamed], "fold",
            [onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), None)
             for k, v in feeds.items()],
            [onnx.helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.UNDEFINED, None)
             for i in range(len(node.output))],
        )
        model = onnx.helper.make_model(graph, opset_imports=self._opset_imports)
        model.ir_version = self._ir_version
        return list(ReferenceEvaluator(model).run(None, feeds))


def _shape_value(node: onnx.NodeProto, shape: tuple) -> np.ndarray:
    dims = np.asarray(shape, dtype=np.int64)
    if node.op_type == "Size":
        return np.asarray(int(np.prod(dims)), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    return dims[start:end]
