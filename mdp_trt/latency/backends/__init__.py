"""Latency backends behind one interface, chosen by name.

`auto` picks TensorRT when it and a GPU are present, else ONNX Runtime on the CPU. Heavy imports
(onnxruntime sessions, tensorrt, cuda-python) happen only when a backend is created.
"""

from __future__ import annotations

from pathlib import Path

from mdp_trt.errors import BackendUnavailable, InputError
from mdp_trt.latency.backends.base import Backend, input_feeds, input_shapes
from mdp_trt.latency.backends.ort import session_options

BACKEND_NAMES = ("auto", "ort", "ort-cuda", "ort-tensorrt", "tensorrt", "analytic")


def get_backend(name: str = "auto", *, threads: int | None = None, db_path: Path | None = None) -> Backend:
    """The backend called `name`; `db_path` places TensorRT's timing cache next to the database."""
    if name == "auto":
        try:
            return _tensorrt(db_path)
        except BackendUnavailable:
            return get_backend("ort", threads=threads)
    if name == "tensorrt":
        return _tensorrt(db_path)
    if name in ("ort", "ort-cuda", "ort-tensorrt"):
        from mdp_trt.latency.backends.ort import OrtBackend

        provider = "cpu" if name == "ort" else name.removeprefix("ort-")
        return OrtBackend(threads=threads, provider=provider)
    if name == "analytic":
        from mdp_trt.latency.backends.analytic import AnalyticBackend

        return AnalyticBackend()
    raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")


def _tensorrt(db_path: Path | None) -> Backend:
    from mdp_trt.latency.backends.tensorrt import TensorRTBackend, import_tensorrt, timing_cache_path

    if db_path is None:
        return TensorRTBackend()
    trt = import_tensorrt()
    from mdp_trt.latency.backends.cuda import device_properties

    cache = timing_cache_path(db_path, device_properties(0), str(trt.__version__))
    return TensorRTBackend(timing_cache=cache, engine_dir=db_path.parent / "engines")


__all__ = ["BACKEND_NAMES", "Backend", "get_backend", "input_feeds", "input_shapes", "session_options"]
