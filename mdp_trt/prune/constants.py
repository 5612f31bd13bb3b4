"""Read and rewrite constant inputs of nodes without disturbing other readers of the same constant."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from mdp_trt.graph.view import GraphView


class ConstantEditor:
    """Replaces a node's constant input; a constant that other nodes also read is copied first.

    Initializers keep their names when only one node reads them (so weights stay mappable to the
    framework's parameter names); Constant-node values are moved to a new initializer.
    """

    def __init__(self, model: onnx.ModelProto, view: GraphView) -> None:
        self.model = model
        self.view = view
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.readers: Counter[str] = Counter()
        for node in model.graph.node:
            for name in dict.fromkeys(node.input):
                self.readers[name] += 1
            for name in view.subgraph_references(node):
                self.readers[name] += 1
        self._names = set(self.initializers) | {o for n in model.graph.node for o in n.output}

    def get(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        return self.view.constant(name)

    def set(self, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
        name = node.input[index]
        original = self.get(name)
        dtype = original.dtype if original is not None else value.dtype
        value = np.ascontiguousarray(value, dtype=dtype)
        shared = self.readers[name] > 1 or name in self.view.graph_outputs
        if name in self.initializers and not shared:
            self.initializers[name].CopyFrom(numpy_helper.from_array(value, name))
            return
        new_name = self.add(f"{name}__{node.name}", value)
        self.readers[name] -= 1
        self.readers[new_name] += 1
        node.input[index] = new_name

    def add(self, base: str, value: np.ndarray) -> str:
        """Add a new initializer under a fresh name derived from `base`; returns the name."""
        name = self._unique(base)
        self.model.graph.initializer.append(numpy_helper.from_array(value, name))
        self.initializers[name] = self.model.graph.initializer[-1]
        return name

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name
