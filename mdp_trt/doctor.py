"""What this machine can do for mdp-trt, and how to get what is missing.

Every check looks for a package without importing heavy ones that are not needed (torch is looked up,
never imported), and none of them can fail the command: doctor only reports.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package(name: str, dist: str, fix: str, module: str) -> Check:
    version = _version(dist)
    found = importlib.util.find_spec(module) is not None
    return Check(name, found, f"{dist} {version}" if found else "not installed", "" if found else fix)


def run_checks(db_path: Path) -> list[Check]:
    checks = [_onnxruntime()]
    checks.append(_package("tensorrt", "tensorrt", "pip install 'mdp-trt[trt]' (needs an NVIDIA GPU and driver)",
                           module="tensorrt"))
    checks.append(_package("cuda-python", "cuda-python", "pip install cuda-python", module="cuda"))
    checks.append(_gpu())
    checks.append(_package("HiGHS (milp solver)", "highspy", "pip install highspy", module="highspy"))
    checks.append(_package("SCIP (minlp solver)", "pyscipopt", "pip install 'mdp-trt[minlp]'",
                           module="pyscipopt"))
    for exe, fix in (("ipopt", "conda install -c conda-forge ipopt"), ("glpsol", "apt-get install glpk-utils")):
        path = shutil.which(exe)
        checks.append(Check(f"{exe} (MindtPy OA, the paper's solver)", path is not None, path or "not found",
                            "" if path else fix))
    checks.append(_package("torch (Taylor importance, fine-tuning)", "torch", "pip install 'mdp-trt[torch]'",
                           module="torch"))
    checks.append(_package("matplotlib (plots)", "matplotlib", "pip install 'mdp-trt[plots]'", module="matplotlib"))
    size = db_path.stat().st_size if db_path.exists() else 0
    state = f"{size / 1e6:.2f} MB" if db_path.exists() else "not created yet"
    checks.append(Check("latency database", True, f"{db_path} ({state})"))
    return checks


def _onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except ImportError:
        return Check("onnxruntime", False, "not installed", "pip install onnxruntime")
    providers = ", ".join(p.removesuffix("ExecutionProvider") for p in ort.get_available_providers())
    return Check("onnxruntime", True, f"{ort.__version__}; providers: {providers}")


def _gpu() -> Check:
    smi = shutil.which("nvidia-smi")
    if importlib.util.find_spec("cuda") is not None:
        try:
            from mdp_trt.latency.backends.cuda import device_properties

            props = device_properties(0)
            return Check("NVIDIA GPU", True, f"{props.get('name')} (sm {props.get('compute_capability')})")
        except Exception as exc:  # any CUDA failure means: no usable GPU; say why
            return Check("NVIDIA GPU", False, f"not usable: {str(exc).splitlines()[0][:100]}",
                         "install an NVIDIA driver, or run on a machine with a GPU")
    detail = f"nvidia-smi at {smi}, but cuda-python is missing" if smi else "none visible"
    return Check("NVIDIA GPU", False, detail, "install cuda-python" if smi else "TensorRT needs an NVIDIA GPU")
