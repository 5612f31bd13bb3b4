"""A read-only index over an ONNX graph: producers, consumers, constants and inferred shapes.

Analysis and surgery both ask the same questions ("who reads this tensor?", "is this input a
constant, and what is it?", "what is its shape?"); this answers them once, in one place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from mdp_trt.graph.constants import ConstantResolver
from mdp_trt.graph.load import default_opset

Dim = int | str | None  # a known size, a symbolic name, or unknown
Shape = tuple[Dim, ...]


def ensure_node_names(model: onnx.ModelProto) -> None:
    """Give every unnamed or duplicate-named node a deterministic unique name, in place.

    Plans and reports refer to nodes by name, so names must be unique and stable for one model file.
    """
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            base = node.name or f"{node.op_type}_{index}"
            name, suffix = base, 1
            while name in seen:
                name, suffix = f"{base}_{suffix}", suffix + 1
            node.name = name
        seen.add(node.name)


class GraphView:
    """Lookups over `model.graph`; build a new view after changing the graph.

    `representative_sizes`: infer shapes with every symbolic input size set to a representative value
    (the batch axis to `representative_batch`, 1 unless asked, the others, such as a dynamic H and W, to
    `REPRESENTATIVE_SIZE`). Which channels couple and which branches are residual depends on neither,
    but deciding it needs shapes that ONNX's inference leaves unknown after a convolution of a symbolic
    size, and static values (`chunk`'s split points are computed from `Shape(x)`, which a symbolic batch
    makes unknown). Channel extents never depend on them, so what is read from such a view about
    channels holds at every size.
    """

    def __init__(self, model: onnx.ModelProto, infer_shapes: bool = True, representative_sizes: bool = False,
                 representative_batch: int = 1) -> None:
        self.model = model
        self.graph = model.graph
        self.opset = default_opset(model) or 0
        self.nodes: list[onnx.NodeProto] = list(self.graph.node)
        self.node_by_name = {n.name: n for n in self.nodes}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in dict.fromkeys(node.input):
                if inp:
                    self.consumers[inp].append(node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.graph_inputs = [i.name for i in self.graph.input if i.name not in self.initializers]
        self.graph_outputs = [o.name for o in self.graph.output]
        self.shapes: dict[str, Shape] = {}
        self.dtypes: dict[str, int] = {}
        self.representative_sizes = representative_sizes
        self.representative_batch = representative_batch
        self._collect_shapes(self._inferred(self._skeleton()) if infer_shapes else model)
        self.constants = self._resolver()
        if infer_shapes:
            self._infer_through_static_values()

    # --- constants -------------------------------------------------------------------------------
    def is_constant(self, name: str) -> bool:
        """An initializer, a Constant node, or computed from them alone (Identity, Cast, Reshape...)."""
        return self.constants.is_constant(name)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a constant (see `is_constant`), else None."""
        return self.constants.value(name)

    def static_value(self, name: str) -> np.ndarray | None:
        """A constant's value, or a value computed from constants and static shapes (see constants.py)."""
        return self.constants.static_value(name)

    def constant_shape(self, name: str) -> tuple[int, ...] | None:
        """A constant's shape without decoding stored data (weights can be large)."""
        return self.constants.shape(name)

    def ints(self, node: onnx.NodeProto, attribute: str, index: int) -> list[int] | None:
        """An int-list argument given as an attribute (older opsets) or as a static input (`axes`, `split`)."""
        for attr in node.attribute:
            if attr.name == attribute:
                value = onnx.helper.get_attribute_value(attr)
                return [int(v) for v in value] if isinstance(value, list) else [int(value)]
        if len(node.input) > index and node.input[index]:
            value = self.static_value(node.input[index])
            return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]
        return None

    # --- shapes ----------------------------------------------------------------------------------
    def shape(self, name: str) -> Shape | None:
        if name in self.shapes:
            return self.shapes[name]
        return self.constant_shape(name)

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return len(shape) if shape is not None else None

    def _resolver(self) -> ConstantResolver:
        return ConstantResolver(self.nodes, self.initializers, self.shapes, self.model.opset_import,
                                self.model.ir_version)

    def _skeleton(self) -> onnx.ModelProto:
        model = skeleton(self.model)
        if self.representative_sizes:
            for value in model.graph.input:
                if value.name in self.initializers:
                    continue
                for axis, dim in enumerate(value.type.tensor_type.shape.dim):
                    if not dim.HasField("dim_value"):
                        dim.Clear()
                        dim.dim_value = self.representative_batch if axis == 0 else REPRESENTATIVE_SIZE
            del model.graph.value_info[:]  # declared shapes would still say symbolic
        return model

    def _inferred(self, model: onnx.ModelProto) -> onnx.ModelProto:
        try:
            return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
        except Exception:  # shape inference fails on custom ops: use the declared shapes
            return self.model

    def _infer_through_static_values(self, rounds: int = 8) -> None:
        """Infer shapes again where ONNX's inference stopped, until nothing new is learnt.

        Its data propagation stops at arithmetic such as `Shape(x)[1] / 2` (TorchScript's `chunk`),
        leaving every shape after it unknown; those values are static here, so they are fed to shape
        inference as constants. And it gives no shape for a few ops that keep their input's shape
        (`GroupNormalization`, whose inference is a function body): their input's shape is given to it.
        """
        fed: dict[str, np.ndarray] = {}
        kept: dict[str, Shape] = {}
        for _ in range(rounds):
            frontier = {
                name: value for node in self.nodes if not all(self.constants.is_static(o) for o in node.output if o)
                for name in node.input
                if name and name not in fed and not self.constants.is_constant(name) and self.constants.is_static(name)
                and (value := self.constants.static_value(name)) is not None
            }
            same = {node.output[0]: self.shapes[node.input[0]] for node in self.nodes
                    if node.op_type in SHAPE_KEEPING and node.output and node.output[0] not in kept
                    and node.input and node.input[0] in self.shapes and self.shapes.get(node.output[0]) is None}
            if not frontier and not same:
                return
            fed.update(frontier)
            kept.update(same)
            self._collect_shapes(self._inferred(_with_shapes(_with_values(self._skeleton(), fed), kept,
                                                             self.dtypes)))
            self.constants = self._resolver()

    def _collect_shapes(self, model: onnx.ModelProto) -> None:
        for value_info in (*model.graph.input, *model.graph.value_info, *model.graph.output):
            tensor_type = value_info.type.tensor_type
            if not value_info.type.HasField("tensor_type"):
                continue
            if tensor_type.elem_type:
                self.dtypes[value_info.name] = tensor_type.elem_type
            if tensor_type.HasField("shape"):
                self.shapes[value_info.name] = tuple(_dim(d) for d in tensor_type.shape.dim)
        for name, tensor in self.initializers.items():
            self.dtypes.setdefault(name, tensor.data_type)

    # --- traversal -------------------------------------------------------------------------------
    def subgraph_references(self, node: onnx.NodeProto) -> Iterator[str]:
        """Outer-scope tensors read by a node's subgraphs (If/Loop/Scan bodies)."""
        for attr in node.attribute:
            graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in graphs:
                yield from _outer_references(sub)


SMALL_CONSTANT_BYTES = 4096
REPRESENTATIVE_SIZE = 224  # divisible by every stride product of common backbones (32) and by 7, 14, 16


def has_symbolic_sizes(model: onnx.ModelProto) -> bool:
    """Whether a graph input has a symbolic or unknown size (a dynamic batch included)."""
    initializers = {t.name for t in model.graph.initializer}
    return any(not d.HasField("dim_value") for v in model.graph.input if v.name not in initializers
               for d in v.type.tensor_type.shape.dim)


# Ops whose output has their first input's shape, where ONNX's inference may give none.
SHAPE_KEEPING = frozenset({"GroupNormalization", "LayerNormalization", "InstanceNormalization",
                           "MeanVarianceNormalization", "LpNormalization"})


def _with_shapes(model: onnx.ModelProto, shapes: dict[str, Shape], dtypes: dict[str, int]) -> onnx.ModelProto:
    """The model with `shapes` declared for those tensors (value_info), for inference to go on from."""
    for name, shape in shapes.items():
        dims = [d if isinstance(d, (int, str)) else None for d in shape]
        model.graph.value_info.append(
            onnx.helper.make_tensor_value_info(name, dtypes.get(name, onnx.TensorProto.FLOAT), dims))
    return model


def _with_values(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The model with its readers of `values` reading constants of those values instead."""
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in values:
                node.input[i] = f"{name}__static"
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), f"{k}__static") for k, v in values.items())
    return model


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its large weights: they become typed graph inputs.

    Shape inference serialises the model it is given; weights only matter to it by shape, so this
    keeps its memory use independent of the model's size. Small constants (shapes, axes) stay, since
    data propagation reads them.
    """
    graph = model.graph
    small = [t for t in graph.initializer if _byte_size(t) <= SMALL_CONSTANT_BYTES]
    large = [
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in graph.initializer
        if _byte_size(t) > SMALL_CONSTANT_BYTES
    ]
    declared = {i.name for i in graph.input}
    skeleton = onnx.helper.make_graph(
        list(graph.node), graph.name,
        [*graph.input, *(v for v in large if v.name not in declared)],
        list(graph.output), small, value_info=list(graph.value_info),
    )
    result = onnx.ModelProto()
    result.ir_version = model.ir_version
    result.opset_import.extend(model.opset_import)
    result.functions.extend(model.functions)
    result.graph.CopyFrom(skeleton)
    return result


def _byte_size(tensor: onnx.TensorProto) -> int:
    count = 1
    for d in tensor.dims:
        count *= d
    return count * 4


def _outer_references(graph: onnx.GraphProto) -> Iterator[str]:
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        for inp in node.input:
            if inp and inp not in local:
                yield inp
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                yield from (r for r in _outer_references(sub) if r not in local)
        local.update(node.output)


def _dim(dim: onnx.TensorShapeProto.Dimension) -> Dim:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    if dim.HasField("dim_param"):
        return dim.dim_param
    return None


def attributes(node: onnx.NodeProto) -> dict[str, object]:
    """Plain-Python attribute values (ints, floats, strings and their lists); tensors and graphs skipped."""
    result: dict[str, object] = {}
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
                         onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS):
            continue
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        result[attr.name] = value
    return result
