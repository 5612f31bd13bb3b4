"""Per-run kernel time from ONNX Runtime's profiler, without the layout reorders at a probe's edges.

On x86 CPUs ONNX Runtime runs convolutions in a blocked layout (NCHWc). Inside a whole model,
consecutive layers hand blocked tensors to each other; a probe holding one layer alone pays a
`ReorderInput` before it and a `ReorderOutput` after it. For a small or depthwise layer at a large
spatial size those two copies cost more than the layer itself (measured: a probe's wall time was up
to 2.6x what the same layer took inside MobileNetV2), and no whole-model calibration can undo an
error that differs per layer. The profiler reports every node's kernel time per run, so a probe's
sample is the sum over the nodes that are the layer (and its epilogue), not the reorders.

A probe's last op is also not left as the graph's output. Inside a model a layer's output is read by the
next layer, and ONNX Runtime fuses an activation into the convolution before it only then: a hard swish
that ends a probe ran as a separate HardSigmoid and Mul, and MobileNetV3's hard-swish layers were timed
1.2-2x what they cost in the model (measured at batch 8, 1 thread; 2x on the stem and on the last 1x1
conv). `with_sink` gives each output a reader, a Flatten (`SINK`), timed like the reorders: not at all.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

# Ops ONNX Runtime inserts only because a probe is cut out of its model.
ISOLATION_OPS = frozenset({"ReorderInput", "ReorderOutput"})
SINK = "mdp_probe_sink"  # name prefix of the nodes `with_sink` adds


def with_sink(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every graph output computed as a Flatten (`SINK`) of what the model wrote there, so that
    the op which wrote it is optimised as a layer is inside a model, with a reader after it."""
    sunk = onnx.ModelProto.FromString(model.SerializeToString())
    graph = sunk.graph
    outputs = list(graph.output)
    renamed = {out.name: f"{out.name}_{SINK}" for out in outputs}
    for node in graph.node:
        node.output[:] = [renamed.get(name, name) for name in node.output]
    del graph.output[:]
    for index, out in enumerate(outputs):
        dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
        graph.node.append(helper.make_node("Flatten", [renamed[out.name]], [out.name], name=f"{SINK}_{index}", axis=1))
        graph.output.append(helper.make_tensor_value_info(
            out.name, out.type.tensor_type.elem_type, [dims[0], int(np.prod(dims[1:]))]))
    return sunk


def kernel_times_ms(events: list[dict[str, Any]]) -> list[float]:
    """For each `model_run` in a profile (in run order): the summed kernel time (ms) of its nodes,
    ISOLATION_OPS and the sink excluded. A node belongs to the run whose time span holds its start."""
    runs = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    totals = [0.0] * len(runs)
    starts = [start for start, _ in runs]
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if event.get("args", {}).get("op_name") in ISOLATION_OPS or str(event["name"]).startswith(SINK):
            continue
        ts = int(event["ts"])
        index = bisect.bisect_right(starts, ts) - 1  # the last run that started at or before ts
        if index >= 0 and ts <= runs[index][1]:
            totals[index] += int(event["dur"]) / 1e3
    return totals


def read_profile(path: str | Path) -> list[dict[str, Any]]:
    """The events of a profile file ONNX Runtime wrote (a JSON array of trace events)."""
    with open(path, encoding="utf-8") as handle:
        events = json.load(handle)
    if not isinstance(events, list):
        raise ValueError(f"{path}: not an ONNX Runtime profile (expected a JSON array of events)")
    return events

