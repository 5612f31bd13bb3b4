"""Whole-model benchmark: median latency, its dispersion and throughput under the standard protocol; and the
comparison of two models timed interleaved, which the closed loop decides on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx

from mdp_trt.errors import InputError
from mdp_trt.graph.batch import model_batch
from mdp_trt.latency.backends.base import Backend, measure_interleaved
from mdp_trt.latency.measurement import Comparison, Measurement
from mdp_trt.latency.protocol import (
    BENCH_PROTOCOL,
    COMPARE_PROTOCOL,
    InterleavedProtocol,
    MeasureProtocol,
    Settled,
)

CONFIDENCE = 0.95  # the level of every interval mdp-trt states


@dataclass(frozen=True)
class BenchResult:
    measurement: Measurement
    batch: int
    backend: str

    @property
    def fps(self) -> float:
        """Images per second: batch / latency."""
        return self.batch * 1000.0 / self.measurement.median_ms if self.measurement.median_ms > 0 else 0.0

    @property
    def warning(self) -> str | None:
        """One line when the host drifted while the model was timed (see `protocol.summarize`), else None: the
        median is then that of a moving host, and its interval says less than it seems to."""
        m = self.measurement
        if not m.drifted:
            return None
        return (f"the host drifted while the model was timed: the medians of {len(m.segments_ms)} consecutive "
                f"segments range over {min(m.segments_ms):.3f}-{max(m.segments_ms):.3f} ms ({100 * m.drift:.1f}%), "
                f"more than the ±{100 * m.precision:.1f}% stated for the median; compare models interleaved "
                "(build does) rather than by separate benches")

    def to_json(self) -> dict[str, Any]:
        m = self.measurement
        low, high = m.median_ci
        return {
            "latency_ms": m.median_ms,
            "fps": self.fps,
            "p10_ms": m.p10_ms,
            "p90_ms": m.p90_ms,
            "median_ci_ms": [low, high],
            "fps_ci": [self.batch * 1000.0 / high if high > 0 else 0.0, self.batch * 1000.0 / low if low > 0 else 0.0],
            "confidence": CONFIDENCE,
            "precision": m.precision,
            "segments_ms": list(m.segments_ms),
            "drift": m.drift,
            "drifted": m.drifted,
            "runs": m.runs,
            "seconds": m.seconds,
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


def compare_models(
    reference: onnx.ModelProto,
    candidate: onnx.ModelProto,
    backend: Backend,
    *,
    batch: int = 1,
    precision: str = "fp32",
    protocol: InterleavedProtocol = COMPARE_PROTOCOL,
    settled: Settled | None = None,
) -> Comparison:
    """`candidate` timed against `reference` in one window, interleaved where the backend can (see
    `base.measure_interleaved`); `settled(comparison so far)` may end the sampling once the caller's decision
    is taken."""
    return measure_interleaved(backend, reference, candidate, protocol, batch=batch, precision=precision,
                               settled=settled)
