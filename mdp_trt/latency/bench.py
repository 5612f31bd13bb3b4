"""Whole-model benchmark: median latency and throughput under the standard protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx

from mdp_trt.latency.backends.base import Backend
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.protocol import BENCH_PROTOCOL, MeasureProtocol


@dataclass(frozen=True)
class BenchResult:
    measurement: Measurement
    batch: int
    backend: str

    @property
    def fps(self) -> float:
        """Images per second: batch / latency."""
        return self.batch * 1000.0 / self.measurement.median_ms if self.measurement.median_ms > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        m = self.measurement
        return {
            "latency_ms": m.median_ms,
            "fps": self.fps,
            "p10_ms": m.p10_ms,
            "p90_ms": m.p90_ms,
            "runs": m.runs,
            "backend": self.backend,
            "estimate": m.estimate,
        }


def bench_model(
    model: onnx.ModelProto,
    backend: Backend,
    *,
    batch: int = 1,
    precision: str = "fp32",
    protocol: MeasureProtocol = BENCH_PROTOCOL,
) -> BenchResult:
    return BenchResult(
        backend.measure(model, protocol, batch=batch, precision=precision), batch, backend.name
    )
