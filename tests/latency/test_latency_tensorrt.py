"""TensorRT backend: the pure-Python parts on CPU (fakes stand in for tensorrt and cuda-python),
plus a real-GPU test that is skipped, with the reason, where TensorRT or a GPU is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto

from mdp_trt.errors import BackendUnavailable
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.backends import tensorrt as trt_backend
from mdp_trt.latency.backends.cuda import CudaError, check
from mdp_trt.latency.probes import ProbeSpec, build_probe
from mdp_trt.latency.protocol import MeasureProtocol
from tests.latency import fake_tensorrt
from tests.latency.latency_fakes import conv_layer

FAST = MeasureProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=10)


def _probe(batch: int = 1) -> onnx.ModelProto:
    return build_probe(ProbeSpec.from_layer(conv_layer()), 8, 8, batch=batch)


@pytest.mark.parametrize(("version", "major"), [("10.7.0.post1", 10), ("11.0.0", 11), (" 10.0 ", 10)])
def test_version_detection(version: str, major: int) -> None:
    assert trt_backend.trt_major(version) == major


def test_build_settings_per_version() -> None:
    s10 = trt_backend.build_settings("10.9.0", "fp16")
    assert (s10.strongly_typed, s10.fp16_flag, s10.convert_graph_fp16) == (False, True, False)
    s11 = trt_backend.build_settings("11.1.0", "fp16")
    assert (s11.strongly_typed, s11.fp16_flag, s11.convert_graph_fp16) == (True, False, True)
    s11_32 = trt_backend.build_settings("11.1.0", "fp32")
    assert (s11_32.fp16_flag, s11_32.convert_graph_fp16) == (False, False)
    with pytest.raises(BackendUnavailable, match="not supported"):
        trt_backend.build_settings("8.6.1", "fp32")


def test_engine_key_and_timing_cache_path(tmp_path: Path) -> None:
    s = trt_backend.build_settings("10.9.0", "fp32")
    dev = {"name": "GPU", "compute_capability": "8.6"}
    key = trt_backend.engine_key(b"model", s, {"X": (1, 3)}, dev)
    assert key == trt_backend.engine_key(b"model", s, {"X": (1, 3)}, dict(reversed(list(dev.items()))))
    assert key != trt_backend.engine_key(b"model", s, {"X": (2, 3)}, dev)
    assert key != trt_backend.engine_key(b"model", trt_backend.build_settings("10.9.0", "fp16"), {"X": (1, 3)}, dev)
    path = trt_backend.timing_cache_path(tmp_path / "latency.sqlite", dev, "10.9.0")
    assert path.parent == tmp_path and path.name.startswith("latency.trt-")
    assert path != trt_backend.timing_cache_path(tmp_path / "latency.sqlite", dev, "11.0.0")


def test_cuda_result_parsing() -> None:
    assert check((0,)) is None
    assert check((0, 5)) == 5
    assert check((0, 1, 2)) == (1, 2)
    with pytest.raises(CudaError, match="cudaMalloc"):
        check((2, None), "cudaMalloc")


def test_missing_tensorrt_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tensorrt.install(monkeypatch, version=None)
    with pytest.raises(BackendUnavailable, match="pip install tensorrt cuda-python"):
        get_backend("tensorrt")
    assert get_backend("auto").name == "ort"  # auto falls back to the CPU


def test_missing_cuda_python_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tensorrt.install(monkeypatch)
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendUnavailable, match="cuda-python"):
        get_backend("tensorrt")


def test_no_gpu_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tensorrt.install(monkeypatch, devices=0)
    with pytest.raises(BackendUnavailable, match="no NVIDIA GPU visible"):
        get_backend("tensorrt")


def test_package_import_does_not_import_tensorrt() -> None:
    import subprocess

    # importing mdp_trt.cli imports every command module
    code = "import sys, mdp_trt.latency, mdp_trt.cli; print('tensorrt' in sys.modules, 'cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_trt10_fp16_uses_the_builder_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    trt, _ = fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt", db_path=tmp_path / "latency.sqlite")
    m = backend.measure(_probe(), FAST, batch=1, precision="fp16")
    assert m.median_ms == 1.25 and m.runs == 10 and not m.estimate
    assert ("flag", "FP16") in trt.log
    assert ("network_flags", 0) in trt.log
    assert ("parsed_elem_type", TensorProto.FLOAT) in trt.log
    fp = backend.fingerprint(1, "fp16")
    assert fp["device"]["name"] == "Fake GPU" and fp["device"]["compute_capability"] == "8.6"
    assert fp["backend"] == "tensorrt" and fp["estimate"] is False
    # the timing cache was written next to the database, and the built engine cached by key
    assert list(tmp_path.glob("latency.trt-*.timing-cache"))
    assert list((tmp_path / "engines").glob("*.engine"))


def test_trt11_fp16_converts_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    trt, _ = fake_tensorrt.install(monkeypatch, "11.0.0")
    backend = get_backend("tensorrt")
    backend.measure(_probe(), FAST, batch=1, precision="fp16")
    assert not any(entry[0] == "flag" for entry in trt.log)  # BuilderFlag.FP16 does not exist on 11
    assert ("network_flags", 1) in trt.log  # 1 << STRONGLY_TYPED
    assert ("parsed_elem_type", TensorProto.FLOAT16) in trt.log


def test_runner_uses_cuda_graphs_events_and_tensor_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    trt, rt = fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt")
    backend.measure(_probe(batch=3), FAST, batch=3)
    names = [c[0] for c in rt.calls]
    assert names.count("cudaGraphLaunch") == names.count("cudaEventElapsedTime") > 10
    assert names.index("cudaStreamBeginCapture") < names.index("cudaStreamEndCapture")
    assert "cudaGraphInstantiate" in names and "cudaGraphExecDestroy" in names
    assert names.count("cudaFree") == names.count("cudaMalloc") == 2
    ctx = next(entry[1] for entry in trt.log if entry[0] == "context")
    assert ctx.shapes["X"] == (3, 8, 8, 8)
    assert set(ctx.addresses) == {"X", "Y"}
    profile = next(entry[1] for entry in trt.log if entry[0] == "profile")
    assert profile["X"][0] == (3, 8, 8, 8)


def _real_gpu() -> bool:
    try:
        from mdp_trt.latency.backends.cuda import gpu_count, import_cudart

        return gpu_count(import_cudart()) > 0
    except Exception:
        return False


@pytest.mark.gpu
def test_real_tensorrt_measures_a_probe(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt cuda-python)")
    if not _real_gpu():
        pytest.skip("no NVIDIA GPU visible")
    backend = get_backend("tensorrt", db_path=tmp_path / "latency.sqlite")
    for precision in ("fp32", "fp16"):
        m = backend.measure(_probe(), FAST, batch=1, precision=precision)
        assert 0 < m.p10_ms <= m.median_ms <= m.p90_ms
