"""TensorRT 10/11 backend: builds an engine per model and times it the way trtexec reports "GPU Compute Time".

`tensorrt` and `cuda-python` are imported only when the backend is created, never at package import.

What is measured:
- whole models (`measure`: benches, calibration, the closed loop): device-resident buffers bound with
  `set_tensor_address`, one `execute_async_v3` captured into a CUDA graph (run directly, with a warning,
  when TensorRT cannot be captured), replayed with two iterations in flight as trtexec does, each bracketed
  by CUDA events. The start event is recorded behind the previous iteration's work, so it fires when the
  GPU starts this one, and the sample holds no host launch latency. `open_timer` times two engines so in
  alternation (the closed loop's comparisons), the GPU drained between them.
- probes (`measure_probe`): the per-layer GPU times TensorRT's `IProfiler` reports for each run, summed
  without the reformat layers TensorRT adds at a lone layer's edges ("Reformatting CopyNode for Input
  Tensor 0 to ..." from FP32 linear to, say, FP16 channel-major): inside its model the layer is handed
  tensors in the format it wants and pays no such copies. The profiler is attached with
  `enqueue_emits_profile` False, so enqueue stays asynchronous and capturable, and `report_to_profiler`
  is called after each run.

Precision: FP32 layers may use TF32 (TensorRT's default, set explicitly so that a changed default cannot
move the numbers). fp16 sets `BuilderFlag.FP16` on TensorRT 10; TensorRT 11 builds strongly typed networks
only, so the ONNX graph is converted to FP16 first (`mdp_trt.latency.fp16`), keeping FP32 inputs and
outputs as TensorRT 10 does, so that engines of both versions take the same inputs and time the same
conversions. Probes are converted whole (FP16 I/O): a lone layer stands for one inside an FP16 graph.

Engines are built with our own thin code rather than Polygraphy's loaders: the calls are few and the same on
both majors, the fakes the tests run against cover exactly them, and the timing-cache handling Polygraphy
adds (an exclusive lock and `combine` with the cache on disk) is done here the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from latency_db import content_hash
from mdp_trt.errors import BackendUnavailable, InputError
from mdp_trt.io import atomic_path
from mdp_trt.latency.backends.base import check_precision, input_shapes
from mdp_trt.latency.backends.cuda import (
    INSTALL_HINT,
    check,
    device_properties,
    error_code,
    import_cudart,
    native_handle,
    require_gpu,
)
from mdp_trt.latency.measurement import Measurement
from mdp_trt.latency.protocol import MeasureProtocol, Timer

log = logging.getLogger(__name__)

SUPPORTED_MAJORS = (10, 11)
IN_FLIGHT = 2  # iterations kept enqueued while timing a whole model (trtexec's default depth)
# Layer names TensorRT gives the format conversions it inserts (trtexec --dumpProfile shows them).
REFORMAT_PREFIXES = ("Reformatting CopyNode for Input Tensor ", "Reformatting CopyNode for Output Tensor ")


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
    strongly_typed: bool  # network created with STRONGLY_TYPED (always so in TensorRT 11)
    fp16_flag: bool  # TensorRT 10: config.set_flag(BuilderFlag.FP16)
    convert_graph_fp16: bool  # TensorRT 11: the ONNX graph is converted to FP16 before parsing
    fp16_io: bool  # ... its inputs and outputs too (probes); False keeps them FP32 (whole models)
    tf32: bool  # BuilderFlag.TF32 set: FP32 layers may use TF32 math


def build_settings(trt_version: str, precision: str, *, fp16_io: bool = False) -> BuildSettings:
    """How to build for this TensorRT version and precision; `fp16_io` matters only for TensorRT 11 fp16."""
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
        fp16_io=fp16 and modern and fp16_io,
        tf32=True,
    )


def network_flags(trt: Any, settings: BuildSettings) -> int:
    """The `create_network` flags: STRONGLY_TYPED on TensorRT 11, as trtexec 11 passes it (deprecated there,
    since every network is strongly typed; explicit batch is implicit since 10)."""
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
    """The ONNX parser's errors as one line, each with the node and op it is about (`node_name` and
    `node_operator` exist on every TensorRT 10 and 11 parser error)."""
    errors = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        where = ", ".join(f"{label} {value}" for label, value in (("node", error.node_name()),
                                                                   ("op", error.node_operator())) if value)
        errors.append(f"{error.desc()} ({where})" if where else str(error.desc()))
    return "; ".join(errors) or "unknown error"


def is_reformat_layer(name: str) -> bool:
    """Whether a profiled layer is a format conversion TensorRT added, not part of the model."""
    return name.startswith(REFORMAT_PREFIXES)


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive access to `path` across processes, through `path`.lock as Polygraphy's `LockFile` does, so two
    builds saving the timing cache at once merge their entries instead of one dropping the other's. Where
    there are no POSIX locks (Windows) the merge itself still keeps what was on disk before."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class TensorRTBackend:
    """Builds each model with one reused `trt.Builder` and times it on GPU 0."""

    name = "tensorrt"

    def __init__(self, timing_cache: Path | None = None, engine_dir: Path | None = None) -> None:
        self._trt = import_tensorrt()
        self._cudart = import_cudart()
        require_gpu(self._cudart)
        self._logger = self._trt.Logger(self._trt.Logger.WARNING)
        self._builder = self._trt.Builder(self._logger)
        self._runtime = self._trt.Runtime(self._logger)
        self.engine_dir = engine_dir
        self.timing_cache = timing_cache
        # writes are atomic (os.replace), so reading needs no lock
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
            # whole models: trtexec's GPU compute time (two in flight, CUDA graph when capturable)
            "model_timing": "gpu_compute",
            # probes: IProfiler per-layer GPU times without TensorRT's reformat layers (see measure_probe)
            "probe_timing": "layers",
            "tf32": True,  # FP32 layers may use TF32, TensorRT's default
            "io": "fp32",  # whole models keep FP32 inputs and outputs, also in fp16 on TensorRT 11
            "estimate": False,
        }

    def build(self, model: onnx.ModelProto, batch: int, precision: str, *, fp16_io: bool = False) -> bytes:
        """A serialized engine for `model` at `batch` (cached on disk when `engine_dir` is set); `fp16_io`
        makes a TensorRT 11 fp16 engine's inputs and outputs FP16 too (probes)."""
        trt = self._trt
        settings = build_settings(self.version, precision, fp16_io=fp16_io)
        if settings.convert_graph_fp16:
            from mdp_trt.latency.fp16 import convert_to_fp16

            model = convert_to_fp16(model, keep_io_types=not settings.fp16_io)
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
        config = self._builder.create_builder_config()  # workspace: TensorRT's default, the device's memory
        if settings.tf32:
            config.set_flag(trt.BuilderFlag.TF32)
        if settings.fp16_flag:
            config.set_flag(trt.BuilderFlag.FP16)
        profile = self._builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = shapes[tensor.name]
            profile.set_shape(tensor.name, shape, shape, shape)
        if config.add_optimization_profile(profile) < 0:
            raise InputError(f"TensorRT refused the optimization profile for the input shapes {shapes}")
        self._attach_timing_cache(config)

        serialized = self._builder.build_serialized_network(network, config)
        if serialized is None:
            raise InputError("TensorRT failed to build an engine for the model (see its log above)")
        self._save_timing_cache(config)
        engine = bytes(serialized)
        if cached is not None:
            write_atomic(cached, engine)
        return engine

    def _attach_timing_cache(self, config: Any) -> None:
        """Attach the cache read from disk; one TensorRT cannot use (written by another TensorRT or GPU, or
        damaged) is replaced by an empty one, with a warning, and if even that fails the build runs without."""
        if self._cache_bytes:
            cache = config.create_timing_cache(self._cache_bytes)
            if cache is not None and config.set_timing_cache(cache, False):
                return
            log.warning("TensorRT cannot use the timing cache %s; starting an empty one", self.timing_cache)
            self._cache_bytes = b""
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, False):
            log.warning("TensorRT could not attach a timing cache; building without one")

    def _save_timing_cache(self, config: Any) -> None:
        """Merge what is on disk into this build's cache under the lock, then write it: another process may
        have saved since this one read the file. Unlike Polygraphy (whose cache path may be shared across GPUs)
        a mismatched header is not merged: the path is this GPU's, so such a file is not ours to mix in."""
        cache = config.get_timing_cache()
        if cache is None:  # none attached (see _attach_timing_cache)
            return
        if self.timing_cache is None:
            self._cache_bytes = bytes(cache.serialize())
            return
        with file_lock(self.timing_cache):
            on_disk = self.timing_cache.read_bytes() if self.timing_cache.exists() else b""
            if on_disk:
                previous = config.create_timing_cache(on_disk)
                if previous is None or not cache.combine(previous, False):
                    log.warning("could not merge the timing cache %s into this build's", self.timing_cache)
            data = bytes(cache.serialize())
            if data != on_disk:
                write_atomic(self.timing_cache, data)
        self._cache_bytes = data

    def engine_io(self, engine: bytes) -> list[dict[str, Any]]:
        """Name, direction, TensorRT data type and shape of each input and output of a serialized engine: the
        contract a deployment feeds it by."""
        trt_engine = self._runtime.deserialize_cuda_engine(engine)
        if trt_engine is None:
            raise InputError("TensorRT could not deserialize the engine")
        tensors = []
        for i in range(trt_engine.num_io_tensors):
            name = trt_engine.get_tensor_name(i)
            tensors.append({
                "name": name,
                "mode": trt_engine.get_tensor_mode(name).name.lower(),
                "dtype": trt_engine.get_tensor_dtype(name).name,
                "shape": [int(d) for d in trt_engine.get_tensor_shape(name)],
            })
        return tensors

    def measure(
        self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1, precision: str = "fp32"
    ) -> Measurement:
        """The whole model's GPU compute time per run (see the module docstring)."""
        engine = self.build(model, batch, precision)
        with EngineRunner(self._trt, self._cudart, self._runtime, engine, input_shapes(model, batch)) as runner:
            return protocol.run(runner.gpu_compute_ms)

    @contextlib.contextmanager
    def open_timer(self, model: onnx.ModelProto, *, batch: int = 1, precision: str = "fp32") -> Iterator[Timer]:
        """An engine for `model` held loaded, timed as `measure` times it, with the GPU left idle after each
        call (`EngineRunner.drain`): two engines on their own streams would otherwise overlap on the GPU when
        they are timed in alternation (`base.measure_interleaved`). The first sample of each call starts on
        an idle stream, so it includes the launch and is dropped, as `measure`'s warm-up drops it."""
        engine = self.build(model, batch, precision)
        with EngineRunner(self._trt, self._cudart, self._runtime, engine, input_shapes(model, batch)) as runner:

            def timed(runs: int) -> list[float]:
                samples = [runner.gpu_compute_ms() for _ in range(runs + 1)][1:]
                runner.drain()
                return samples

            yield timed

    def measure_probe(
        self, model: onnx.ModelProto, protocol: MeasureProtocol, *, batch: int = 1, precision: str = "fp32"
    ) -> Measurement:
        """A probe's latency as its layer costs inside a whole model: per run, the summed per-layer GPU times
        without TensorRT's reformat layers (see the module docstring)."""
        engine = self.build(model, batch, precision, fp16_io=True)
        shapes = input_shapes(model, batch)
        with EngineRunner(self._trt, self._cudart, self._runtime, engine, shapes, profile_layers=True) as runner:
            return protocol.run(runner.layer_ms)


def _layer_profiler(trt: Any) -> Any:
    """An `IProfiler` that sums the layer times of one report, reformat layers left out."""

    class LayerTimes(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)  # pybind11 needs the base initialised
            self.reset()

        def reset(self) -> None:
            self.total_ms = 0.0
            self.layers = 0

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.layers += 1
            if not is_reformat_layer(layer_name):
                self.total_ms += float(ms)

    return LayerTimes()


class EngineRunner:
    """One deserialized engine with device buffers on its own stream, timed as trtexec times it.

    A context manager: every CUDA resource it made is released on exit, and also when setting it up fails
    half-way (the error then propagates).
    """

    def __init__(
        self, trt: Any, cudart: Any, runtime: Any, engine_bytes: bytes, shapes: dict[str, tuple[int, ...]],
        *, profile_layers: bool = False,
    ) -> None:
        self._cudart = cudart
        self._stream: Any = None
        self._events: list[Any] = []
        self._buffers: list[int] = []
        self._graph_exec: Any = None
        self._profiler: Any = None
        self._pending: deque[tuple[Any, Any]] = deque()
        self._next = 0
        try:
            self._setup(trt, runtime, engine_bytes, shapes, profile_layers)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> EngineRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self, trt: Any, runtime: Any, engine_bytes: bytes, shapes: dict[str, tuple[int, ...]],
               profile_layers: bool) -> None:
        cudart = self._cudart
        self._engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise InputError("TensorRT could not deserialize the engine")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise InputError("TensorRT could not create an execution context (out of GPU memory?)")
        self._stream = check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._stream_handle = native_handle(self._stream)
        for _ in range(2 * IN_FLIGHT):
            self._events.append(check(cudart.cudaEventCreate(), "cudaEventCreate"))
        self._slots = [tuple(self._events[2 * i : 2 * i + 2]) for i in range(IN_FLIGHT)]
        engine, context = self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            if not context.set_input_shape(name, shapes[name]):
                raise InputError(f"TensorRT refused the shape {shapes[name]} for input '{name}'")
        rng = np.random.default_rng(0)
        for name in names:
            shape = tuple(context.get_tensor_shape(name))
            trt_type = engine.get_tensor_dtype(name)
            try:
                dtype = np.dtype(trt.nptype(trt_type))
            except TypeError:
                raise InputError(f"tensor '{name}' is {trt_type.name}, which mdp-trt cannot feed") from None
            ptr = check(cudart.cudaMalloc(max(1, math.prod(shape) * dtype.itemsize)), "cudaMalloc")
            self._buffers.append(ptr)
            if name in inputs:
                host = np.ascontiguousarray(rng.standard_normal(shape).astype(dtype))
                kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                check(cudart.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, kind), "cudaMemcpy")
            if not context.set_tensor_address(name, int(ptr)):
                raise InputError(f"TensorRT refused the device buffer of tensor '{name}'")
        if profile_layers:
            self._profiler = _layer_profiler(trt)
            context.profiler = self._profiler
            context.enqueue_emits_profile = False  # else enqueue is synchronous and cannot be captured
        self._execute()  # TensorRT does lazy setup on the first enqueue; it must not be captured
        check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        if profile_layers:
            self._report()  # the warm-up run's layer times, dropped
        self._capture()

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream_handle):
            raise InputError("TensorRT execute_async_v3 failed (see its log above)")

    def _capture(self) -> None:
        """Capture one enqueue into a CUDA graph. TensorRT cannot capture some engines (weight streaming, ops
        not permitted under capture): then enqueue returns False or the capture ends invalidated, and the
        engine runs without a graph, as trtexec does, after clearing the CUDA error."""
        cudart = self._cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        enqueued = self._context.execute_async_v3(self._stream_handle)
        err, graph = cudart.cudaStreamEndCapture(self._stream)
        captured = enqueued and error_code(err) == 0
        if captured:
            err, graph_exec = cudart.cudaGraphInstantiate(graph, 0)
            captured = error_code(err) == 0
            if captured:
                self._graph_exec = graph_exec
        if graph is not None:  # the instantiated graph does not need it; a failed capture's is unusable
            cudart.cudaGraphDestroy(graph)
        if not captured:
            cudart.cudaGetLastError()  # clear the capture's error so later calls do not report it
            log.warning("TensorRT could not run this engine in a CUDA graph; timing it without one")

    def _launch(self) -> None:
        if self._graph_exec is not None:
            check(self._cudart.cudaGraphLaunch(self._graph_exec, self._stream), "cudaGraphLaunch")
        else:
            self._execute()

    def gpu_compute_ms(self) -> float:
        """One sample of GPU compute time (ms), trtexec's way: IN_FLIGHT iterations stay enqueued, so each
        one's start event fires when the one before it ends. The first sample (a warm-up) starts idle."""
        cudart = self._cudart
        while len(self._pending) < IN_FLIGHT:
            start, end = self._slots[self._next]
            self._next = (self._next + 1) % IN_FLIGHT
            check(cudart.cudaEventRecord(start, self._stream), "cudaEventRecord")
            self._launch()
            check(cudart.cudaEventRecord(end, self._stream), "cudaEventRecord")
            self._pending.append((start, end))
        start, end = self._pending.popleft()
        check(cudart.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(check(cudart.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def drain(self) -> None:
        """Wait for the iterations still in flight and forget them, leaving the GPU to whatever runs next."""
        check(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        self._pending.clear()

    def layer_ms(self) -> float:
        """One sample of a probe's own time (ms): its layers' GPU times in one run, reformat layers left out.
        Runs go one at a time (`report_to_profiler` reports the previous launch), which costs nothing:
        TensorRT times layers between its own events on the GPU, so host latency never enters them."""
        self._launch()
        check(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return self._report()

    def _report(self) -> float:
        self._profiler.reset()
        if not self._context.report_to_profiler():
            raise InputError("TensorRT could not report per-layer times (report_to_profiler failed)")
        if self._profiler.layers == 0:
            raise InputError("TensorRT reported no layer times for the probe")
        return float(self._profiler.total_ms)

    def close(self) -> None:
        """Release everything; safe on a half-made runner and when called twice. Errors are not raised here:
        they would hide the one that got us here."""
        cudart = self._cudart
        if self._stream is not None:
            cudart.cudaStreamSynchronize(self._stream)  # iterations still in flight use the buffers
        if self._graph_exec is not None:
            cudart.cudaGraphExecDestroy(self._graph_exec)
        for ptr in self._buffers:
            cudart.cudaFree(ptr)
        for event in self._events:
            cudart.cudaEventDestroy(event)
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._stream = self._graph_exec = None
        self._buffers, self._events = [], []
        self._pending.clear()
        self._context = self._engine = None
