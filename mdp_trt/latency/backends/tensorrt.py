"""TensorRT 10/11 backend: builds an engine per model and reports the median GPU compute time.

`tensorrt` and `cuda-python` are imported only when the backend is created, never at package import.
Timing follows trtexec's "GPU Compute Time": device-resident buffers bound with `set_tensor_address`,
one `execute_async_v3` captured into a CUDA graph and replayed, each replay bracketed by CUDA events.

Precision: TensorRT 10 takes `BuilderFlag.FP16`; TensorRT 11 builds strongly typed networks only, so
the ONNX graph itself is converted to FP16 first (`mdp_trt.latency.fp16`). The pure-Python parts
(version detection, build settings, cache paths and keys, result parsing) are separate functions so
they are tested on machines without TensorRT.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from latency_db import content_hash
from mdp_trt.errors import BackendUnavailable, InputError
from mdp_trt.io import atomic_path
from mdp_trt.latency.backends.base import check_precision, input_shapes
from mdp_trt.latency.backends.cuda import INSTALL_HINT, check, device_properties, import_cudart, require_gpu
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.protocol import MeasureProtocol

SUPPORTED_MAJORS = (10, 11)
DEFAULT_WORKSPACE_MB = 2048


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"TensorRT is not installed: {INSTALL_HINT}") from exc
    return trt


def trt_major(version: str) -> int:
    """Major version from a version string such as '10.7.0.post1' or '11.0.0'."""
    head = version.strip().split(".", 1)[0]
    if not head.isdigit():
        raise BackendUnavailable(f"cannot read the TensorRT version {version!r}")
    return int(head)


@dataclass(frozen=True)
class BuildSettings:
    """Everything about an engine build that changes the engine (and so belongs in its key)."""

    trt_version: str
    precision: str
    strongly_typed: bool  # network created with STRONGLY_TYPED (always on in TensorRT 11)
    fp16_flag: bool  # TensorRT 10: config.set_flag(BuilderFlag.FP16)
    convert_graph_fp16: bool  # TensorRT 11: the ONNX graph is converted to FP16 before parsing
    workspace_bytes: int


def build_settings(
    trt_version: str, precision: str, workspace_mb: int = DEFAULT_WORKSPACE_MB
) -> BuildSettings:
    """How to build for this TensorRT version and precision."""
    check_precision(precision)
    major = trt_major(trt_version)
    if major not in SUPPORTED_MAJORS:
        raise BackendUnavailable(
            f"TensorRT {trt_version} is not supported (need 10.x or 11.x): pip install 'tensorrt>=10,<12'"
        )
    fp16 = precision == "fp16"
    modern = major >= 11
    return BuildSettings(
        trt_version=trt_version,
        precision=precision,
        strongly_typed=modern,
        fp16_flag=fp16 and not modern,
        convert_graph_fp16=fp16 and modern,
        workspace_bytes=workspace_mb * 1024 * 1024,
    )


def network_flags(trt: Any, settings: BuildSettings) -> int:
    """The `create_network` flags: STRONGLY_TYPED on TensorRT 11 (explicit batch is implicit since 10)."""
    if settings.strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def engine_key(
    model_bytes: bytes, settings: BuildSettings, shapes: dict[str, tuple[int, ...]], device: dict[str, Any]
) -> str:
    """Identifies a built engine: same model, shapes, settings and device give the same engine."""
    return content_hash(
        {
            "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
            "settings": asdict(settings),
            "shapes": {name: list(shape) for name, shape in sorted(shapes.items())},
            "device": device,
        }
    )


def timing_cache_path(db_path: Path, device: dict[str, Any], trt_version: str) -> Path:
    """The persistent timing cache next to the database, one per device and TensorRT version."""
    tag = content_hash({"device": device, "trt": trt_version})[:16]
    return db_path.with_name(f"{db_path.stem}.trt-{tag}.timing-cache")


def parser_errors(parser: Any) -> str:
    """The ONNX parser's errors as one line."""
    return "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors)) or "unknown error"


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


class TensorRTBackend:
    """Builds each model with one reused `trt.Builder` and times it on GPU 0."""

    name = "tensorrt"

    def __init__(
        self,
        timing_cache: Path | None = None,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        engine_dir: Path | None = None,
    ) -> None:
        self._trt = import_tensorrt()
        self._cudart = import_cudart()
        require_gpu(self._cudart)
        self._logger = self._trt.Logger(self._trt.Logger.WARNING)
        self._builder = self._trt.Builder(self._logger)
        self._runtime = self._trt.Runtime(self._logger)
        self.workspace_mb = workspace_mb
        self.engine_dir = engine_dir
        self.timing_cache = timing_cache
        self._cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
        self._device = device_properties(0)

    @property
    def version(self) -> str:
        return str(self._trt.__version__)

    def device(self) -> dict[str, Any]:
        """Name, compute capability, driver and runtime versions of the GPU in use."""
        return dict(self._device)

    def fingerprint(self, batch: int, precision: str) -> dict[str, Any]:
        check_precision(precision)
        return {
            "backend": "tensorrt",
            "backend_version": self.version,
            "device": self.device(),
            "precision": precision,
            "threads": 0,
            "batch": batch,
            "estimate": False,
        }

    def build(self, model: onnx.ModelProto, batch: int, precision: str) -> bytes:
        """A serialized engine for `model` at `batch` (cached on disk when `engine_dir` is set)."""
        trt = self._trt
        settings = build_settings(self.version, precision, self.workspace_mb)
        if settings.convert_graph_fp16:
            from mdp_trt.latency.fp16 import convert_to_fp16

            model = convert_to_fp16(model)
        model_bytes = model.SerializeToString()
        shapes = input_shapes(model, batch)
        cached = None
        if self.engine_dir is not None:
            cached = self.engine_dir / f"{engine_key(model_bytes, settings, shapes, self.device())}.engine"
            if cached.exists():
                return cached.read_bytes()

        network = self._builder.create_network(network_flags(trt, settings))
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(model_bytes):
            raise InputError(f"TensorRT cannot parse the model: {parser_errors(parser)}")
        config = self._builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
        if settings.fp16_flag:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = self._builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = shapes[tensor.name]
            profile.set_shape(tensor.name, shape, shape, shape)
        config.add_optimization_profile(profile)
        config.set_timing_cache(config.create_timing_cache(self._cache_bytes), False)

        serialized = self._builder.build_serialized_network(network, config)
        if serialized is None:
            raise InputError("TensorRT failed to build an engine for the model (see its log above)")
        self._save_timing_cache(config.get_timing_cache())
        engine = bytes(serialized)
        if cached is not None:
            write_atomic(cached, engine)
        return engine

    def _save_timing_cache(self, cache: Any) -> None:
        data = bytes(cache.serialize())
        if data != self._cache_bytes:
            self._cache_bytes = data
            if self.timing_cache is not None:
                write_atomic(self.timing_cache, data)

    def measure(
        self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1, precision: str = "fp32"
    ) -> Measurement:
        engine = self.build(model, batch, precision)
        runner = EngineRunner(self._trt, self._cudart, self._runtime, engine, input_shapes(model, batch))
        try:
            return protocol.run(runner.run_once)
        finally:
            runner.close()


class EngineRunner:
    """One deserialized engine with device buffers, replayed through a CUDA graph and timed by events."""

    def __init__(
        self, trt: Any, cudart: Any, runtime: Any, engine_bytes: bytes, shapes: dict[str, tuple[int, ...]]
    ) -> None:
        self._cudart = cudart
        self._buffers: list[Any] = []
        self._graph = self._graph_exec = None
        self._engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise InputError("TensorRT could not deserialize the engine")
        self._context = self._engine.create_execution_context()
        self._stream = check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._start = check(cudart.cudaEventCreate(), "cudaEventCreate")
        self._end = check(cudart.cudaEventCreate(), "cudaEventCreate")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            self._context.set_input_shape(name, shapes[name])
        rng = np.random.default_rng(0)
        for name in names:
            shape = tuple(self._context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            nbytes = max(1, math.prod(shape) * dtype.itemsize)
            ptr = check(cudart.cudaMalloc(nbytes), "cudaMalloc")
            self._buffers.append(ptr)
            if name in inputs:
                host = np.ascontiguousarray(rng.standard_normal(shape).astype(dtype))
                check(
                    cudart.cudaMemcpy(
                        ptr, host.ctypes.data, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                    ),
                    "cudaMemcpy",
                )
            self._context.set_tensor_address(name, int(ptr))
        self._execute()  # TensorRT does lazy setup on the first enqueue; it must not be captured
        check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        self._capture()

    def _execute(self) -> None:
        if not self._context.execute_async_v3(int(self._stream)):
            raise InputError("TensorRT execute_async_v3 failed")

    def _capture(self) -> None:
        """Capture one enqueue into a CUDA graph; engines that cannot be captured run directly."""
        cudart = self._cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        try:
            self._execute()
        finally:
            graph = check(cudart.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        self._graph = graph
        try:
            self._graph_exec = check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        except Exception:  # e.g. layers with host callbacks: fall back to plain enqueue
            self._graph_exec = None

    def run_once(self) -> float:
        """GPU time of one inference in milliseconds, measured between two events on the stream."""
        cudart = self._cudart
        check(cudart.cudaEventRecord(self._start, self._stream), "cudaEventRecord")
        if self._graph_exec is not None:
            check(cudart.cudaGraphLaunch(self._graph_exec, self._stream), "cudaGraphLaunch")
        else:
            self._execute()
        check(cudart.cudaEventRecord(self._end, self._stream), "cudaEventRecord")
        check(cudart.cudaEventSynchronize(self._end), "cudaEventSynchronize")
        return float(check(cudart.cudaEventElapsedTime(self._start, self._end), "cudaEventElapsedTime"))

    def close(self) -> None:
        cudart = self._cudart
        if self._graph_exec is not None:
            cudart.cudaGraphExecDestroy(self._graph_exec)
        if self._graph is not None:
            cudart.cudaGraphDestroy(self._graph)
        for ptr in self._buffers:
            cudart.cudaFree(ptr)
        cudart.cudaEventDestroy(self._start)
        cudart.cudaEventDestroy(self._end)
        cudart.cudaStreamDestroy(self._stream)
