"""Where a whole model's time goes inside ONNX Runtime, by op type: what the latency tables see and what not.

Each model runs `--runs` times in one session with ONNX Runtime's profiler on (the backend's own session
settings, at `--threads` and `--batch`); per node, the median kernel time over the runs after the first
third, summed by op type. The layer probes time convolutions and Gemms (with their fused BatchNorm and
activation) and leave out every layout reorder (`ReorderInput`, `ReorderOutput`), as a layer's edges in a
probe are not its cost in a model; everything else is what the calibration has to cover. With `--plan`, the
model is also pruned by that plan and profiled the same way, and each op type's time is given over dense:
what a plan saves on the layers next to what it saves elsewhere.

The profiler costs time of its own (per node, more at several threads), so the totals are above the
model's wall latency; the shares and the pruned-over-dense ratios are what to read.

Usage: python benchmarks/node_profile.py MODEL.onnx [--plan PLAN.json] [--threads 1] [--batch 1] [--runs 300]
"""

from __future__ import annotations

import argparse
import collections
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import onnx

from mdp_trt.graph import analyze, load_model
from mdp_trt.latency.backends.base import input_feeds
from mdp_trt.latency.backends.ort import OrtBackend
from mdp_trt.latency.backends.ort_profile import ISOLATION_OPS, read_profile
from mdp_trt.prune import Plan, prune_model

LAYER_OPS = ("Conv", "Gemm", "MatMul")  # what the layer tables time
KERNEL_SUFFIX = "_kernel_time"


def op_times(backend: OrtBackend, model: onnx.ModelProto, batch: int, runs: int) -> dict[str, float]:
    """Per op type, the sum over its nodes of each node's median kernel time (ms) in one profiled session."""
    with tempfile.TemporaryDirectory(prefix="mdp-nodes-") as tmp:
        session = backend.session(model, profile_prefix=str(Path(tmp) / "nodes"))
        feeds = input_feeds(model, batch)
        for _ in range(runs):
            session.run(None, feeds)
        events = read_profile(session.end_profiling())
    samples: dict[str, list[float]] = collections.defaultdict(list)
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith(KERNEL_SUFFIX):
            samples[event["name"]].append(int(event["dur"]) / 1e3)
            op_of[event["name"]] = str(event.get("args", {}).get("op_name", "?"))
    totals: collections.Counter[str] = collections.Counter()
    for name, durations in samples.items():
        totals[op_of[name]] += statistics.median(durations[len(durations) // 3:])
    return dict(totals)


def kind(op: str) -> str:
    if op in LAYER_OPS:
        return "layer tables"
    return "reorders (no probe times them)" if op in ISOLATION_OPS else "other (calibration)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--plan", type=Path, default=None, help="also profile the model pruned by this plan")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    backend = OrtBackend(threads=args.threads)
    model = load_model(args.model)
    dense = op_times(backend, model, args.batch, args.runs)
    pruned: dict[str, float] = {}
    if args.plan is not None:
        plan = Plan.load(args.plan)
        structure = analyze(model)
        plan.validate(structure)
        pruned = op_times(backend, prune_model(model, structure, plan), args.batch, args.runs)
    total = sum(dense.values())
    print(f"{args.model.name}: {args.threads} thread(s), batch {args.batch}, {args.runs} runs; kernel time "
          f"{total:.3f} ms dense" + (f", {sum(pruned.values()):.3f} ms pruned" if pruned else ""))
    print(f"| op | seen by | dense ms | share |{' pruned / dense |' if pruned else ''}")
    print(f"|---|---|---|---|{'---|' if pruned else ''}")
    for op, ms in sorted(dense.items(), key=lambda item: -item[1]):
        ratio = f" {pruned.get(op, 0.0) / ms:.2f} |" if pruned else ""
        print(f"| {op} | {kind(op)} | {ms:.3f} | {100 * ms / total:.1f}% |{ratio}")
    for label in ("layer tables", "reorders (no probe times them)", "other (calibration)"):
        ms = sum(v for op, v in dense.items() if kind(op) == label)
        ratio = (f", pruned / dense {sum(v for op, v in pruned.items() if kind(op) == label) / ms:.2f}"
                 if pruned and ms > 0 else "")
        print(f"{label}: {ms:.3f} ms, {100 * ms / total:.1f}%{ratio}")


if __name__ == "__main__":
    main()
