"""Fix a symbolic batch dimension to a number, for profiling and compilation at one batch size."""

from __future__ import annotations

import copy

import onnx


def with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy whose graph inputs have `batch` as their first dimension where it is symbolic or unknown.

    Inputs with a fixed first dimension keep it (a model exported at batch 1 stays at batch 1).
    """
    fixed = copy.deepcopy(model)
    initializers = {t.name for t in fixed.graph.initializer}
    for value in fixed.graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = batch
    del fixed.graph.value_info[:]
    return fixed


def model_batch(model: onnx.ModelProto) -> int | None:
    """The fixed batch of the first graph input, or None when it is symbolic."""
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None
    return None
