"""TensorRT backend against the faithful fakes of tensorrt and cuda-python (tests/latency/fake_tensorrt.py),
plus real-GPU tests that are skipped, with the reason, where TensorRT or a GPU is absent."""

from __future__ import annotations

import ast
import fcntl
import json
import logging
import sys
import threading
import time
import warnings
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from packaging.requirements import Requirement

from mdp_trt.errors import BackendUnavailable, InputError
from mdp_trt.latency.backends import get_backend
from mdp_trt.latency.backends import tensorrt as trt_backend
from mdp_trt.latency.backends.base import measure_probe
from mdp_trt.latency.backends.cuda import CudaError, check, device_properties
from mdp_trt.latency.probes import ProbeSpec, build_probe
from mdp_trt.latency.protocol import MeasureProtocol
from tests.latency import fake_tensorrt
from tests.latency.latency_fakes import conv_layer

FAST = MeasureProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=10)
LOGGER = "mdp_trt.latency.backends.tensorrt"
GPU_MS = 1.0 + 2 * 0.25  # the fake engine of a one-input, one-output model: its layers and two reformats


def _probe(k_in: int = 8, batch: int = 1) -> onnx.ModelProto:
    return build_probe(ProbeSpec.from_layer(conv_layer()), k_in, 8, batch=batch)


def _cache_entries(path: Path) -> dict[str, str]:
    return json.loads(path.read_bytes()[len(fake_tensorrt.CACHE_MAGIC):])["entries"]


# --- the pure-Python parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "major"), [("10.7.0.post1", 10), ("11.0.0", 11), (" 10.0 ", 10)])
def test_version_detection(version: str, major: int) -> None:
    assert trt_backend.trt_major(version) == major


def test_build_settings_per_version() -> None:
    s10 = trt_backend.build_settings("10.9.0", "fp16", fp16_io=True)
    assert (s10.strongly_typed, s10.fp16_flag, s10.convert_graph_fp16, s10.fp16_io) == (False, True, False, False)
    s11 = trt_backend.build_settings("11.1.0", "fp16")
    assert (s11.strongly_typed, s11.fp16_flag, s11.convert_graph_fp16, s11.fp16_io) == (True, False, True, False)
    assert trt_backend.build_settings("11.1.0", "fp16", fp16_io=True).fp16_io
    s11_32 = trt_backend.build_settings("11.1.0", "fp32", fp16_io=True)
    assert (s11_32.fp16_flag, s11_32.convert_graph_fp16, s11_32.fp16_io) == (False, False, False)
    assert all(s.tf32 for s in (s10, s11, s11_32))
    with pytest.raises(BackendUnavailable, match="not supported"):
        trt_backend.build_settings("8.6.1", "fp32")


def test_engine_key_and_timing_cache_path(tmp_path: Path) -> None:
    s = trt_backend.build_settings("10.9.0", "fp32")
    dev = {"name": "GPU", "compute_capability": "8.6"}
    key = trt_backend.engine_key(b"model", s, {"X": (1, 3)}, dev)
    assert key == trt_backend.engine_key(b"model", s, {"X": (1, 3)}, dict(reversed(list(dev.items()))))
    assert key != trt_backend.engine_key(b"model", s, {"X": (2, 3)}, dev)
    assert key != trt_backend.engine_key(b"model", trt_backend.build_settings("10.9.0", "fp16"), {"X": (1, 3)}, dev)
    s11 = trt_backend.build_settings("11.0.0", "fp16")
    assert trt_backend.engine_key(b"m", s11, {}, dev) != trt_backend.engine_key(
        b"m", trt_backend.build_settings("11.0.0", "fp16", fp16_io=True), {}, dev)
    path = trt_backend.timing_cache_path(tmp_path / "latency.sqlite", dev, "10.9.0")
    assert path.parent == tmp_path and path.name.startswith("latency.trt-")
    assert path != trt_backend.timing_cache_path(tmp_path / "latency.sqlite", dev, "11.0.0")


def test_cuda_result_parsing() -> None:
    assert check((0,)) is None
    assert check((0, 5)) == 5
    assert check((0, 1, 2)) == (1, 2)
    with pytest.raises(CudaError, match="cudaMalloc"):
        check((2, None), "cudaMalloc")


@pytest.mark.parametrize(("name", "reformat"), [
    ("Reformatting CopyNode for Input Tensor 0 to /conv/Conv + /relu/Relu", True),
    ("Reformatting CopyNode for Output Tensor 0 to /conv/Conv + /relu/Relu", True),
    ("/conv/Conv + /bn/BatchNormalization + /relu/Relu", False),
    ("reshape_after_/fc/MatMul", False),
])
def test_reformat_layers_are_told_apart_by_name(name: str, reformat: bool) -> None:
    assert trt_backend.is_reformat_layer(name) is reformat


# --- availability ---------------------------------------------------------------------------------------


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


# --- defect 6: the fake is faithful ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["10.0.1", "10.16.0", "11.0.0", "11.1.0"])
def test_fake_enums_have_tensorrts_values(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    trt, _ = fake_tensorrt.install(monkeypatch, version)
    assert {m.name: int(m) for m in trt.TensorIOMode} == {"NONE": 0, "INPUT": 1, "OUTPUT": 2}
    assert trt.TensorIOMode.INPUT != 1  # pybind11 enums are not ints
    assert (int(trt.DataType.FLOAT), int(trt.DataType.HALF), int(trt.DataType.INT64), int(trt.DataType.BF16)) \
        == (0, 1, 8, 7)
    assert int(trt.BuilderFlag.TF32) == 6 and int(trt.MemoryPoolType.WORKSPACE) == 0
    if version.startswith("11"):
        assert int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0
        assert not hasattr(trt.BuilderFlag, "FP16")
    else:
        assert int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
        assert int(trt.BuilderFlag.FP16) == 0
    assert hasattr(trt.DataType, "E8M0") == (version != "10.0.1")
    with pytest.raises(TypeError):
        trt.nptype(trt.DataType.BF16)  # no numpy equivalent


def test_fake_fails_as_tensorrt_does(monkeypatch: pytest.MonkeyPatch) -> None:
    trt, _ = fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt")
    trt.fake.build_fails = True
    with pytest.raises(InputError, match="failed to build"):
        backend.measure(_probe(), FAST)
    trt.fake.build_fails = False
    engine = backend.build(_probe(), 1, "fp32")
    other = fake_tensorrt.fake_tensorrt("10.8.0", fake_tensorrt.FakeCudart())
    assert other.Runtime(other.Logger()).deserialize_cuda_engine(engine) is None  # another version's engine
    config = trt.Builder(trt.Logger()).create_builder_config()
    assert config.get_timing_cache() is None and config.create_timing_cache(b"junk") is None
    assert config.add_optimization_profile(trt.IOptimizationProfile()) == -1


# --- builds ---------------------------------------------------------------------------------------------


def test_trt10_fp16_uses_the_builder_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    trt, _ = fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt", db_path=tmp_path / "latency.sqlite")
    m = backend.measure(_probe(), FAST, batch=1, precision="fp16")
    assert m.runs >= 10 and not m.estimate
    (built,) = trt.fake.built
    assert "FP16" in built["set_flags"] and built["network_flags"] == 0
    assert [t["dtype"] for t in built["inputs"] + built["outputs"]] == ["FLOAT", "FLOAT"]
    fp = backend.fingerprint(1, "fp16")
    assert fp["device"]["name"] == "Fake GPU" and fp["device"]["compute_capability"] == "8.6"
    assert fp["backend"] == "tensorrt" and fp["estimate"] is False
    # the timing cache was written next to the database, and the built engine cached by key
    assert list(tmp_path.glob("latency.trt-*.timing-cache"))
    assert list((tmp_path / "engines").glob("*.engine"))
    backend.measure(_probe(), FAST, batch=1, precision="fp16")
    assert len(trt.fake.built) == 1  # the second measurement reused the cached engine


def test_trt11_fp16_converts_the_graph_and_keeps_fp32_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 4: TensorRT 11 fp16 engines of whole models take and give FP32, as TensorRT 10's do."""
    trt, _ = fake_tensorrt.install(monkeypatch, "11.0.0")
    backend = get_backend("tensorrt")
    backend.measure(_probe(), FAST, batch=1, precision="fp16")
    (built,) = trt.fake.built
    assert "FP16" not in built["set_flags"]  # BuilderFlag.FP16 does not exist on 11
    assert built["network_flags"] == 1  # 1 << STRONGLY_TYPED, as trtexec 11 passes it
    assert [t["dtype"] for t in built["inputs"] + built["outputs"]] == ["FLOAT", "FLOAT"]
    measure_probe(backend, _probe(), FAST, batch=1, precision="fp16")
    probe = trt.fake.built[1]  # a probe stands for a layer inside an FP16 graph: FP16 at its edges too
    assert [t["dtype"] for t in probe["inputs"] + probe["outputs"]] == ["HALF", "HALF"]


def test_tf32_is_set_explicitly_and_stated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 5: FP32 may use TF32 (TensorRT's default), set explicitly and said in the fingerprint."""
    trt, _ = fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt")
    backend.measure(_probe(), FAST)
    assert "TF32" in trt.fake.built[0]["set_flags"]
    assert backend.fingerprint(1, "fp32")["tf32"] is True


def test_workspace_is_left_at_tensorrts_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 5: no workspace cap below TensorRT's default (the device's memory)."""
    trt, _ = fake_tensorrt.install(monkeypatch, "11.0.0")
    get_backend("tensorrt").measure(_probe(), FAST)
    assert trt.fake.built[0]["pool_limits"] == {}


def test_parser_errors_name_the_node_and_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 5: a parser error says which node it is about."""
    fake_tensorrt.install(monkeypatch, "10.7.0")
    graph = helper.make_graph(
        [helper.make_node("FancyOp", ["x"], ["y"], name="head/fancy", domain="com.example")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(InputError, match=r"No importer registered for op: FancyOp \(node head/fancy, op FancyOp\)"):
        get_backend("tensorrt").build(model, 1, "fp32")


def test_refused_optimization_profile_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 5: add_optimization_profile's -1 is checked."""
    trt, _ = fake_tensorrt.install(monkeypatch, "10.7.0")
    monkeypatch.setattr(trt.IBuilderConfig, "add_optimization_profile", lambda self, profile: -1)
    with pytest.raises(InputError, match="refused the optimization profile"):
        get_backend("tensorrt").build(_probe(), 1, "fp32")


# --- timing cache ---------------------------------------------------------------------------------------


def test_a_timing_cache_tensorrt_refuses_is_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Defect 5: set_timing_cache's False (another GPU's cache) is checked; the build goes on with a fresh one."""
    trt, _ = fake_tensorrt.install(monkeypatch, "10.7.0")
    db = tmp_path / "latency.sqlite"
    cache_path = trt_backend.timing_cache_path(db, device_properties(0), "10.7.0")
    cache_path.write_bytes(bytes(trt.ITimingCache("Another GPU 9.0", {"theirs": "timed"}).serialize()))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        get_backend("tensorrt", db_path=db).build(_probe(), 1, "fp32")
    assert "cannot use the timing cache" in caplog.text and "could not merge" in caplog.text
    assert list(_cache_entries(cache_path)) != ["theirs"]  # replaced by this GPU's own, not mixed with it
    assert len(_cache_entries(cache_path)) == 1


def test_no_timing_cache_is_not_a_crash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Defect 5: get_timing_cache() may return None."""
    trt, _ = fake_tensorrt.install(monkeypatch, "10.7.0")
    monkeypatch.setattr(trt.IBuilderConfig, "get_timing_cache", lambda self: None)
    assert get_backend("tensorrt", db_path=tmp_path / "latency.sqlite").build(_probe(), 1, "fp32")
    assert not list(tmp_path.glob("*.timing-cache"))


def test_timing_cache_saves_merge_what_others_saved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Defect 5: two builders that read the cache before either saved keep both sets of entries (combine)."""
    fake_tensorrt.install(monkeypatch, "10.7.0")
    db = tmp_path / "latency.sqlite"
    first, second = get_backend("tensorrt", db_path=db), get_backend("tensorrt", db_path=db)
    first.build(_probe(8), 1, "fp32")
    second.build(_probe(16), 1, "fp32")
    (cache_path,) = tmp_path.glob("*.timing-cache")
    assert len(_cache_entries(cache_path)) == 2


def test_timing_cache_is_saved_under_an_exclusive_lock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Defect 5: while another process holds the cache's lock file, saving waits for it."""
    fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt", db_path=tmp_path / "latency.sqlite")
    lock_path = backend.timing_cache.with_name(backend.timing_cache.name + ".lock")
    with open(lock_path, "a+b") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        worker = threading.Thread(target=backend.build, args=(_probe(), 1, "fp32"))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and not backend.timing_cache.exists()
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    worker.join(5)
    assert not worker.is_alive() and backend.timing_cache.exists()


# --- running: defects 1, 2, 3 and 5 ---------------------------------------------------------------------


def test_runner_uses_cuda_graphs_events_and_tensor_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    _, rt = fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt")
    m = backend.measure(_probe(batch=3), FAST, batch=3)
    assert rt.calls.count("cudaGraphLaunch") >= m.runs + 1  # warm-up included
    assert rt.calls.index("cudaStreamBeginCapture") < rt.calls.index("cudaStreamEndCapture")
    assert rt.calls.count("cudaMalloc") == 2
    assert rt.unreleased() == {}  # buffers, events, stream, graphs: all released


def test_whole_model_time_is_gpu_compute_without_launch_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 2: with two iterations in flight each sample is the GPU's time alone, not plus the launch."""
    fake_tensorrt.install(monkeypatch, "10.7.0")
    m = get_backend("tensorrt").measure(_probe(), FAST)
    assert m.median_ms == pytest.approx(GPU_MS, abs=1e-9)
    assert m.p90_ms == pytest.approx(GPU_MS, abs=1e-9)


def test_probe_time_is_its_layers_without_reformats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 3: a probe is timed per layer through IProfiler, reformat layers left out, enqueue asynchronous
    and captured; the fingerprint says so, keeping older entries apart."""
    trt, rt = fake_tensorrt.install(monkeypatch, "10.7.0")
    contexts = []
    create = trt.ICudaEngine.create_execution_context

    def remember(engine: object) -> object:
        contexts.append(create(engine))
        return contexts[-1]

    monkeypatch.setattr(trt.ICudaEngine, "create_execution_context", remember)
    backend = get_backend("tensorrt")
    m = measure_probe(backend, _probe(), FAST, precision="fp16")
    assert m.median_ms == pytest.approx(trt.fake.compute_ms) and m.p10_ms == pytest.approx(trt.fake.compute_ms)
    (context,) = contexts
    assert context.enqueue_emits_profile is False and context.synchronous_enqueues == 0
    assert rt.calls.count("cudaGraphLaunch") >= m.runs  # profiled runs replay the captured graph
    assert backend.fingerprint(1, "fp16")["probe_timing"] == "layers"
    assert rt.unreleased() == {}


def test_capture_failure_falls_back_to_running_without_a_graph(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Defect 1: an engine TensorRT cannot capture is timed without a CUDA graph, with a warning, as trtexec
    does; the capture's CUDA error is cleared and nothing leaks."""
    trt, rt = fake_tensorrt.install(monkeypatch, "10.7.0")
    trt.fake.capturable = False
    backend = get_backend("tensorrt")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        m = backend.measure(_probe(), FAST)
        p = measure_probe(backend, _probe(), FAST)
    assert "without one" in caplog.text
    assert m.median_ms == pytest.approx(GPU_MS) and p.median_ms == pytest.approx(trt.fake.compute_ms)
    assert "cudaGraphLaunch" not in rt.calls and "cudaGetLastError" in rt.calls
    assert rt.last_error == fake_tensorrt.OK and rt.unreleased() == {}


def test_instantiate_failure_falls_back_too(monkeypatch: pytest.MonkeyPatch) -> None:
    _, rt = fake_tensorrt.install(monkeypatch, "10.7.0")
    rt.instantiate_error = fake_tensorrt.cudaError_t.cudaErrorInvalidValue
    m = get_backend("tensorrt").measure(_probe(), FAST)
    assert m.median_ms == pytest.approx(GPU_MS) and "cudaGraphLaunch" not in rt.calls
    assert rt.unreleased() == {}


@pytest.mark.parametrize("refusal", ["set_input_shape", "set_tensor_address", "malloc"])
def test_a_runner_that_fails_to_set_up_releases_everything(monkeypatch: pytest.MonkeyPatch, refusal: str) -> None:
    """Defects 1 and 5: refused shapes and addresses are one-line errors, and whatever the runner made before
    a failure (stream, events, buffers) is released."""
    trt, rt = fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt")
    if refusal == "malloc":
        rt.malloc_budget = 1
        expected: tuple[type[Exception], str] = (CudaError, "cudaMalloc")
    else:
        monkeypatch.setattr(trt.IExecutionContext, refusal, lambda self, name, value: False)
        expected = (InputError, "input 'X'" if refusal == "set_input_shape" else "buffer of tensor 'X'")
    with pytest.raises(expected[0], match=expected[1]):
        backend.measure(_probe(), FAST)
    assert rt.unreleased() == {}


def test_stream_handle_is_not_taken_with_deprecated_int(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 5: cuda-bindings 13 deprecates int(stream); the handle comes from get_cuda_native_handle."""
    fake_tensorrt.install(monkeypatch, "10.7.0")
    backend = get_backend("tensorrt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        backend.measure(_probe(), FAST)
        measure_probe(backend, _probe(), FAST)


def test_a_driver_older_than_cuda_python_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 5: cuda-python 13 on a CUDA 12 driver is told apart from a missing GPU."""
    fake_tensorrt.install(monkeypatch, "10.7.0", driver=12040, runtime=13000)
    with pytest.raises(BackendUnavailable, match=r"CUDA 12\.4, older than the CUDA 13\.0.*'cuda-python>=12,<13'"):
        get_backend("tensorrt")


def test_the_trt_extra_bounds_its_majors() -> None:
    """Defect 5: the [trt] extra pins the majors the backend was written against (cuda-python 12 and 13)."""
    tree = ast.parse((Path(__file__).parents[2] / "setup.py").read_text())
    extras = next(kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                  for kw in node.keywords if kw.arg == "extras_require")
    trt_extra = ast.literal_eval(extras)["trt"]
    specs = {Requirement(r).name: Requirement(r).specifier for r in trt_extra}
    assert "13.4" in specs["cuda-python"] and "12.9" in specs["cuda-python"] and "14.0" not in specs["cuda-python"]
    assert "11.4" in specs["tensorrt"] and "12.0" not in specs["tensorrt"]


# --- on a real GPU --------------------------------------------------------------------------------------


def _real_gpu() -> str | None:
    """Why there is no usable GPU here, or None when there is one."""
    from mdp_trt.latency.backends.cuda import import_cudart, require_gpu

    try:
        require_gpu(import_cudart())
    except BackendUnavailable as exc:
        return str(exc)
    return None


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_tensorrt_measures_models_and_probes(tmp_path: Path, precision: str) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt cuda-python)")
    reason = _real_gpu()
    if reason:
        pytest.skip(reason)
    backend = get_backend("tensorrt", db_path=tmp_path / "latency.sqlite")
    whole = backend.measure(_probe(), FAST, batch=1, precision=precision)
    layers = measure_probe(backend, _probe(), FAST, batch=1, precision=precision)
    assert 0 < whole.p10_ms <= whole.median_ms <= whole.p90_ms
    assert 0 < layers.median_ms <= whole.median_ms * 1.5  # reformats left out; profiler events cost a little
    io = backend.engine_io(backend.build(_probe(), 1, precision))
    assert {t["dtype"] for t in io} == {"FLOAT"}  # FP32 I/O in fp16 too, on 10 and 11
