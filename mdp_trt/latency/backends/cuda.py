"""cuda-python access for the GPU backends, imported lazily and version-tolerant.

cuda-python 12.6+ and 13.x expose the runtime as `cuda.bindings.runtime`; older releases as `cuda.cudart`.
Every call returns a tuple `(error, *values)`; `check` turns a non-zero error into an exception.
"""

from __future__ import annotations

from typing import Any

from mdp_trt.errors import BackendUnavailable

INSTALL_HINT = "pip install tensorrt cuda-python"
# cudaError_t values of the CUDA runtime API
CUDA_ERROR_INSUFFICIENT_DRIVER = 35


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


def native_handle(handle: Any) -> int:
    """The address behind a cuda-python handle (a stream), as TensorRT's `execute_async_v3` takes it.

    cuda-bindings 13.0 (and 12.9) deprecate `int(handle)` for `cuda.bindings.utils.get_cuda_native_handle`;
    releases without that module still take `int()`.
    """
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(handle)
    return int(get_cuda_native_handle(handle))


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


def _cuda_version(version: int) -> str:
    """'12.4' from the runtime's encoding 12040."""
    return f"{version // 1000}.{version % 1000 // 10}"


def require_gpu(cudart: Any) -> None:
    """A usable GPU, or one line saying why not: a driver older than cuda-python's CUDA is told apart from
    no GPU, since each cuda-python major needs a driver of that CUDA major (13.x: CUDA 13 drivers)."""
    err, count = cudart.cudaGetDeviceCount()
    if error_code(err) == CUDA_ERROR_INSUFFICIENT_DRIVER:
        driver = int(check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion"))
        runtime = int(check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))
        major = driver // 1000
        raise BackendUnavailable(
            f"the NVIDIA driver supports CUDA {_cuda_version(driver)}, older than the CUDA "
            f"{_cuda_version(runtime)} of this cuda-python: pip install 'cuda-python>={major},<{major + 1}'"
        )
    if error_code(err) != 0 or int(count) == 0:
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
