"""The exactness oracle: a pruned model must compute what the masked original computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from mdp_trt.graph import Structure
from mdp_trt.importance.selection import random_channels
from mdp_trt.prune import Plan, mask_model, prune_model


def run(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    # The oracle compares graph semantics. ORT's optimiser has its own bugs (it fuses Pad into a
    # following MaxPool even when the summed pads reach the kernel size, then refuses the model).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def random_inputs(model: onnx.ModelProto, rng: np.random.Generator, batch: int = 2) -> dict[str, np.ndarray]:
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def random_plan(structure: Structure, rng: np.random.Generator, block_rate: float = 0.4) -> Plan:
    """Random widths for every prunable group (some left whole), whole heads removed from half the
    attentions whose heads can go, and random blocks removed."""
    groups, heads_of = {}, {}
    heads_groups = {tie.heads for tie in structure.heads}
    for tie in structure.heads:
        size = structure.group(tie.heads).size
        if structure.group(tie.heads).prunable and size > 1 and rng.random() < 0.5:
            kept = tuple(sorted(rng.choice(size, int(rng.integers(1, size)), replace=False).tolist()))
            groups[tie.heads] = kept
            heads_of.update(dict.fromkeys(tie.members, kept))
    for group in structure.prunable_groups:
        if group.id in heads_groups or (group.id not in heads_of and rng.random() < 0.2):
            continue  # leave some groups untouched
        count = int(rng.integers(1, group.part_size + 1))  # per part: the same number in each
        in_parts = heads_of.get(group.id)
        total = count * (group.parts if in_parts is None else len(in_parts))
        groups[group.id] = random_channels(rng, group.size, total, group.parts, in_parts)
    blocks = tuple(b.id for b in structure.blocks if rng.random() < block_rate)
    return Plan(groups, blocks)


def assert_oracle(model: onnx.ModelProto, structure: Structure, plan: Plan, rng: np.random.Generator,
                  atol: float = 1e-4) -> onnx.ModelProto:
    """Prune and mask with `plan`, check the pruned graph, and compare outputs in onnxruntime."""
    pruned = prune_model(model, structure, plan)
    onnx.checker.check_model(pruned, full_check=True)
    onnx.shape_inference.infer_shapes(pruned, check_type=True, strict_mode=True)
    masked = mask_model(model, structure, plan)
    feeds = random_inputs(model, rng)
    got, want = run(pruned, feeds), run(masked, feeds)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol * scale)
    return pruned
