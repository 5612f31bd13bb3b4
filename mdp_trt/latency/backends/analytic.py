"""Analytic (roofline) backend: an estimate from FLOPs and bytes moved, for fast tests and dry runs.

Nothing runs, so every fingerprint and result carries `estimate: True`. Per node the time is
max(FLOPs / peak FLOP/s, bytes / peak bandwidth) plus a fixed per-node overhead (kernel launch or
dispatch), the classic roofline bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import shape_inference

from mdp_trt.latency.backends.base import check_precision, input_shapes
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.protocol import MeasureProtocol

_ZERO_COST = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant"}


@dataclass(frozen=True)
class NodeCost:
    flops: float
    bytes: float


def _shapes(model: onnx.ModelProto, batch: int) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor, with the batch axis fixed to `batch`."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    feed_shapes = input_shapes(model, batch)
    for vi in fixed.graph.input:
        if vi.name in feed_shapes:
            dims = vi.type.tensor_type.shape.dim
            for dim, size in zip(dims, feed_shapes[vi.name], strict=True):
                dim.Clear()
                dim.dim_value = size
    inferred = shape_inference.infer_shapes(fixed)
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def node_cost(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]], itemsize: int) -> NodeCost:
    """FLOPs (multiply-add = 2) and bytes read + written by one node; unknown shapes count as 0."""
    if node.op_type in _ZERO_COST:
        return NodeCost(0.0, 0.0)
    ins = [shapes.get(name, ()) for name in node.input if name]
    outs = [shapes.get(name, ()) for name in node.output if name]
    moved = itemsize * (sum(math.prod(s) for s in ins if s) + sum(math.prod(s) for s in outs if s))
    out = outs[0] if outs else ()
    flops = float(math.prod(out)) if out else 0.0
    if node.op_type in ("Conv", "ConvTranspose") and len(ins) >= 2 and ins[1] and ins[0]:
        weight = ins[1]  # its second axis is already per group (C_in/group, or C_out/group)
        if node.op_type == "Conv":  # each output element reads C_in/group * kernel inputs
            flops = 2.0 * math.prod(out) * weight[1] * math.prod(weight[2:])
        else:  # each input element scatters into C_out/group * kernel outputs
            flops = 2.0 * math.prod(ins[0]) * weight[1] * math.prod(weight[2:])
    elif node.op_type in ("Gemm", "MatMul") and ins and ins[0] and out:
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        k = ins[0][-2] if trans_a else ins[0][-1]
        flops = 2.0 * math.prod(out) * k
    return NodeCost(flops, float(moved))


class AnalyticBackend:
    """Roofline estimate with configurable peaks; defaults are a modest CPU core pair."""

    name = "analytic"

    def __init__(self, peak_gflops: float = 100.0, peak_gbps: float = 20.0, overhead_us: float = 5.0) -> None:
        self.peak_gflops = peak_gflops
        self.peak_gbps = peak_gbps
        self.overhead_us = overhead_us

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]:
        check_precision(precision)
        return {
            "backend": "analytic",
            "peak_gflops": self.peak_gflops,
            "peak_gbps": self.peak_gbps,
            "overhead_us": self.overhead_us,
            "precision": precision,
            "threads": 0,
            "batch": batch,
            "estimate": True,
        }

    def estimate_ms(self, model: onnx.ModelProto, batch: int = 1, precision: str = "fp32") -> float:
        itemsize = 2 if precision == "fp16" else 4
        shapes = _shapes(model, batch)
        total_s = 0.0
        for node in model.graph.node:
            cost = node_cost(node, shapes, itemsize)
            if cost.flops == 0 and cost.bytes == 0:
                continue
            compute_s = cost.flops / (self.peak_gflops * 1e9)
            memory_s = cost.bytes / (self.peak_gbps * 1e9)
            total_s += max(compute_s, memory_s) + self.overhead_us * 1e-6
        return total_s * 1e3

    def measure(
        self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1, precision: str = "fp32"
    ) -> Measurement:
        check_precision(precision)
        ms = self.estimate_ms(model, batch, precision)
        return Measurement(ms, ms, ms, runs=0, seconds=0.0, estimate=True)
