"""Hand-made layers and fake backends shared by the latency tests."""

from __future__ import annotations

from typing import Any

import onnx

from mdp_trt.graph.structure import EpilogueOp, Layer, Segment
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.protocol import MeasureProtocol

BN = EpilogueOp("bn", "BatchNormalization", {"epsilon": 1e-5})
RELU = EpilogueOp("relu", "Relu", {})


def conv_layer(name: str = "conv", c_in: int = 16, c_out: int = 32, size: int = 8, kernel: int = 3,
               stride: int = 1, epilogue: tuple[EpilogueOp, ...] = (BN, RELU), depthwise: bool = False,
               group: int = 1, in_group: str | None = "gin", out_group: str | None = "gout",
               block: str | None = None) -> Layer:
    out_size = (size + 2 * (kernel // 2) - kernel) // stride + 1
    groups = c_in if depthwise else group
    return Layer(
        name=name, op="Conv", in_group=in_group, out_group=out_group, in_channels=c_in, out_channels=c_out,
        in_segments=(Segment(in_group or "cat", c_in),), out_segments=(Segment(out_group or "x", c_out),),
        in_repeat=1, input_shape=(None, c_in, size, size), output_shape=(None, c_out, out_size, out_size),
        weight_shape=(c_out, c_in // groups, kernel, kernel), has_bias=False,
        attrs={"kernel_shape": [kernel, kernel], "strides": [stride, stride], "pads": [kernel // 2] * 4,
               "dilations": [1, 1], "group": groups},
        epilogue=epilogue, block=block, depthwise=depthwise,
    )


def gemm_layer(c_in: int = 16, repeat: int = 4, c_out: int = 10, in_group: str = "gin") -> Layer:
    return Layer(
        name="fc", op="Gemm", in_group=in_group, out_group="gcls", in_channels=c_in, out_channels=c_out,
        in_segments=(Segment(in_group, c_in),), out_segments=(Segment("gcls", c_out),), in_repeat=repeat,
        input_shape=(1, c_in * repeat), output_shape=(1, c_out), weight_shape=(c_out, c_in * repeat),
        has_bias=True, attrs={"transB": 1, "alpha": 1.0, "beta": 1.0}, epilogue=(), block=None,
    )


def matmul_layer(c_in: int = 16, c_out: int = 24, tokens: int = 5, epilogue: tuple[EpilogueOp, ...] = ()) -> Layer:
    return Layer(
        name="mm", op="MatMul", in_group="gin", out_group="gout", in_channels=c_in, out_channels=c_out,
        in_segments=(Segment("gin", c_in),), out_segments=(Segment("gout", c_out),), in_repeat=1,
        input_shape=(None, tokens, c_in), output_shape=(None, tokens, c_out), weight_shape=(c_in, c_out),
        has_bias=False, attrs={}, epilogue=epilogue, block=None,
    )


class CountingBackend:
    """Wraps a backend and counts `measure` calls (same name and fingerprint as the wrapped one)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]:
        return self.inner.fingerprint(batch, precision)

    def measure(self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1,
                precision: str = "fp32") -> Measurement:
        self.calls += 1
        return self.inner.measure(model, protocol, batch=batch, precision=precision)
