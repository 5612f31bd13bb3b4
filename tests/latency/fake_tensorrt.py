"""Fake `tensorrt` and `cuda.bindings.runtime` modules: enough API surface to drive the TensorRT
backend's control flow on a machine without TensorRT or a GPU."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def fake_cudart(devices: int = 1) -> types.ModuleType:
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.calls = []  # type: ignore[attr-defined]
    counter = iter(range(1000, 10**6))

    def ok(name: str, *values: Any):
        def call(*args: Any) -> tuple[Any, ...]:
            rt.calls.append((name, args))  # type: ignore[attr-defined]
            return (0, *[v() if callable(v) else v for v in values])
        return call

    rt.cudaGetDeviceCount = ok("cudaGetDeviceCount", devices)  # type: ignore[attr-defined]
    rt.cudaGetDeviceProperties = ok("props", _Obj(name=b"Fake GPU\x00", major=8, minor=6))  # type: ignore
    rt.cudaDriverGetVersion = ok("driver", 12040)  # type: ignore[attr-defined]
    rt.cudaRuntimeGetVersion = ok("runtime", 12040)  # type: ignore[attr-defined]
    for name in ("cudaStreamCreate", "cudaEventCreate", "cudaMalloc"):
        setattr(rt, name, ok(name, lambda: next(counter)))
    for name in ("cudaMemcpy", "cudaStreamSynchronize", "cudaStreamBeginCapture", "cudaEventRecord",
                 "cudaGraphLaunch", "cudaEventSynchronize", "cudaFree", "cudaEventDestroy", "cudaStreamDestroy",
                 "cudaGraphDestroy", "cudaGraphExecDestroy"):
        setattr(rt, name, ok(name))
    rt.cudaStreamEndCapture = ok("cudaStreamEndCapture", "graph")  # type: ignore[attr-defined]
    rt.cudaGraphInstantiate = ok("cudaGraphInstantiate", "graph_exec")  # type: ignore[attr-defined]
    rt.cudaEventElapsedTime = ok("cudaEventElapsedTime", 1.25)  # type: ignore[attr-defined]
    rt.cudaMemcpyKind = _Obj(cudaMemcpyHostToDevice=1)  # type: ignore[attr-defined]
    rt.cudaStreamCaptureMode = _Obj(cudaStreamCaptureModeThreadLocal=1)  # type: ignore[attr-defined]
    return rt


def fake_tensorrt(version: str) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.log = []  # type: ignore[attr-defined]
    log = trt.log  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+"

    class Config:
        def __init__(self) -> None:
            self.cache: Cache | None = None

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            log.append(("workspace", size))

        def set_flag(self, flag: Any) -> None:
            log.append(("flag", flag))

        def add_optimization_profile(self, profile: Any) -> None:
            log.append(("profile", dict(profile.shapes)))

        def create_timing_cache(self, data: bytes) -> Cache:
            return Cache(bytes(data))

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> None:
            self.cache = cache

        def get_timing_cache(self) -> Cache | None:
            return self.cache

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, Any] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Network:
        def __init__(self, flags: int) -> None:
            log.append(("network_flags", flags))
            self.inputs: list[str] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> _Obj:
            return _Obj(name=self.inputs[i])

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.num_errors = 0

        def parse(self, data: bytes) -> bool:
            import onnx

            model = onnx.load_from_string(data)
            log.append(("parsed_elem_type", model.graph.input[0].type.tensor_type.elem_type))
            self.network.inputs = [i.name for i in model.graph.input]
            return True

    class Builder:
        def __init__(self, logger: Logger) -> None:
            log.append(("builder",))

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            return b"ENGINE"

    class Context:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
            self.shapes[name] = tuple(shape)

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self.shapes.get(name, (1, 4))

        def set_tensor_address(self, name: str, ptr: int) -> None:
            self.addresses[name] = ptr

        def execute_async_v3(self, stream: int) -> bool:
            log.append(("execute", stream))
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return ["X", "Y"][i]

        def get_tensor_mode(self, name: str) -> int:
            return 0 if name == "X" else 1

        def get_tensor_dtype(self, name: str) -> str:
            return "float32"

        def create_execution_context(self) -> Context:
            ctx = Context()
            log.append(("context", ctx))
            return ctx

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return Engine() if data == b"ENGINE" else None

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    trt.NetworkDefinitionCreationFlag = _Obj(STRONGLY_TYPED=0)  # type: ignore[attr-defined]
    trt.MemoryPoolType = _Obj(WORKSPACE="workspace")  # type: ignore[attr-defined]
    trt.TensorIOMode = _Obj(INPUT=0, OUTPUT=1)  # type: ignore[attr-defined]
    trt.nptype = lambda dtype: np.dtype(dtype).type  # type: ignore[attr-defined]
    if int(version.split(".")[0]) < 11:  # FP16 flag removed in TensorRT 11
        trt.BuilderFlag = _Obj(FP16="FP16")  # type: ignore[attr-defined]
    else:
        trt.BuilderFlag = _Obj()  # type: ignore[attr-defined]
    return trt


def install(monkeypatch: pytest.MonkeyPatch, version: str | None = "10.7.0", devices: int = 1
            ) -> tuple[types.ModuleType | None, types.ModuleType]:
    """Put the fakes in sys.modules (version None: no TensorRT at all)."""
    rt = fake_cudart(devices)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    trt = fake_tensorrt(version) if version else None
    monkeypatch.setitem(sys.modules, "tensorrt", trt)  # None makes `import tensorrt` fail
    return trt, rt
