"""The build report: targets, predicted vs measured latency, what was kept, and where time went.

`report.json` is a contract (DESIGN.md): target, backend, dense, predicted, measured, importance_kept,
groups, blocks_removed, solver, profiling, plus stage timings and per-layer latency. Every latency
printed as measured was measured; predictions are labelled as such. `measured` is the final verification's
verdict (`closed_loop.Verdict.to_json`): the plan timed against dense interleaved, its ratio and latency with
their 95% intervals, and the decision taken on the interval. `outcome` says whether the measurement met the
target, the exit code the CLI gives for it (0 met, 3 not met, also when the host was too noisy to decide)
and why, in one line. Every number in it is finite: it is written as strict JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mdp_trt.io import write_json_atomic

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
    measured: dict[str, Any]  # the final verification (closed_loop.Verdict.to_json): latency, ratio, intervals
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
            "measured": self.measured,
            "outcome": {"met": self.met, "exit_code": 0 if self.met else 3, "message": self.verdict},
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

    @property
    def met(self) -> bool:
        """Whether the final verification found the target met (its `measured.met`)."""
        return bool(self.measured["met"])

    @property
    def verdict(self) -> str:
        """Whether the measurement met the target, in one line: the console's last line and `outcome.message`.

        It states the interval the decision was taken on: the ratio to dense for a relative target, the
        latency for an absolute one."""
        m = self.measured
        low, high = m["latency_ci_ms"]
        if m["relative"]:
            measured = (f"{m['ratio']:.3f}x dense measured (95% interval {m['ratio_ci'][0]:.3f}-"
                        f"{m['ratio_ci'][1]:.3f}x; {m['fps']:.1f} FPS, {m['latency_ms']:.3f} ms)")
            goal = f"the {m['target_ratio']:.3f}x asked for"
        else:
            measured = (f"{m['fps']:.1f} FPS ({m['latency_ms']:.3f} ms, 95% interval {low:.3f}-{high:.3f} ms) "
                        "measured")
            goal = f"{self.target['fps']:.1f} FPS ({m['target_ms']:.3f} ms)"
        how = f"{m['scheme']} with dense, {m['pairs']} pairs" if m["pairs"] else m["scheme"]
        if self.met:
            return f"target met: {measured} against {goal} ({how})"
        if m["decision"] == "undecided":
            return (f"target NOT met: the host was too noisy to decide: {measured} straddles {goal} after "
                    f"{m['seconds']:.1f} s ({how})")
        return f"target NOT met: {measured} misses {goal} ({how}), after {len(self.rounds)} round(s)"

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    def print_summary(self, console: Console) -> None:
        table = Table(title="mdp-trt build", title_justify="left")
        table.add_column("")
        table.add_column("dense", justify="right")
        table.add_column("pruned", justify="right")
        # Both columns from the final verification's window: the pruned latency is its ratio times the dense
        # latency timed alongside, and the build's first dense bench may have met another host state.
        dense_ms, batch = self.measured["dense_ms"], self.target["batch"]
        table.add_row("latency (ms, measured together)", f"{dense_ms:.3f}", f"{self.pruned.latency_ms:.3f}")
        table.add_row(f"FPS at batch {batch}", f"{1000.0 * batch / dense_ms:.1f}", f"{self.pruned.fps:.1f}")
        low, high = self.measured["ratio_ci"]
        table.add_row("vs dense (measured, 95%)", "1", f"{self.measured['ratio']:.3f} [{low:.3f}, {high:.3f}]")
        table.add_row("latency (ms, predicted)", "", f"{self.predicted_latency_ms:.3f}")
        table.add_row("parameters", f"{self.dense.params:,}", f"{self.pruned.params:,}")
        table.add_row("FLOPs", f"{self.dense.flops:,}", f"{self.pruned.flops:,}")
        table.add_row("importance kept", "100%", f"{100 * self.importance_kept:.1f}%")
        table.add_row("blocks removed", "", str(len(self.blocks_removed)))
        console.print(table)
        console.print(self.verdict, style="green" if self.met else "red", highlight=False, soft_wrap=True)
        if self.backend.get("estimate"):
            console.print("[yellow]latencies come from the analytic backend: estimates, not measurements[/]")
