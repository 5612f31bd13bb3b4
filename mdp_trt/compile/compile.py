"""`compile_model`: build the deployable artifact for one backend, atomically, into a folder.

ONNX Runtime: the optimised model ONNX Runtime itself writes for this device (layout rewrites such as
NCHWc included) plus the session options to load it with. TensorRT: a serialized engine built with
the same precision handling and timing cache as the latency measurements, plus a sidecar JSON, since an
engine only runs on the TensorRT version and GPU that built it; the sidecar also lists the engine's
inputs and outputs with their TensorRT data types, the contract a deployment feeds it by.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from mdp_trt.compile.artifact import Artifact
from mdp_trt.errors import InputError
from mdp_trt.graph.batch import with_batch
from mdp_trt.io import atomic_path, write_text_atomic
from mdp_trt.latency.backends import Backend


def compile_model(model: onnx.ModelProto, backend: Backend, out_dir: Path, *, batch: int,
                  precision: str = "fp32") -> Artifact:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = with_batch(model, batch)
    if backend.name == "tensorrt":
        return _tensorrt(model, backend, out_dir, batch, precision)
    if backend.name.startswith("ort"):
        return _onnxruntime(model, backend, out_dir, batch, precision)
    raise InputError(f"backend '{backend.name}' has no compiled form; use --backend ort or tensorrt")


def _onnxruntime(model: onnx.ModelProto, backend: Any, out_dir: Path, batch: int, precision: str) -> Artifact:
    import onnxruntime as ort

    from mdp_trt.latency.backends.ort import PROVIDERS, session_options

    if precision != "fp32" and backend.provider == "cpu":
        raise InputError("ONNX Runtime on the CPU compiles fp32 only; use --precision fp32")
    engine = out_dir / "model.ort.onnx"
    options = session_options(backend.threads)
    with atomic_path(engine) as tmp:
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(model.SerializeToString(), sess_options=options,
                             providers=[PROVIDERS[backend.provider]])
    settings = {
        "backend": "onnxruntime",
        "onnxruntime_version": ort.__version__,
        "provider": PROVIDERS[backend.provider],
        "device": backend.fingerprint(batch, precision)["device"],
        "batch": batch,
        "precision": precision,
        "session_options": {
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "execution_mode": "sequential",
            "graph_optimization_level": "ORT_ENABLE_ALL",
        },
        "note": "the optimised model holds device-specific layouts: load it with this ONNX Runtime "
                "version on this kind of CPU, with graph optimisations disabled or left on",
    }
    sidecar = out_dir / "model.ort.json"
    write_text_atomic(sidecar, json.dumps(settings, indent=1) + "\n")
    return Artifact("onnxruntime", engine, sidecar, settings)


def _tensorrt(model: onnx.ModelProto, backend: Any, out_dir: Path, batch: int, precision: str) -> Artifact:
    from dataclasses import asdict

    from mdp_trt.latency.backends.tensorrt import build_settings

    serialized = backend.build(model, batch, precision)
    engine = out_dir / "model.engine"
    with atomic_path(engine) as tmp:
        tmp.write_bytes(serialized)
    settings = {
        "backend": "tensorrt",
        "tensorrt_version": backend.version,
        "device": backend.device(),
        "batch": batch,
        "precision": precision,
        "build": asdict(build_settings(backend.version, precision)),
        # what a deployment feeds and reads: FP32 in fp16 too, on TensorRT 10 and 11 alike
        "io": backend.engine_io(serialized),
        "note": "a TensorRT engine runs only with the TensorRT version and GPU model that built it",
    }
    sidecar = out_dir / "model.engine.json"
    write_text_atomic(sidecar, json.dumps(settings, indent=1) + "\n")
    return Artifact("tensorrt", engine, sidecar, settings)
