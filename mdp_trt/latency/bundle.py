"""Probe bundles: profile a remote device (e.g. a Jetson) that only has this package, onnx and TensorRT.

`export_bundle` writes every missing probe as an .onnx file plus a manifest; `run_bundle` measures
them on the device into a database there; `mdp-trt db merge` brings the results home. The manifest is
written last, so a half-written bundle is refused rather than half-measured.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from rich.console import Console

from latency_db import LatencyDB
from mdp_trt.errors import InputError
from mdp_trt.io import save_model_atomic, write_text_atomic
from mdp_trt.latency.backends.base import Backend
from mdp_trt.latency.probes import build_probe
from mdp_trt.latency.profile import ProbeTask, measure_into, progress_bar
from mdp_trt.latency.protocol import PROBE_PROTOCOL, MeasureProtocol

BUNDLE_FORMAT = "mdp-trt-probes/1"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BundleProbe:
    file: str
    signature: str
    k_in: int
    k_out: int
    description: dict[str, Any]


def export_bundle(tasks: Iterable[ProbeTask], directory: Path, *, batch: int, precision: str) -> int:
    """Write probes and the manifest into `directory`; returns the number of probes."""
    directory.mkdir(parents=True, exist_ok=True)
    probes = []
    for task in tasks:
        name = f"probes/{task.spec.signature[:16]}_{task.k_in}x{task.k_out}.onnx"
        save_model_atomic(build_probe(task.spec, task.k_in, task.k_out, batch), directory / name)
        probes.append(
            {
                "file": name,
                "signature": task.spec.signature,
                "k_in": task.k_in,
                "k_out": task.k_out,
                "description": task.spec.description(),
            }
        )
    manifest = {"format": BUNDLE_FORMAT, "batch": batch, "precision": precision, "probes": probes}
    write_text_atomic(directory / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return len(probes)


def read_manifest(directory: Path) -> tuple[dict[str, Any], list[BundleProbe]]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{directory}: no {MANIFEST} (not a probe bundle, or its export did not finish)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise InputError(f"{path}: not a {BUNDLE_FORMAT} manifest")
    try:
        probes = [
            BundleProbe(p["file"], p["signature"], int(p["k_in"]), int(p["k_out"]), p["description"])
            for p in manifest["probes"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed probe entry ({exc})") from None
    return manifest, probes


def run_bundle(
    directory: Path,
    backend: Backend,
    db: LatencyDB,
    *,
    protocol: MeasureProtocol = PROBE_PROTOCOL,
    show_progress: bool = False,
    console: Console | None = None,
) -> tuple[int, int]:
    """Measure the bundle's probes not yet in `db`; returns (measured, already present)."""
    manifest, probes = read_manifest(directory)
    batch, precision = int(manifest["batch"]), str(manifest["precision"])
    fp_hash = db.register_fingerprint(backend.fingerprint(batch, precision))
    db.put_probes({p.signature: p.description for p in probes})
    present = db.get_entries(fp_hash, [(p.signature, p.k_in, p.k_out) for p in probes])
    missing = [p for p in probes if (p.signature, p.k_in, p.k_out) not in present]
    for probe in missing:
        if not (directory / probe.file).resolve().is_relative_to(directory.resolve()):
            raise InputError(f"{MANIFEST}: probe path {probe.file!r} leaves the bundle")
    jobs = [((p.signature, p.k_in, p.k_out), lambda p=p: onnx.load(str(directory / p.file))) for p in missing]
    measure_into({}, jobs, backend, db, fp_hash, batch=batch, precision=precision, protocol=protocol,
                 progress=progress_bar(console, show_progress and bool(missing)),
                 label=f"measuring bundle on {backend.name}")
    return len(missing), len(present)
