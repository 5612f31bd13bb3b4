"""Nothing is written that does not run: a model we made is loaded, run and, where cheap, checked exact.

A pruned model can pass `onnx.checker` and still be refused by ONNX Runtime (a Conv bias of the wrong
length is only caught when the kernel runs), or run and compute something else than the masked
original. Either is a bug of ours, so it raises `VerificationError` (exit code 4), before anything is
written, with ONNX Runtime's own first line (which names the node) or the output that differs.

Two kinds of session, for two reasons:

* `check_runs` loads the model with ONNX Runtime's default options, all graph optimisations on, the way
  `compile` and users load it, and runs it once: what users will run must load and run.
* `compare_with_masked` runs the pruned and the masked model with graph optimisations off and compares
  every output. It checks graph semantics: the optimiser rounds differently across fusions, and it has
  bugs of its own (it fuses a Pad into a following MaxPool even when the summed pads reach the kernel
  size, then refuses the model; see tests/oracle.py) that must not read as a mismatch of ours.

Both run on the CPU with one thread, on seeded random inputs at batch 1 unless the model fixes its
batch. The comparison builds the masked model and runs two more sessions, so `verify_pruned` does it
only when the model is cheap to run (`COMPARE_MAX_FLOPS`) unless told otherwise.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx

from mdp_trt.errors import VerificationError
from mdp_trt.graph import Structure
from mdp_trt.graph.input_shapes import Shapes, with_input_shapes
from mdp_trt.latency.backends.base import input_feeds
from mdp_trt.latency.backends.ort import ort_error_line, session_options
from mdp_trt.prune.masked import mask_model
from mdp_trt.prune.plan import Plan
from mdp_trt.prune.positions import features, kept_positions
from mdp_trt.stats import flop_count

# The masked comparison runs when the original needs at most this many FLOPs at the verification batch:
# zoo resnet50 at 224 (8.2 GFLOPs) is verified, comparison included, in 0.4-0.6 s on one core of this
# project's machine (a warm build of it takes ~5 s); a model at the limit takes a few seconds.
COMPARE_MAX_FLOPS = 50e9
# Outputs agree when |pruned - masked| <= RTOL * |masked| + RTOL * max|masked| (per output): summation
# over fewer channels rounds differently, and a wrong channel is off by the output's own scale.
RTOL = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-6}
REPORT = "this is a bug in mdp-trt: please report this model"

Compare = bool | Literal["auto"]


@dataclass(frozen=True)
class VerifyResult:
    """What was checked: `compared` with the masked original (`max_difference` relative to each output's
    magnitude), or why not (`skipped`)."""

    seconds: float
    compared: bool
    max_difference: float | None = None
    skipped: str = ""

    def summary(self) -> str:
        if self.compared:
            return f"runs in ONNX Runtime, equals the masked model (max relative difference {self.max_difference:.1e})"
        return f"runs in ONNX Runtime; not compared with the masked model ({self.skipped})"


def verify_pruned(original: onnx.ModelProto, structure: Structure, plan: Plan, pruned: onnx.ModelProto, *,
                  masked: onnx.ModelProto | None = None, compare: Compare = "auto", batch: int = 1,
                  input_shapes: Shapes | None = None, seed: int = 0) -> VerifyResult:
    """Check that `pruned` (= `prune_model(original, structure, plan)`) loads, runs, and, when compared,
    computes what the masked original computes; raises `VerificationError` otherwise.

    `masked` reuses a masked model the caller built anyway (`--emit-masked`). `compare="auto"` compares
    when the original costs at most `COMPARE_MAX_FLOPS` at `batch`. `input_shapes` gives sizes for inputs
    symbolic off the batch axis (`--input-shape`).
    """
    start = time.perf_counter()
    check_runs(pruned, batch=batch, input_shapes=input_shapes, seed=seed)
    skipped = ""
    if compare == "auto":
        flops = flop_count(with_input_shapes(original, input_shapes or {}, batch), batch)
        compare = flops <= COMPARE_MAX_FLOPS
        skipped = f"{flops / 1e9:.1f} GFLOPs at batch {batch}, over the {COMPARE_MAX_FLOPS / 1e9:.0f} GFLOPs limit"
    if not compare:
        return VerifyResult(time.perf_counter() - start, False, skipped=skipped or "not asked")
    if masked is None:
        masked = mask_model(original, structure, plan)
    difference = compare_with_masked(structure, plan, pruned, masked, batch=batch, input_shapes=input_shapes,
                                     seed=seed)
    return VerifyResult(time.perf_counter() - start, True, difference)


def check_runs(model: onnx.ModelProto, *, label: str = "the pruned model", batch: int = 1,
               input_shapes: Shapes | None = None, seed: int = 0) -> None:
    """Load `model` with ONNX Runtime's default options (optimisations on) and run it once."""
    feeds = input_feeds(model, batch, seed, input_shapes)
    _run(model, feeds, optimise=True, label=label)


def compare_with_masked(structure: Structure, plan: Plan, pruned: onnx.ModelProto, masked: onnx.ModelProto, *,
                        batch: int = 1, input_shapes: Shapes | None = None, seed: int = 0) -> float:
    """Run both with graph optimisations off on the same inputs and compare every output by name; returns
    the largest difference relative to each output's magnitude, raises `VerificationError` on a mismatch
    (naming the output, and the first tensor that differs when it can be found)."""
    feeds = input_feeds(masked, batch, seed, input_shapes)
    got = _run(pruned, feeds, optimise=False, label="the pruned model")
    want = _run(masked, feeds, optimise=False, label="the masked model")
    if list(got) != list(want):
        raise VerificationError(f"the pruned model's outputs ({', '.join(got)}) are not the model's "
                                f"({', '.join(want)}); {REPORT}")
    worst = 0.0
    for name, expected in want.items():
        problem, difference = _mismatch(got[name], expected)
        if problem:
            where = _first_difference(structure, plan, pruned, masked, feeds)
            raise VerificationError(f"the pruned model does not compute what the masked model computes: output "
                                    f"'{name}' {problem}{where}; {REPORT}")
        worst = max(worst, difference)
    return worst


def _mismatch(got: Any, want: Any) -> tuple[str, float]:
    """('' and the relative difference) when the arrays agree, else (what is wrong, inf)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"has shape {list(got.shape)} instead of {list(want.shape)}", np.inf
    if got.dtype != want.dtype:
        return f"has dtype {got.dtype} instead of {want.dtype}", np.inf
    if not np.issubdtype(want.dtype, np.floating):
        return ("differs", np.inf) if not np.array_equal(got, want) else ("", 0.0)
    if (np.isfinite(want) & ~np.isfinite(got)).any():
        return "holds NaN or Inf where the masked model's is finite", np.inf
    rtol = RTOL.get(want.dtype, 1e-3)
    finite = np.isfinite(want)
    scale = float(np.abs(want[finite]).max()) if finite.any() else 0.0
    if not np.allclose(got, want, rtol=rtol, atol=rtol * scale, equal_nan=True):
        diff = float(np.abs(got[finite] - want[finite]).max())
        return f"differs by up to {diff:.3g} (its values reach {scale:.3g})", np.inf
    diff = float(np.abs(got[finite].astype(np.float64) - want[finite]).max()) if finite.any() else 0.0
    return "", diff / scale if scale > 0 else diff


def _first_difference(structure: Structure, plan: Plan, pruned: onnx.ModelProto, masked: onnx.ModelProto,
                      feeds: Mapping[str, np.ndarray]) -> str:
    """'; it first differs at ...' naming the first tensor, in graph order, where the pruned model stops
    computing the masked model's kept channels; '' when that is a graph output or the search fails.

    The masked model keeps every tensor at full width and the pruned one keeps only the plan's channels,
    so each masked tensor is sliced to its kept positions (`kept_positions`) before the comparison;
    tensors that exist in one model only (inside removed blocks) or whose shapes still disagree are
    skipped. It runs only after a mismatch, on a model cheap enough to compare.
    """
    try:
        got = _run(_expose_all(pruned), feeds, optimise=False, label="the pruned model")
        want = _run(_expose_all(masked), feeds, optimise=False, label="the masked model")
    except VerificationError:
        return ""
    kept = kept_positions(structure, plan)
    outputs = {o.name for o in masked.graph.output}
    for node in masked.graph.node:
        for name in node.output:
            if not (isinstance(got.get(name), np.ndarray) and isinstance(want.get(name), np.ndarray)):
                continue
            expected = want[name]
            if name in kept:
                channels = structure.channels[name]
                if not channels.single:
                    continue
                positions = features(kept[name], channels.repeat)
                if expected.ndim <= channels.axis or positions.max() >= expected.shape[channels.axis]:
                    continue
                expected = np.take(expected, positions, axis=channels.axis)
            if got[name].shape != expected.shape or not _mismatch(got[name], expected)[0]:
                continue
            if name in outputs:
                return ""
            return f"; it first differs at node '{node.name}'" + (f" (output '{name}')" if name != node.name else "")
    return ""


def _expose_all(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose graph outputs include every node's outputs (their types left to ONNX Runtime)."""
    exposed = copy.deepcopy(model)
    present = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in present:
                exposed.graph.output.add().name = name
                present.add(name)
    return exposed


def _run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, optimise: bool, label: str) -> dict[str, Any]:
    """Outputs by name; ONNX Runtime's refusal to load or run becomes a VerificationError naming the cause."""
    import onnxruntime as ort

    options = session_options(1)
    options.log_severity_level = 4  # the error is raised to us; keep ORT from also logging it to stderr
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types subclass plain Exception
        raise VerificationError(f"{label} does not load in ONNX Runtime ({_reason(exc)}); {REPORT}") from None
    try:
        values = session.run(None, dict(feeds))
    except Exception as exc:
        raise VerificationError(f"{label} does not run in ONNX Runtime ({_reason(exc)}); {REPORT}") from None
    return {output.name: value for output, value in zip(session.get_outputs(), values, strict=True)}


def _reason(exc: Exception) -> str:
    line = ort_error_line(exc)
    if line is None:
        raise exc
    return line
