"""Whole-model benchmark: median latency and throughput under the standard protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx

from mdp_trt.errors import InputError
from mdp_trt.graph.batch import model_batch
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


def check_batch(model: onnx.ModelProto, batch: int) -> None:
    """Refuse a batch the model cannot run at: a model whose batch is fixed runs at that batch whatever
    is asked, so its latency divided by another batch would be a false FPS."""
    fixed = model_batch(model)
    if fixed is not None and fixed != batch:
        raise InputError(f"the model's batch is fixed to {fixed}; use --batch {fixed} or export it with a "
                         "symbolic batch dimension")


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
