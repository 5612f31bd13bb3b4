"""ONNX Runtime and analytic backends: settings, input feeding, labelling of estimates."""

from __future__ import annotations

import math
import platform
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mdp_trt.errors import BackendUnavailable, InputError
from mdp_trt.latency.backends import get_backend, input_feeds, input_shapes, session_options
from mdp_trt.latency.backends.analytic import AnalyticBackend
from mdp_trt.latency.backends.base import GENERIC_CHANNEL_MULTIPLE, channel_multiple
from mdp_trt.latency.backends.ort import NCHWC_DOMAIN, OrtBackend, block_of_optimized, nchwc_block
from mdp_trt.latency.probes import ProbeSpec, build_probe
from mdp_trt.latency.protocol import MeasureProtocol
from tests.latency.latency_fakes import conv_layer

QUICK = MeasureProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=5, max_seconds=0.05)


def _symbolic_model(dims: list) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def test_session_options_are_pinned() -> None:
    opts = session_options(3)
    assert opts.intra_op_num_threads == 3
    assert opts.inter_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def _conv_model(domain: str, filter_dims: list[int]) -> onnx.ModelProto:
    weight = helper.make_tensor("w", TensorProto.FLOAT, filter_dims, [0.0] * math.prod(filter_dims))
    node = helper.make_node("Conv", ["x", "w"], ["y"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    return helper.make_model(graph)


def test_the_nchwc_block_is_read_from_the_rewritten_filter() -> None:
    assert block_of_optimized(_conv_model(NCHWC_DOMAIN, [16, 16, 1, 1])) == 16
    assert block_of_optimized(_conv_model(NCHWC_DOMAIN, [8, 16, 1, 1])) == 8
    assert block_of_optimized(_conv_model("", [1, 16, 1, 1])) is None, "a plain Conv: no NCHWc rewrite"


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not Path("/proc/cpuinfo").exists(),
                    reason="MLAS's NCHWc block is known from CPU flags on x86-64 Linux only")
def test_the_nchwc_block_on_this_host_follows_its_vector_width() -> None:
    """On x86-64, MLAS runs NCHWc convolutions in blocks of 16 channels with AVX-512F and of 8 otherwise (its
    platform selection), whichever CPU CI lands on."""
    expected = 16 if "avx512f" in _cpu_flags() else 8
    assert nchwc_block() == expected
    assert channel_multiple(OrtBackend(threads=1)) == expected


def test_a_backend_without_a_channel_multiple_gets_the_generic_one() -> None:
    assert channel_multiple(AnalyticBackend()) == GENERIC_CHANNEL_MULTIPLE == 8

    class Blocked(AnalyticBackend):
        def channel_multiple(self) -> int:
            return 32

    assert channel_multiple(Blocked()) == 32


def test_symbolic_batch_is_fixed_and_other_symbols_refused() -> None:
    assert input_shapes(_symbolic_model(["N", 3, 4]), batch=5) == {"x": (5, 3, 4)}
    assert input_feeds(_symbolic_model(["N", 3]), batch=2)["x"].shape == (2, 3)
    with pytest.raises(InputError, match="symbolic size 'H'"):
        input_shapes(_symbolic_model(["N", 3, "H"]), batch=1)


def test_ort_measures_a_model_with_symbolic_batch() -> None:
    backend = get_backend("ort", threads=1)
    m = backend.measure(_symbolic_model(["N", 64]), QUICK, batch=4)
    assert m.runs >= 5 and 0 < m.p10_ms <= m.median_ms <= m.p90_ms and not m.estimate
    fp = backend.fingerprint(4, "fp32")
    assert fp["backend"] == "onnxruntime" and fp["threads"] == 1 and fp["batch"] == 4
    assert fp["estimate"] is False and fp["provider"] == "CPUExecutionProvider"


def test_ort_refuses_what_it_cannot_do() -> None:
    with pytest.raises(InputError, match="fp16"):
        get_backend("ort").measure(_symbolic_model([1, 4]), QUICK, precision="fp16")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
            get_backend("ort-cuda")
    with pytest.raises(InputError, match="unknown backend"):
        get_backend("nope")
    with pytest.raises(InputError, match="precision"):
        get_backend("ort").fingerprint(1, "int8")


def test_analytic_backend_is_labelled_an_estimate() -> None:
    backend = get_backend("analytic")
    assert backend.fingerprint(1, "fp32")["estimate"] is True
    m = backend.measure(build_probe(ProbeSpec.from_layer(conv_layer()), 8, 8), QUICK)
    assert m.estimate is True and m.median_ms > 0 and m.runs == 0


def test_analytic_conv_flops_and_monotonicity() -> None:
    spec = ProbeSpec.from_layer(conv_layer(epilogue=()))
    compute_bound = AnalyticBackend(peak_gflops=1.0, peak_gbps=1e9, overhead_us=0.0)
    # 2 * (1*16*8*8 outputs) * (8 inputs * 3*3 kernel) FLOPs at 1 GFLOP/s
    assert compute_bound.estimate_ms(build_probe(spec, 8, 16)) == pytest.approx(2 * 16 * 64 * 72 / 1e9 * 1e3)
    est = AnalyticBackend()
    assert est.estimate_ms(build_probe(spec, 8, 8)) < est.estimate_ms(build_probe(spec, 16, 8)) < \
        est.estimate_ms(build_probe(spec, 16, 16))
