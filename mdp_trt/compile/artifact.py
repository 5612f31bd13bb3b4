"""What compilation produced: the files, and the settings needed to run them the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Artifact:
    backend: str
    engine: Path  # model.engine (TensorRT) or the ONNX Runtime optimised model
    sidecar: Path  # JSON with the versions, device and settings the engine was built with
    settings: dict[str, Any] = field(default_factory=dict)
