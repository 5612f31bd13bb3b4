"""Coverage of real architectures: how much of each model mdp-trt can prune, and whether it prunes it right.

For every ONNX file given (benchmarks/export_families.py writes a set), one row:
- valid: `prune_model` returned a model for the plan below, it passes onnx.checker (full check) and
  onnxruntime loads and runs it (graph optimisations off, as the oracle runs it: ORT's optimiser has
  bugs of its own that are no property of the graph);
- exact: the pruned model's outputs equal the masked original's (`mask_model`: the same plan as
  zeroed weights in the original graph) on random inputs, within rtol 1e-4 and atol 1e-4 x the output
  scale (tests/oracle.py's criterion); the largest error relative to the output scale when not;
- channels: prunable share of channels, the summed size of prunable groups over that of all groups;
- FLOPs any / both: prunable shares of weighted-op MACs (the Conv, ConvTranspose, Gemm and MatMul
  layers of the analysis). A layer's MACs are proportional to in x out channels; with p_in and p_out
  the prunable shares of its input and output channels (from the layer's segments), "any" counts the
  MACs that involve at least one prunable channel, 1 - (1 - p_in)(1 - p_out): the cost pruning can
  reach at all (pruning only the outputs of a layer whose inputs are frozen still shrinks it), an
  upper bound; "both" counts those whose input and output channels are both prunable, p_in x p_out:
  the cost that shrinks on both axes, a lower bound. A depthwise layer's MACs are per channel, so
  both are p_out there. MACs use the batch-free shapes the analysis records (Conv, Gemm, MatMul:
  output size x weight size / out channels; ConvTranspose: input size x weight size / in channels);
- blocks: removable residual blocks (`structure.blocks`);
- analyze s / prune s: wall seconds of `analyze` (the file already loaded) and of `prune_model`
  (including its own validation);
- frozen: why channels are frozen: non-prunable groups' reasons, node names taken out to pool the
  same cause, ranked by summed group size; the top 2 (one example reason each, truncated).
The plan: every prunable group keeps a random half of its channels (at least one, as many in each part
of a group in equal parts), and each block is
removed with probability 1/2 (seeded by --seed and the file name). A failure in any stage ends that
model's row (valid = no, with the first line of the error), never the run.

Usage: python benchmarks/coverage.py MODEL.onnx ... [--json] [--seed S]
  e.g. python benchmarks/export_families.py -o /tmp/fam --dynamo && python benchmarks/coverage.py /tmp/fam/*.onnx
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnx

from mdp_trt.graph import analyze, load_model
from mdp_trt.importance.selection import random_channels
from mdp_trt.prune import Plan, mask_model, prune_model
from tests.oracle import random_inputs, run

REASON_WIDTH = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL.onnx")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the Markdown table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for path in args.models:
        rows.append(coverage(path, args.seed))
        if not args.json:
            print(f"  {rows[-1]['model']}: valid {rows[-1]['valid']}, exact {rows[-1]['exact']}", file=sys.stderr,
                  flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    if args.json:
        print(json.dumps({"command": command, "seed": args.seed, "models": rows}, indent=2))
    else:
        print_table(rows)
        print(f"\ncommand: {command}")


def coverage(path: Path, seed: int) -> dict[str, Any]:
    """One model's row; every stage runs only when the ones before it worked."""
    row: dict[str, Any] = {"model": path.name.removesuffix(".onnx"), "valid": "no", "exact": "-",
                           "channels": None, "flops_any": None, "flops_both": None, "blocks": None,
                           "analyze_s": None, "prune_s": None, "frozen": [], "error": None,
                           "error_rel": None}
    stage = "load"
    try:
        model = load_model(path)
        stage = "analyze"
        start = time.perf_counter()
        structure = analyze(model)
        row["analyze_s"] = time.perf_counter() - start
        row["channels"] = channel_share(structure)
        row["flops_any"], row["flops_both"] = flops_shares(structure)
        row["blocks"] = len(structure.blocks)
        row["frozen"] = frozen_reasons(structure)
        plan = half_plan(structure, np.random.default_rng([seed, zlib.crc32(path.name.encode())]))
        stage = "prune"
        start = time.perf_counter()
        pruned = prune_model(model, structure, plan)
        row["prune_s"] = time.perf_counter() - start
        stage = "check"
        onnx.checker.check_model(pruned, full_check=True)
        stage = "mask"
        masked = mask_model(model, structure, plan)
        feeds = random_inputs(model, np.random.default_rng(seed))
        stage = "run pruned"
        got = run(pruned, feeds)
        row["valid"] = "yes"
        stage = "run masked"
        want = run(masked, feeds)
        stage = "compare"
        row["exact"], row["error_rel"] = compare(got, want)
    except Exception as exc:  # a model that breaks any stage is a result, reported in its row
        first = (str(exc).strip().splitlines() or [""])[0]
        row["error"] = f"{stage}: {type(exc).__name__}: {first}"[:200]
    return row


def half_plan(structure, rng: np.random.Generator) -> Plan:
    """Every prunable group keeps a random half (at least one channel, as many in each of its parts), every
    attention a random half of its heads (at least one); each block goes with p = 1/2."""
    groups, in_heads = {}, {}
    for tie in structure.heads:
        heads = structure.group(tie.heads)
        if heads.prunable:
            groups[tie.heads] = tuple(sorted(rng.choice(heads.size, max(1, heads.size // 2), replace=False).tolist()))
            in_heads.update(dict.fromkeys(tie.members, groups[tie.heads]))
    for g in structure.prunable_groups:
        if g.kind != "heads":
            parts = in_heads.get(g.id)
            count = (g.parts if parts is None else len(parts)) * max(1, g.part_size // 2)
            groups[g.id] = random_channels(rng, g.size, count, g.parts, parts)
    blocks = tuple(b.id for b in structure.blocks if rng.random() < 0.5)
    return Plan(groups, blocks)


def compare(got: list[np.ndarray], want: list[np.ndarray]) -> tuple[str, float]:
    """("yes", err) when every output matches within the oracle's tolerance, else ("no (err ...)", err)."""
    if len(got) != len(want):
        return f"no ({len(got)} outputs, want {len(want)})", float("inf")
    worst, exact = 0.0, True
    for a, b in zip(got, want, strict=True):
        if a.shape != b.shape:
            return f"no (shape {a.shape} vs {b.shape})", float("inf")
        scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
        worst = max(worst, float(np.abs(a.astype(np.float64) - b).max()) / scale if a.size else 0.0)
        exact &= bool(np.allclose(a, b, rtol=1e-4, atol=1e-4 * scale))
    return ("yes" if exact else f"no (err {worst:.1e})"), worst


def channel_share(structure) -> float:
    total = sum(g.size for g in structure.groups)
    return sum(g.size for g in structure.groups if g.prunable) / total if total else 0.0


def layer_macs(layer) -> float:
    """Multiply-accumulates of one sample through the layer (see the module docstring)."""
    weight = float(np.prod(layer.weight_shape)) if layer.weight_shape else 0.0

    def size(shape) -> float:
        return float(np.prod([d if isinstance(d, int) and d > 0 else 1 for d in shape[1:]])) if shape else 1.0

    if layer.op == "ConvTranspose":
        return size(layer.input_shape) * weight / max(1, layer.in_channels)
    return size(layer.output_shape) * weight / max(1, layer.out_channels)


def flops_shares(structure) -> tuple[float, float]:
    """(any, both): the prunable shares of weighted-op MACs, as the module docstring defines them."""
    prunable = {g.id for g in structure.groups if g.prunable}

    def share(segments) -> float:
        total = sum(s.size for s in segments)
        return sum(s.size for s in segments if s.group in prunable) / total if total else 0.0

    total = any_side = both_sides = 0.0
    for layer in structure.weighted_layers:
        macs = layer_macs(layer)
        p_in, p_out = share(layer.in_segments), share(layer.out_segments)
        if getattr(layer, "depthwise", False):
            any_part = both_part = p_out
        else:
            any_part, both_part = 1 - (1 - p_in) * (1 - p_out), p_in * p_out
        total += macs
        any_side += macs * any_part
        both_sides += macs * both_part
    return (any_side / total, both_sides / total) if total else (0.0, 0.0)


def frozen_reasons(structure, top: int = 2) -> list[str]:
    """The top causes of frozen channels: reasons pooled with node names blanked, by summed size."""
    pooled: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for g in structure.groups:
        if not g.prunable:
            reason = g.reason or "(no reason given)"
            pooled[re.sub(r"'[^']*'", "'…'", reason)].append((g.size, reason))
    ranked = sorted(pooled.values(), key=lambda items: -sum(s for s, _ in items))
    out = []
    for items in ranked[:top]:
        _, example = max(items)
        text = example if len(example) <= REASON_WIDTH else example[: REASON_WIDTH - 1] + "…"
        more = f", {len(items)} groups" if len(items) > 1 else ""
        out.append(f"{text} [{sum(s for s, _ in items)} ch{more}]")
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f}%"

    def sec(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    print("| model | valid | exact | channels prunable | FLOPs prunable any / both | blocks | analyze s | prune s "
          "| top frozen reasons | error |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        frozen = "; ".join(r["frozen"]).replace("|", "\\|") or "-"
        error = (r["error"] or "").replace("|", "\\|")
        blocks = "-" if r["blocks"] is None else str(r["blocks"])
        flops = f"{pct(r['flops_any'])} / {pct(r['flops_both'])}"
        print(f"| {r['model']} | {r['valid']} | {r['exact']} | {pct(r['channels'])} | {flops} | {blocks} "
              f"| {sec(r['analyze_s'])} | {sec(r['prune_s'])} | {frozen} | {error} |")
    valid = sum(r["valid"] == "yes" for r in rows)
    exact = sum(r["exact"] == "yes" for r in rows)
    print(f"\n{len(rows)} models: valid {valid}/{len(rows)}, exact {exact}/{len(rows)}")


if __name__ == "__main__":
    main()
