"""Rewrite the constant inputs of nodes, sharing storage where readers agree.

Surgery decides, node by node, what each node should see at a constant input (a weight sliced on both
axes, a bias, a Split's sizes). A constant often has several readers: tied weights, and equal
parameters that the exporter stored once and handed out through `Identity` aliases. Edits are
therefore collected first and laid out in `commit`:

* every reader of a tensor wants the same new value: the tensor is rewritten in place and keeps its
  name (an initializer is overwritten; an alias such as `c.bias = Identity(a.bias)` becomes an
  initializer of that name), so weights stay mappable to the framework's parameter names;
* readers want different values: each distinct value is stored once, under a name derived from the
  tensor's, and shared by the readers that want it; readers with no edit keep the original.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from mdp_trt.graph.view import GraphView

Slot = tuple[str, int]  # (node name, input index)


class ConstantEditor:
    """Collects per-reader edits of constant inputs; `commit` writes them into the model."""

    def __init__(self, model: onnx.ModelProto, view: GraphView) -> None:
        self.model = model
        self.view = view
        self.nodes = {n.name: n for n in model.graph.node}
        self._edits: dict[Slot, np.ndarray] = {}
        self._added: set[str] = set()
        self._names = {t.name for t in model.graph.initializer} | {o for n in model.graph.node for o in n.output}
        self._names |= {i.name for i in model.graph.input}

    # --- reading ---------------------------------------------------------------------------------
    def value(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor as the original model has it."""
        return self.view.constant(name) if name else None

    def get(self, node: onnx.NodeProto, index: int) -> np.ndarray | None:
        """What `node` sees at input `index`: its pending edit, or the constant's value."""
        if len(node.input) <= index or not node.input[index]:
            return None
        edit = self._edits.get((node.name, index))
        return edit if edit is not None else self.value(node.input[index])

    # --- writing ---------------------------------------------------------------------------------
    def set(self, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
        """Let `node` see `value` at input `index` (same dtype as the original constant)."""
        original = self.value(node.input[index])
        dtype = original.dtype if original is not None else value.dtype
        self._edits[(node.name, index)] = np.ascontiguousarray(value, dtype=dtype)

    def add(self, base: str, value: np.ndarray) -> str:
        """A new initializer under a fresh name derived from `base`; returns the name."""
        name = self._unique(base)
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self._added.add(name)
        return name

    def commit(self) -> None:
        """Write every collected edit into the model (call once, after the last `set`)."""
        by_tensor: dict[str, list[Slot]] = defaultdict(list)
        for slot in self._edits:
            by_tensor[self.nodes[slot[0]].input[slot[1]]].append(slot)
        initializers = {t.name: t for t in self.model.graph.initializer}
        readers = self._reader_counts()
        for tensor, slots in by_tensor.items():
            values = [self._edits[s] for s in slots]
            everyone = len(slots) == readers[tensor] and all(_same(values[0], v) for v in values[1:])
            if everyone and tensor not in self.view.graph_outputs and self._rewrite_in_place(tensor, values[0],
                                                                                               initializers):
                continue
            stored: list[tuple[np.ndarray, str]] = []
            for slot, value in zip(slots, values, strict=True):
                name = next((n for v, n in stored if _same(v, value)), None)
                if name is None:
                    name = self.add(f"{tensor}__{slot[0]}", value)
                    stored.append((value, name))
                self.nodes[slot[0]].input[slot[1]] = name
        self._edits.clear()

    # --- helpers ---------------------------------------------------------------------------------
    def _reader_counts(self) -> dict[str, int]:
        """How many (node, input) slots read each tensor; a subgraph's reference counts once per node."""
        counts: dict[str, int] = defaultdict(int)
        for node in self.model.graph.node:
            for name in node.input:
                counts[name] += 1
            for name in dict.fromkeys(self.view.subgraph_references(node)):
                counts[name] += 1
        return counts

    def _rewrite_in_place(self, tensor: str, value: np.ndarray, initializers: dict[str, onnx.TensorProto]) -> bool:
        if tensor in initializers:
            initializers[tensor].CopyFrom(numpy_helper.from_array(value, tensor))
            return True
        producer = self.view.constants.producer(tensor)
        if producer is None or [o for o in producer.output if o] != [tensor] or producer.name not in self.nodes:
            return False
        self.model.graph.node.remove(self.nodes.pop(producer.name))
        self.model.graph.initializer.append(numpy_helper.from_array(value, tensor))
        return True

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
