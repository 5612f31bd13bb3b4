"""The build report: targets, predicted vs measured latency, what was kept, and where time went.

`report.json` is a contract (DESIGN.md): target, backend, dense, predicted, measured, importance_kept,
groups, blocks_removed, solver, profiling, plus stage timings and per-layer latency. Every latency
printed as measured was measured; predictions are labelled as such.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mdp_trt.io import write_text_atomic

REPORT_FORMAT = "mdp-report/1"


@dataclass
class ModelStats:
    latency_ms: float
    fps: float
    params: int
    flops: int


@dataclass
class Report:
    target: dict[str, Any]  # fps, latency_ms, batch
    backend: dict[str, Any]  # name, version, device, estimate
    dense: ModelStats
    pruned: ModelStats
    predicted_latency_ms: float
    met: bool
    importance_kept: float
    groups: list[dict[str, Any]]  # id, size, kept
    blocks_removed: list[str]
    solver: dict[str, Any]  # name, status, gap, seconds, objective, bound, rounds
    profiling: dict[str, Any]  # measured, cached, seconds
    stages: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds
    layers: list[dict[str, Any]] = field(default_factory=list)  # name, dense_ms, pruned_ms (predicted)
    rounds: list[dict[str, Any]] = field(default_factory=list)  # closed loop: budget, predicted, measured
    verification: dict[str, Any] = field(default_factory=dict)  # compared, max_difference, seconds, skipped
    command: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "command": self.command,
            "target": self.target,
            "backend": self.backend,
            "dense": asdict(self.dense),
            "predicted": {"latency_ms": self.predicted_latency_ms},
            "measured": {"latency_ms": self.pruned.latency_ms, "fps": self.pruned.fps, "met": self.met},
            "pruned": asdict(self.pruned),
            "importance_kept": self.importance_kept,
            "groups": self.groups,
            "blocks_removed": self.blocks_removed,
            "solver": self.solver,
            "profiling": self.profiling,
            "stages": self.stages,
            "layers": self.layers,
            "rounds": self.rounds,
            "verification": self.verification,
        }

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.to_json(), indent=1) + "\n")

    def print_summary(self, console: Console) -> None:
        table = Table(title="mdp-trt build", title_justify="left")
        table.add_column("")
        table.add_column("dense", justify="right")
        table.add_column("pruned", justify="right")
        table.add_row("latency (ms, measured)", f"{self.dense.latency_ms:.3f}", f"{self.pruned.latency_ms:.3f}")
        table.add_row(f"FPS at batch {self.target['batch']}", f"{self.dense.fps:.1f}", f"{self.pruned.fps:.1f}")
        table.add_row("latency (ms, predicted)", "", f"{self.predicted_latency_ms:.3f}")
        table.add_row("parameters", f"{self.dense.params:,}", f"{self.pruned.params:,}")
        table.add_row("FLOPs", f"{self.dense.flops:,}", f"{self.pruned.flops:,}")
        table.add_row("importance kept", "100%", f"{100 * self.importance_kept:.1f}%")
        table.add_row("blocks removed", "", str(len(self.blocks_removed)))
        console.print(table)
        goal = f"{self.target['fps']:.1f} FPS ({self.target['latency_ms']:.3f} ms)"
        if self.met:
            console.print(f"[green]target met[/]: {self.pruned.fps:.1f} FPS measured >= {goal}")
        else:
            console.print(f"[red]target NOT met[/]: {self.pruned.fps:.1f} FPS measured < {goal}")
        if self.backend.get("estimate"):
            console.print("[yellow]latencies come from the analytic backend: estimates, not measurements[/]")
