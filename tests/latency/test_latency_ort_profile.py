"""Probe timing from ONNX Runtime's profiler: per-run kernel time without the edge reorders."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from mdp_trt.graph.structure import EpilogueOp
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.backends.base import measure_probe
from mdp_trt.latency.backends.ort_profile import ISOLATION_OPS, SINK, kernel_times_ms, read_profile, with_sink
from mdp_trt.latency.probes import ProbeSpec, build_probe
from mdp_trt.latency.protocol import MeasureProtocol
from tests.latency.latency_fakes import BN, conv_layer

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
        _node("relu", "Relu", 217, 2), _node(f"{SINK}_0", "Flatten", 220, 5),
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
    assert backend.fingerprint(1, "fp32")["probe_timing"] == "kernels-read"
    assert "CPUExecutionProvider" in ort.get_available_providers()


def test_backends_without_probe_timing_are_timed_whole() -> None:
    analytic = get_backend("analytic")
    probe = build_probe(ProbeSpec.from_layer(conv_layer()), 8, 8)
    assert measure_probe(analytic, probe, QUICK) == analytic.measure(probe, QUICK)


def _timed_ops(model: onnx.ModelProto, tmp_path, prefix: str) -> list[str]:
    """The ops of the kernels a probe's sample sums, in one run of `model` (1 thread)."""
    sess = get_backend("ort", threads=1).session(model, profile_prefix=str(tmp_path / prefix))
    name = sess.get_inputs()[0].name
    sess.run(None, {name: np.ones([d or 1 for d in sess.get_inputs()[0].shape], np.float32)})
    return sorted(
        e["args"]["op_name"] for e in read_profile(sess.end_profiling())
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
        and e["args"]["op_name"] not in ISOLATION_OPS and not e["name"].startswith(SINK)
    )


def test_a_probe_runs_its_layer_as_a_model_does_with_the_output_read(tmp_path) -> None:
    """A hard swish that ends a graph is not fused into the convolution before it; inside a model the next
    layer reads it, and it is. The probe is timed with a reader, so its kernels are the model's."""
    hard_swish = EpilogueOp("act", "HardSwish")
    probe = build_probe(ProbeSpec.from_layer(conv_layer(c_in=16, c_out=32, size=28, epilogue=(BN, hard_swish))), 16, 32)
    sunk = with_sink(probe)
    onnx.checker.check_model(sunk, full_check=True)
    assert [o.name for o in sunk.graph.output] == [o.name for o in probe.graph.output]
    x = np.random.default_rng(0).standard_normal((1, 16, 28, 28)).astype(np.float32)
    (raw,), (read,) = (ort.InferenceSession(m.SerializeToString()).run(None, {"X": x}) for m in (probe, sunk))
    np.testing.assert_array_equal(read, raw.reshape(1, -1))

    # the same layer inside a model: a second conv reads it, and its own kernel is left out below
    rng = np.random.default_rng(1)
    consts = {name: numpy_helper.from_array(value.astype(np.float32), name) for name, value in {
        "w": rng.standard_normal((32, 16, 3, 3)), "scale": np.ones(32), "bias": np.zeros(32), "mean": np.zeros(32),
        "var": np.ones(32), "w_next": rng.standard_normal((8, 32, 1, 1))}.items()}
    model = helper.make_model(helper.make_graph([
        helper.make_node("Conv", ["X", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"], name="bn"),
        helper.make_node("HardSwish", ["b"], ["h"], name="act"),
        helper.make_node("Conv", ["h", "w_next"], ["Y"], name="next"),
    ], "two_layers", [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1, 16, 28, 28])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [1, 8, 28, 28])], list(consts.values())),
        opset_imports=[helper.make_opsetid("", 17)])
    in_model = _timed_ops(model, tmp_path, "model")
    in_model.remove("Conv")  # the next layer's
    assert _timed_ops(sunk, tmp_path, "sunk") == in_model
