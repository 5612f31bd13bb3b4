"""Probe timing from ONNX Runtime's profiler: per-run kernel time without the edge reorders."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.backends.base import measure_probe
from mdp_trt.latency.backends.ort_profile import ISOLATION_OPS, kernel_times_ms, read_profile
from mdp_trt.latency.probes import ProbeSpec, build_probe
from mdp_trt.latency.protocol import MeasureProtocol
from tests.latency.latency_fakes import conv_layer

QUICK = MeasureProtocol(warmup_runs=2, warmup_seconds=0.0, min_runs=8, max_seconds=0.05)


def _node(name: str, op: str, ts: int, dur: int) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def _run(ts: int, dur: int) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def test_kernel_times_sum_per_run_and_skip_reorders() -> None:
    events = [
        {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 90},
        _run(100, 50), _node("ReorderInput", "ReorderInput", 101, 9), _node("y_nchwc", "Conv", 111, 12),
        _node("relu", "Relu", 124, 3), _node("ReorderOutput", "ReorderOutput", 128, 20),
        _run(200, 30), _node("ReorderInput", "ReorderInput", 201, 4), _node("y_nchwc", "Conv", 206, 10),
        _node("relu", "Relu", 217, 2),
        _node("late", "Conv", 900, 7),  # outside every run: not counted
    ]
    assert kernel_times_ms(events) == pytest.approx([0.015, 0.012])


def test_kernel_times_of_a_real_profile_exclude_the_reorders(tmp_path) -> None:
    depthwise = conv_layer(c_in=32, c_out=32, size=28, depthwise=True)
    probe = build_probe(ProbeSpec.from_layer(depthwise), 32, 32)
    backend = get_backend("ort", threads=1)
    sess = backend.session(probe, profile_prefix=str(tmp_path / "p"))
    feeds = {sess.get_inputs()[0].name: np.ones((1, 32, 28, 28), np.float32)}
    for _ in range(6):
        sess.run(None, feeds)
    events = read_profile(sess.end_profiling())
    runs = [e for e in events if e.get("name") == "model_run"]
    reorders = [e for e in events if e.get("args", {}).get("op_name") in ISOLATION_OPS]
    totals = kernel_times_ms(events)
    assert len(totals) == len(runs) == 6
    assert all(0 < total <= run["dur"] / 1e3 for total, run in zip(totals, runs, strict=True))
    if reorders:  # x86: NCHWc layout, so the probe pays reorders the kernel total leaves out
        kernels = sum(e["dur"] for e in events if e.get("cat") == "Node") / 1e3
        assert sum(totals) == pytest.approx(kernels - sum(e["dur"] for e in reorders) / 1e3)


def test_ort_probe_measurement_is_a_kernel_time() -> None:
    probe = build_probe(ProbeSpec.from_layer(conv_layer(c_in=16, c_out=16, size=16)), 16, 16)
    backend = get_backend("ort", threads=1)
    m = measure_probe(backend, probe, QUICK)
    assert m.runs >= 8 and 0 < m.p10_ms <= m.median_ms <= m.p90_ms and not m.estimate
    assert backend.fingerprint(1, "fp32")["probe_timing"] == "kernels"
    assert "CPUExecutionProvider" in ort.get_available_providers()


def test_backends_without_probe_timing_are_timed_whole() -> None:
    analytic = get_backend("analytic")
    probe = build_probe(ProbeSpec.from_layer(conv_layer()), 8, 8)
    assert measure_probe(analytic, probe, QUICK) == analytic.measure(probe, QUICK)
