"""Fake `tensorrt` and cuda-python modules that behave like the real ones wherever the backend touches them.

TensorRT cannot run here, so the backend is tested against these fakes; they follow what TensorRT's and
cuda-python's sources document, failures included, so that code passing here handles what the real
libraries do. Read at NVIDIA/TensorRT tags v10.0.0, v10.16, v11.0 and v11.1:

Enum values (C++ headers; Python names from python/src/infer/pyCore.cpp and pyFoundationalTypes.cpp):
- TensorIOMode NONE=0, INPUT=1, OUTPUT=2 (include/NvInferRuntime.h, all four tags).
- DataType FLOAT=0, HALF=1, INT8=2, INT32=3, BOOL=4, UINT8=5, FP8=6, BF16=7, INT64=8, INT4=9; FP4=10 from
  10.8, E8M0=11 from 10.12 (include/NvInferRuntimeBase.h at v10.0.0, v10.8.0, v10.12.0, v10.16, v11.x).
- NetworkDefinitionCreationFlag: 10.x EXPLICIT_BATCH=0 (deprecated, ignored), STRONGLY_TYPED=1; 11.x
  STRONGLY_TYPED=0 (deprecated and ignored: networks are always strongly typed), PREFER_JIT_PYTHON_PLUGINS=1,
  PREFER_AOT_PYTHON_PLUGINS=2 (include/NvInfer.h). trtexec 11.1 still passes `1 << STRONGLY_TYPED`.
- BuilderFlag: FP16=0 on 10.x only (deprecated in 10.16, gone in 11.0); TF32=6 on all, "Enabled by default"
  (include/NvInfer.h).
- MemoryPoolType WORKSPACE=0 (NvInfer.h); its default limit is the device's memory (trtexec sets one only when
  asked). Logger.Severity INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4 (NvInferRuntimeBase.h).

Return values (pyCore.cpp binds the C++ methods, so their failure returns reach Python unchanged):
- bool: IExecutionContext.set_input_shape, set_tensor_address, execute_async_v3, report_to_profiler;
  IBuilderConfig.set_timing_cache (False on a device mismatch unless ignore_mismatch); ITimingCache.combine
  (False for a cache of another TensorRT version); OnnxParser.parse.
- int: IBuilderConfig.add_optimization_profile, -1 for an invalid profile.
- None for a null pointer: Builder.build_serialized_network, Runtime.deserialize_cuda_engine (also for an
  engine of another TensorRT version), IBuilderConfig.get_timing_cache (no cache attached) and
  create_timing_cache (data it cannot read).
- IOptimizationProfile.set_shape raises RuntimeError on shapes inconsistent with each other.
- execute_async_v3 and set_tensor_address take `size_t`: pybind11 accepts an int (or `__index__`), not an
  object with only `__int__` (a TypeError).

Profiling (NvInferRuntime.h, IExecutionContext::setEnqueueEmitsProfile and reportToProfiler):
- with a profiler attached and `enqueue_emits_profile` True (the default) enqueue is synchronous and reports
  by itself, which a stream capture cannot hold (enqueue fails and the capture is invalidated); set to False,
  enqueue stays asynchronous, a graph captured from the context records the same events, and
  `report_to_profiler()` reports the previous launch (False without a profiler or while capturing).
- an IProfiler subclass must call `IProfiler.__init__` (pybind11 trampoline); TensorRT calls
  `report_layer_time(layer_name, ms)` once per layer.
- TensorRT names the reformat layers it adds "Reformatting CopyNode for Input Tensor i to <layer>" and
  "Reformatting CopyNode for Output Tensor i to <layer>" (trtexec --dumpProfile output).
- an engine whose enqueue cannot be captured (weight streaming) returns False from execute_async_v3 under
  capture and invalidates it; cudaStreamEndCapture then returns cudaErrorStreamCaptureInvalidated, which
  trtexec clears with cudaGetLastError (samples/common/sampleDevice.h, TrtCudaGraph::endCaptureOnError).
- IParserError: desc(), node(), node_name(), node_operator() (python/src/parsers/pyOnnx.cpp, 10.0 to 11.1).
- tensorrt.nptype (python/packaging/bindings_wheel/tensorrt/__init__.py): TypeError without a numpy type.

cuda-python (`cuda.bindings.runtime`, 12.x and 13.x): every call returns `(cudaError_t, *values)`; error values
are the CUDA runtime's (cudaSuccess=0, cudaErrorInvalidValue=1, cudaErrorMemoryAllocation=2,
cudaErrorInsufficientDriver=35, cudaErrorNoDevice=100, cudaErrorInvalidResourceHandle=400,
cudaErrorNotReady=600, cudaErrorStreamCaptureUnsupported=900, cudaErrorStreamCaptureInvalidated=901).
cuda-bindings 13.0 (and 12.9) deprecate `int(handle)` for `cuda.bindings.utils.get_cuda_native_handle`: the
fake handles warn on `int()`.

Time: the fake GPU keeps a timeline. Each runtime call costs the host API_MS and each launch (graph or
enqueue) LAUNCH_MS; work on a stream starts once the host has submitted it and the stream's earlier work is
done, and an event completes when the work before it does. A timing loop that leaves the GPU idle between
iterations therefore measures launch latency too, as it would on a real GPU.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

API_MS = 0.002  # host time of one CUDA runtime call
LAUNCH_MS = 0.05  # host time of one graph launch or TensorRT enqueue
DEVICE = "Fake GPU 8.6"
ENGINE_MAGIC = b"FAKE-TRT-ENGINE"
CACHE_MAGIC = b"FAKE-TRT-TIMING-CACHE"


class PybindEnum(enum.Enum):
    """Like a pybind11 enum: `.name`, `.value`, `int()`, and unequal to plain ints."""

    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return int(self.value)


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidResourceHandle = 400
    cudaErrorNotReady = 600
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901


OK = cudaError_t.cudaSuccess


class Handle:
    """A cuda-python handle: `int()` gives its address, deprecated since cuda-bindings 13."""

    def __init__(self, address: int) -> None:
        self.address = address

    def __int__(self) -> int:
        warnings.warn("int(cuda_obj) is deprecated; use cuda.bindings.utils.get_cuda_native_handle()",
                      DeprecationWarning, stacklevel=2)
        return self.address


class cudaStream_t(Handle):
    def __init__(self, address: int) -> None:
        super().__init__(address)
        self.tail = 0.0  # when the work queued so far is done (ms on the fake clock)
        self.capturing = False
        self.invalidated = False
        self.captured: list[tuple[str, Any]] = []


class cudaEvent_t(Handle):
    def __init__(self, address: int) -> None:
        super().__init__(address)
        self.ts: float | None = None  # completion time of its last record


class cudaGraph_t(Handle):
    def __init__(self, address: int, ops: list[tuple[str, Any]]) -> None:
        super().__init__(address)
        self.ops = ops


class cudaGraphExec_t(cudaGraph_t):
    pass


@dataclass
class Work:
    """One enqueue of an engine: its layers in order, and the context that reports them when profiled."""

    layers: list[tuple[str, float]]
    context: Any
    profiled: bool


class FakeCudart(types.ModuleType):
    """`cuda.bindings.runtime` on a fake GPU timeline (see the module docstring)."""

    def __init__(self, devices: int = 1, driver: int = 12040, runtime: int = 12040) -> None:
        super().__init__("cuda.bindings.runtime")
        self.devices, self.driver, self.runtime = devices, driver, runtime
        self.host = 0.0
        self.calls: list[str] = []
        self.last_error = OK
        self.instantiate_error = OK  # set to make cudaGraphInstantiate fail
        self.malloc_budget: int | None = None  # allocations that succeed before cudaErrorMemoryAllocation
        self.live: dict[str, set[int]] = {k: set() for k in ("memory", "stream", "event", "graph", "graph_exec")}
        self.streams: dict[int, cudaStream_t] = {}
        self._addresses = itertools.count(0x7F0000001000, 0x1000)
        self.cudaError_t = cudaError_t
        self.cudaStream_t, self.cudaEvent_t, self.cudaGraph_t = cudaStream_t, cudaEvent_t, cudaGraph_t
        self.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1)
        self.cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeGlobal=0,
                                                           cudaStreamCaptureModeThreadLocal=1)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        self.host += API_MS

    def _error(self, err: cudaError_t, *values: Any) -> tuple[Any, ...]:
        self.last_error = err
        return (err, *values)

    # devices
    def cudaGetDeviceCount(self) -> tuple[Any, int]:
        self._call("cudaGetDeviceCount")
        if self.driver < self.runtime:
            return self._error(cudaError_t.cudaErrorInsufficientDriver, 0)
        if self.devices == 0:
            return self._error(cudaError_t.cudaErrorNoDevice, 0)
        return OK, self.devices

    def cudaGetDeviceProperties(self, device: int) -> tuple[Any, Any]:
        self._call("cudaGetDeviceProperties")
        return OK, types.SimpleNamespace(name=b"Fake GPU\x00", major=8, minor=6)

    def cudaDriverGetVersion(self) -> tuple[Any, int]:
        self._call("cudaDriverGetVersion")
        return OK, self.driver

    def cudaRuntimeGetVersion(self) -> tuple[Any, int]:
        self._call("cudaRuntimeGetVersion")
        return OK, self.runtime

    def cudaGetLastError(self) -> tuple[Any]:
        self._call("cudaGetLastError")
        err, self.last_error = self.last_error, OK
        return (err,)

    # memory
    def cudaMalloc(self, size: int) -> tuple[Any, int]:
        self._call("cudaMalloc")
        if self.malloc_budget is not None:
            if self.malloc_budget == 0:
                return self._error(cudaError_t.cudaErrorMemoryAllocation, 0)
            self.malloc_budget -= 1
        ptr = next(self._addresses)
        self.live["memory"].add(ptr)
        return OK, ptr

    def cudaFree(self, ptr: int) -> tuple[Any]:
        self._call("cudaFree")
        if ptr not in self.live["memory"]:
            return self._error(cudaError_t.cudaErrorInvalidValue)
        self.live["memory"].discard(ptr)
        return (OK,)

    def cudaMemcpy(self, dst: int, src: int, count: int, kind: Any) -> tuple[Any]:
        self._call("cudaMemcpy")
        if not isinstance(dst, int) or dst not in self.live["memory"]:
            return self._error(cudaError_t.cudaErrorInvalidValue)
        return (OK,)

    # streams and events
    def cudaStreamCreate(self) -> tuple[Any, cudaStream_t]:
        self._call("cudaStreamCreate")
        stream = cudaStream_t(next(self._addresses))
        self.streams[stream.address] = stream
        self.live["stream"].add(stream.address)
        return OK, stream

    def cudaStreamDestroy(self, stream: cudaStream_t) -> tuple[Any]:
        self._call("cudaStreamDestroy")
        self.live["stream"].discard(stream.address)
        return (OK,)

    def cudaStreamSynchronize(self, stream: cudaStream_t) -> tuple[Any]:
        self._call("cudaStreamSynchronize")
        if stream.capturing:  # not allowed while capturing: the capture is invalidated
            stream.invalidated = True
            return self._error(cudaError_t.cudaErrorStreamCaptureUnsupported)
        self.host = max(self.host, stream.tail)
        return (OK,)

    def cudaEventCreate(self) -> tuple[Any, cudaEvent_t]:
        self._call("cudaEventCreate")
        event = cudaEvent_t(next(self._addresses))
        self.live["event"].add(event.address)
        return OK, event

    def cudaEventDestroy(self, event: cudaEvent_t) -> tuple[Any]:
        self._call("cudaEventDestroy")
        self.live["event"].discard(event.address)
        return (OK,)

    def cudaEventRecord(self, event: cudaEvent_t, stream: cudaStream_t) -> tuple[Any]:
        self._call("cudaEventRecord")
        if stream.capturing:
            stream.captured.append(("event", event))
        else:
            self._record(event, stream)
        return (OK,)

    def _record(self, event: cudaEvent_t, stream: cudaStream_t) -> None:
        event.ts = max(self.host, stream.tail)
        stream.tail = event.ts

    def cudaEventSynchronize(self, event: cudaEvent_t) -> tuple[Any]:
        self._call("cudaEventSynchronize")
        if event.ts is not None:
            self.host = max(self.host, event.ts)
        return (OK,)

    def cudaEventElapsedTime(self, start: cudaEvent_t, end: cudaEvent_t) -> tuple[Any, float]:
        self._call("cudaEventElapsedTime")
        if start.ts is None or end.ts is None:
            return self._error(cudaError_t.cudaErrorInvalidResourceHandle, 0.0)
        if self.host < max(start.ts, end.ts):
            return self._error(cudaError_t.cudaErrorNotReady, 0.0)
        return OK, end.ts - start.ts

    # graphs
    def cudaStreamBeginCapture(self, stream: cudaStream_t, mode: Any) -> tuple[Any]:
        self._call("cudaStreamBeginCapture")
        stream.capturing, stream.invalidated, stream.captured = True, False, []
        return (OK,)

    def cudaStreamEndCapture(self, stream: cudaStream_t) -> tuple[Any, cudaGraph_t | None]:
        self._call("cudaStreamEndCapture")
        stream.capturing = False
        if stream.invalidated:
            return self._error(cudaError_t.cudaErrorStreamCaptureInvalidated, None)
        graph = cudaGraph_t(next(self._addresses), list(stream.captured))
        self.live["graph"].add(graph.address)
        return OK, graph

    def cudaGraphInstantiate(self, graph: cudaGraph_t, flags: int) -> tuple[Any, cudaGraphExec_t | None]:
        self._call("cudaGraphInstantiate")
        if self.instantiate_error != OK:
            return self._error(self.instantiate_error, None)
        graph_exec = cudaGraphExec_t(next(self._addresses), list(graph.ops))
        self.live["graph_exec"].add(graph_exec.address)
        return OK, graph_exec

    def cudaGraphDestroy(self, graph: cudaGraph_t) -> tuple[Any]:
        self._call("cudaGraphDestroy")
        self.live["graph"].discard(graph.address)
        return (OK,)

    def cudaGraphExecDestroy(self, graph_exec: cudaGraphExec_t) -> tuple[Any]:
        self._call("cudaGraphExecDestroy")
        self.live["graph_exec"].discard(graph_exec.address)
        return (OK,)

    def cudaGraphLaunch(self, graph_exec: cudaGraphExec_t, stream: cudaStream_t) -> tuple[Any]:
        self._call("cudaGraphLaunch")
        if graph_exec.address not in self.live["graph_exec"]:
            return self._error(cudaError_t.cudaErrorInvalidResourceHandle)
        self.host += LAUNCH_MS
        for kind, op in graph_exec.ops:
            if kind == "event":
                self._record(op, stream)
            else:
                self.execute(op, stream)
        return (OK,)

    def execute(self, work: Work, stream: cudaStream_t) -> float:
        """Run `work` on `stream` after what is queued there; returns when it ends."""
        start = max(self.host, stream.tail)
        stream.tail = start + sum(ms for _, ms in work.layers)
        if work.profiled:
            work.context.last_run = (work.layers, stream.tail)
        return stream.tail

    def unreleased(self) -> dict[str, set[int]]:
        """Everything allocated and not yet released."""
        return {kind: set(items) for kind, items in self.live.items() if items}


def fake_utils() -> types.ModuleType:
    utils = types.ModuleType("cuda.bindings.utils")

    def get_cuda_native_handle(obj: Any) -> int:
        if not isinstance(obj, Handle):
            raise TypeError(f"Unknown type: {type(obj)}")
        return obj.address

    utils.get_cuda_native_handle = get_cuda_native_handle  # type: ignore[attr-defined]
    return utils


@dataclass
class Knobs:
    """What the fake TensorRT builds: per-layer GPU times and the failures it can be asked to show."""

    compute_ms: float = 1.0  # the model's own layers (all fused into one)
    reformat_ms: float = 0.25  # each reformat layer at an input or output; 0 adds none
    capturable: bool = True  # False: enqueue cannot be captured into a CUDA graph (weight streaming)
    build_fails: bool = False  # build_serialized_network returns None
    built: list[dict[str, Any]] = field(default_factory=list)  # one record per engine built


_ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 16: "BF16", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8"}
_NPTYPE = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
           "BOOL": np.bool_, "UINT8": np.uint8}


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.strip().split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def fake_tensorrt(version: str, rt: FakeCudart) -> types.ModuleType:
    """A `tensorrt` module of `version` whose engines run on `rt`'s fake GPU."""
    major, minor = _major_minor(version)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    knobs = trt.fake = Knobs()  # type: ignore[attr-defined]

    types_ = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5, "FP8": 6, "BF16": 7,
              "INT64": 8, "INT4": 9}
    if (major, minor) >= (10, 8):
        types_["FP4"] = 10
    if (major, minor) >= (10, 12):
        types_["E8M0"] = 11
    DataType = PybindEnum("DataType", types_)
    TensorIOMode = PybindEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    MemoryPoolType = PybindEnum("MemoryPoolType", {"WORKSPACE": 0})
    if major >= 11:
        flags = {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}
        builder_flags = {"TF32": 6}
    else:
        flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
        builder_flags = {"FP16": 0, "TF32": 6}
    NetworkDefinitionCreationFlag = PybindEnum("NetworkDefinitionCreationFlag", flags)
    BuilderFlag = PybindEnum("BuilderFlag", builder_flags)

    def nptype(trt_type: Any) -> type:
        if trt_type.name in _NPTYPE:
            return _NPTYPE[trt_type.name]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    class HostMemory:
        """IHostMemory: a buffer the caller copies out with bytes()."""

        def __init__(self, data: bytes) -> None:
            self._data = data

        def __bytes__(self) -> bytes:
            return self._data

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, min_severity: int = 2) -> None:
            self.min_severity = min_severity

    class ITimingCache:
        def __init__(self, device: str, entries: dict[str, str]) -> None:
            self.version, self.device, self.entries = version, device, dict(entries)

        def serialize(self) -> HostMemory:
            body = {"version": self.version, "device": self.device, "entries": self.entries}
            return HostMemory(CACHE_MAGIC + json.dumps(body, sort_keys=True).encode())

        def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if input_cache.version != self.version or (input_cache.device != self.device and not ignore_mismatch):
                return False
            for key, value in input_cache.entries.items():
                self.entries.setdefault(key, value)  # conflicting entries are skipped
            return True

        def reset(self) -> bool:
            self.entries.clear()
            return True

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
            lo, mid, hi = tuple(min), tuple(opt), tuple(max)
            if not (len(lo) == len(mid) == len(hi)) or any(a > b for a, b in zip(lo, hi, strict=True)):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            self.shapes[input] = (lo, mid, hi)

    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags_set = {BuilderFlag.TF32}  # TensorRT's default: TF32 on
            self.set_calls: list[str] = []  # the flags set explicitly
            self.pool_limits: dict[Any, int] = {}
            self.profiles: list[IOptimizationProfile] = []
            self.cache: ITimingCache | None = None

        def set_flag(self, flag: Any) -> None:
            if not isinstance(flag, BuilderFlag):
                raise TypeError(f"set_flag(): incompatible function arguments: {flag!r}")
            self.flags_set.add(flag)
            self.set_calls.append(flag.name)

        def clear_flag(self, flag: Any) -> None:
            self.flags_set.discard(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self.flags_set

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self.pool_limits[pool] = pool_size

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self.pool_limits.get(pool, 24 << 30)  # default: the device's memory

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            if not profile.shapes:
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache | None:
            data = bytes(serialized_timing_cache)
            if not data:
                return ITimingCache(DEVICE, {})
            if not data.startswith(CACHE_MAGIC):
                return None
            body = json.loads(data[len(CACHE_MAGIC):])
            cache = ITimingCache(body["device"], body["entries"])
            cache.version = body["version"]
            return cache

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if cache.version != version or (cache.device != DEVICE and not ignore_mismatch):
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self.cache

    class ITensor:
        def __init__(self, name: str, dtype: Any, shape: tuple[int, ...]) -> None:
            self.name, self.dtype, self.shape = name, dtype, shape

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[ITensor] = []
            self.outputs: list[ITensor] = []
            self.layer_name = ""

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, index: int) -> ITensor:
            return self.inputs[index]

        def get_output(self, index: int) -> ITensor:
            return self.outputs[index]

    class IParserError:
        def __init__(self, desc: str, node: int, node_name: str, node_operator: str) -> None:
            self._desc, self._node, self._name, self._op = desc, node, node_name, node_operator

        def code(self) -> int:
            return 8  # ErrorCode::kUNSUPPORTED_NODE

        def desc(self) -> str:
            return self._desc

        def node(self) -> int:
            return self._node

        def node_name(self) -> str:
            return self._name

        def node_operator(self) -> str:
            return self._op

    class OnnxParser:
        """Parses what onnx loads; ops of custom domains have no importer (as TensorRT without plugins)."""

        def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
            self.network = network
            self.errors: list[IParserError] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> IParserError:
            return self.errors[index]

        def clear_errors(self) -> None:
            self.errors.clear()

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            proto = onnx.load_from_string(bytes(model))
            for index, node in enumerate(proto.graph.node):
                if node.domain not in ("", "ai.onnx"):
                    self.errors.append(IParserError(f"No importer registered for op: {node.op_type}", index,
                                                    node.name, node.op_type))
            if self.errors:
                return False
            initializers = {init.name for init in proto.graph.initializer}

            def tensor(value: Any) -> ITensor:
                t = value.type.tensor_type
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
                return ITensor(value.name, DataType[_ONNX_TO_TRT[t.elem_type]], dims)

            self.network.inputs = [tensor(v) for v in proto.graph.input if v.name not in initializers]
            self.network.outputs = [tensor(v) for v in proto.graph.output]
            self.network.layer_name = " + ".join(n.name or n.op_type for n in proto.graph.node)
            return True

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(int(flags))

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig
                                     ) -> HostMemory | None:
            if knobs.build_fails or not config.profiles:
                return None
            profile = config.profiles[0].shapes
            if any(t.name not in profile for t in network.inputs):
                return None
            batch = profile[network.inputs[0].name][1][0] if network.inputs else 1

            def static(t: ITensor, shape: tuple[int, ...]) -> dict[str, Any]:
                return {"name": t.name, "dtype": t.dtype.name, "shape": list(shape)}

            inputs = [static(t, profile[t.name][1]) for t in network.inputs]
            outputs = [static(t, tuple(batch if d < 0 else d for d in t.shape)) for t in network.outputs]
            layers = [(f"Reformatting CopyNode for Input Tensor {i} to {network.layer_name}", knobs.reformat_ms)
                      for i in range(len(inputs))]
            layers.append((network.layer_name, knobs.compute_ms))
            layers += [(f"Reformatting CopyNode for Output Tensor {i} to {network.layer_name}", knobs.reformat_ms)
                       for i in range(len(outputs))]
            body = {"version": version, "inputs": inputs, "outputs": outputs, "capturable": knobs.capturable,
                    "layers": [[n, ms] for n, ms in layers if ms > 0 or not n.startswith("Reformatting")]}
            if config.cache is not None:  # the tactics timed for these layers
                key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
                config.cache.entries.setdefault(key, "timed")
            knobs.built.append({"network_flags": network.flags, "set_flags": list(config.set_calls),
                                "pool_limits": dict(config.pool_limits), "inputs": inputs, "outputs": outputs})
            return HostMemory(ENGINE_MAGIC + json.dumps(body).encode())

    class IProfiler:
        def __init__(self) -> None:
            self._initialised = True

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            raise RuntimeError("Tried to call pure virtual function \"IProfiler::report_layer_time\"")

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self._profiler: IProfiler | None = None
            self.enqueue_emits_profile = True
            self.last_run: tuple[list[tuple[str, float]], float] | None = None
            self.synchronous_enqueues = 0
            self._last_stream: cudaStream_t | None = None

        @property
        def profiler(self) -> IProfiler | None:
            return self._profiler

        @profiler.setter
        def profiler(self, profiler: IProfiler | None) -> None:
            if profiler is not None and not getattr(profiler, "_initialised", False):
                raise TypeError("IProfiler.__init__() must be called when overriding __init__")
            self._profiler = profiler

        def set_input_shape(self, name: str, shape: Any) -> bool:
            tensor = self.engine.tensors.get(name)
            if tensor is None or tensor["mode"] != "INPUT" or tuple(shape) != tuple(tensor["shape"]):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.engine.tensors[name]["shape"])

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if not isinstance(memory, int):
                raise TypeError("set_tensor_address(): incompatible function arguments")
            if name not in self.engine.tensors:
                return False
            self.addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            if not isinstance(stream_handle, int) or isinstance(stream_handle, bool):
                raise TypeError("execute_async_v3(): incompatible function arguments")
            stream = rt.streams[stream_handle]
            self._last_stream = stream
            if set(self.addresses) != set(self.engine.tensors):
                return False  # "address is not set" for some I/O tensor
            profiled = self._profiler is not None
            work = Work(self.engine.layers, self, profiled)
            if stream.capturing:
                if not self.engine.capturable or (profiled and self.enqueue_emits_profile):
                    stream.invalidated = True  # an operation a capture cannot hold
                    rt.last_error = cudaError_t.cudaErrorStreamCaptureInvalidated
                    return False
                stream.captured.append(("work", work))
                return True
            rt.host += LAUNCH_MS
            end = rt.execute(work, stream)
            if profiled and self.enqueue_emits_profile:  # synchronous, and reports by itself
                self.synchronous_enqueues += 1
                rt.host = max(rt.host, end)
                self._report()
            return True

        def report_to_profiler(self) -> bool:
            if self._profiler is None or (self._last_stream is not None and self._last_stream.capturing):
                return False
            if not self.enqueue_emits_profile:
                self._report()
            return True

        def _report(self) -> None:
            if self.last_run is None:
                return
            layers, end = self.last_run
            rt.host = max(rt.host, end)  # the previous launch's events
            for name, ms in layers:
                self._profiler.report_layer_time(name, ms)  # type: ignore[union-attr]
            self.last_run = None

    class ICudaEngine:
        def __init__(self, body: dict[str, Any]) -> None:
            self.tensors = {t["name"]: {**t, "mode": "INPUT"} for t in body["inputs"]}
            self.tensors.update({t["name"]: {**t, "mode": "OUTPUT"} for t in body["outputs"]})
            self.names = list(self.tensors)
            self.layers = [(name, ms) for name, ms in body["layers"]]
            self.capturable = body["capturable"]

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self, name: str) -> Any:
            return TensorIOMode[self.tensors[name]["mode"]] if name in self.tensors else TensorIOMode.NONE

        def get_tensor_dtype(self, name: str) -> Any:
            return DataType[self.tensors[name]["dtype"]]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.tensors[name]["shape"])

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            data = bytes(serialized_engine)
            if not data.startswith(ENGINE_MAGIC):
                return None
            body = json.loads(data[len(ENGINE_MAGIC):])
            return ICudaEngine(body) if body["version"] == version else None

    exported = (DataType, TensorIOMode, MemoryPoolType, NetworkDefinitionCreationFlag, BuilderFlag, Logger,
                ITimingCache, IOptimizationProfile, IBuilderConfig, INetworkDefinition, IParserError, OnnxParser,
                Builder, IProfiler, IExecutionContext, ICudaEngine, Runtime)
    for cls in exported:
        setattr(trt, cls.__name__, cls)
    trt.IHostMemory = HostMemory  # type: ignore[attr-defined]
    trt.nptype = nptype  # type: ignore[attr-defined]
    return trt


def install(monkeypatch: pytest.MonkeyPatch, version: str | None = "10.7.0", devices: int = 1,
            driver: int = 12040, runtime: int = 12040) -> tuple[Any, FakeCudart]:
    """Put the fakes in sys.modules (version None: no TensorRT at all)."""
    rt = FakeCudart(devices, driver, runtime)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    utils = fake_utils()
    bindings.runtime, bindings.utils = rt, utils  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt),
                         ("cuda.bindings.utils", utils)):
        monkeypatch.setitem(sys.modules, name, module)
    trt = fake_tensorrt(version, rt) if version else None
    monkeypatch.setitem(sys.modules, "tensorrt", trt)  # None makes `import tensorrt` fail
    return trt, rt
