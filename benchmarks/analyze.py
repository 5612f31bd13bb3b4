"""Time and peak memory of `analyze` + `prune` on zoo resnet50 (issue 2 targets: < 2 s, < 3x model size).

Each measurement runs in a fresh subprocess. Memory is the peak resident set during analyse + prune
(the kernel's high-water mark, reset through /proc/self/clear_refs after loading) minus the resident
set just before (model already loaded), as a multiple of the model file's size. Linux only.
Usage: python benchmarks/analyze.py [--runs 5] [--model resnet50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np, onnx, psutil
from mdp_trt.graph import analyze, load_model
from mdp_trt.importance.selection import random_channels
from mdp_trt.prune import Plan, prune_model
def high_water():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
model = load_model(sys.argv[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak so loading the model does not count
before = psutil.Process().memory_info().rss
t0 = time.perf_counter()
structure = analyze(model)
t1 = time.perf_counter()
rng = np.random.default_rng(0)
plan = Plan({g.id: random_channels(rng, g.size, g.parts * max(1, g.part_size // 2), g.parts)
             for g in structure.prunable_groups}, tuple(b.id for b in structure.blocks[::2]))
pruned = prune_model(model, structure, plan)
t2 = time.perf_counter()
peak = high_water()
print(json.dumps({"analyze_s": t1 - t0, "prune_s": t2 - t1, "extra_bytes": peak - before}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="resnet50")
    args = parser.parse_args()
    from mdp_trt.io import save_model_atomic
    from mdp_trt.zoo import build

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}.onnx"
        save_model_atomic(build(args.model, input_size=224), path)
        size = path.stat().st_size
        runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True,
                                          capture_output=True, text=True).stdout)
                for _ in range(args.runs)]
    total = statistics.median(r["analyze_s"] + r["prune_s"] for r in runs)
    analyse = statistics.median(r["analyze_s"] for r in runs)
    prune = statistics.median(r["prune_s"] for r in runs)
    memory = statistics.median(r["extra_bytes"] for r in runs) / size
    print(f"command: python benchmarks/analyze.py --runs {args.runs} --model {args.model}")
    print(f"model: zoo {args.model}, 224x224, {size / 1e6:.1f} MB on disk; "
          f"median of {args.runs} fresh processes")
    print(f"analyze      {analyse:6.3f} s")
    print(f"prune        {prune:6.3f} s")
    print(f"total        {total:6.3f} s   (target < 2 s: {'met' if total < 2 else 'MISSED'})")
    print(f"peak memory  {memory:6.2f} x model size above the loaded model "
          f"(target < 3x: {'met' if memory < 3 else 'MISSED'})")


if __name__ == "__main__":
    main()
