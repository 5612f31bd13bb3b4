"""cuda-python access for the GPU backends, imported lazily and version-tolerant.

cuda-python 12.x/13.x exposes the runtime as `cuda.bindings.runtime`; older releases as `cuda.cudart`.
Every call returns a tuple `(error, *values)`; `check` turns a non-zero error into an exception.
"""

from __future__ import annotations

from typing import Any

from mdp_trt.errors import BackendUnavailable

INSTALL_HINT = "pip install tensorrt cuda-python"


class CudaError(RuntimeError):
    """A CUDA runtime call failed (the message names the call and the error)."""


def import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise BackendUnavailable(f"cuda-python is not installed: {INSTALL_HINT}") from exc
    return cudart


def error_code(err: Any) -> int:
    """The integer value of a cudaError_t (an enum in cuda-python, a plain int in fakes)."""
    return int(getattr(err, "value", err))


def check(result: Any, what: str = "CUDA call") -> Any:
    """Unpack `(err, *values)`: raise on error, return None, the single value, or the tuple of values."""
    if not isinstance(result, tuple):
        result = (result,)
    err, *values = result
    if error_code(err) != 0:
        raise CudaError(f"{what} failed: {getattr(err, 'name', err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_count(cudart: Any) -> int:
    """Visible CUDA devices; 0 when the driver is missing or reports an error."""
    result = cudart.cudaGetDeviceCount()
    err, count = result
    return int(count) if error_code(err) == 0 else 0


def require_gpu(cudart: Any) -> None:
    if gpu_count(cudart) == 0:
        raise BackendUnavailable("no NVIDIA GPU visible (cudaGetDeviceCount found none)")


def device_properties(device: int = 0) -> dict[str, Any]:
    """Name, compute capability, driver and runtime versions of one GPU: the device part of fingerprints."""
    cudart = import_cudart()
    require_gpu(cudart)
    prop = check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {
        "name": name.rstrip("\x00").strip(),
        "compute_capability": f"{prop.major}.{prop.minor}",
        "driver_version": check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion"),
        "runtime_version": check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"),
    }
