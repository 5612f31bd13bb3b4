"""Real architectures as PyTorch's exporters write them prune to models that run and are exact.

For every family of tests/families.py (torchvision-, timm- and ultralytics-style modules) and every
exporter (TorchScript with and without BN folding, with a dynamic batch, dynamo): the analysis
exposes at least 85% of the channels (the bar the families that already worked set), random plans prune to a model that
ONNX Runtime loads and runs with its optimisations on, and that computes what the masked original
computes. Frozen channels are only those a model's interface or semantics fix.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from mdp_trt.graph import analyze
from mdp_trt.prune.verify import check_runs
from tests import families as fam
from tests.oracle import assert_oracle, random_plan

EXPORTS = [pytest.param(False, False, False, id="torchscript"),
           pytest.param(True, False, False, id="torchscript-fold"),
           pytest.param(True, False, True, id="torchscript-dynamic-batch"),
           pytest.param(True, True, False, id="dynamo")]
# Families whose residual branches must all be found as removable blocks (at least this many).
BLOCKS = {"resnet": 3, "resnext": 2, "regnety": 2, "ghostnet": 4, "convnext": 5, "convnext_cf": 5, "convnext_v2": 5,
          "yolov8": 6, "yolo11": 11, "mobilenet_v3": 2, "efficientnet": 2, "cspdarknet": 5,
          "vit": 4, "deit": 4, "vit_separate_qkv": 4, "vit_mha": 4, "swin": 8, "mobilevit": 4,
          "levit": 4, "efficientformer": 8}  # transformers: attention and MLP apart
# Why a channel may stay frozen in these models: the input, the outputs, a detector's DFL bins (which
# a dynamic batch reshapes with a computed target before their Softmax sees them).
ALLOWED_REASONS = ("graph input", "graph output", "normalises over these channels")
DFL_REASON = "target shape is computed at run time"


@pytest.mark.parametrize(("fold_bn", "dynamo", "dynamic_batch"), EXPORTS)
@pytest.mark.parametrize("name", sorted(fam.FAMILIES))
def test_family_exposes_its_channels_and_prunes_exactly(name: str, fold_bn: bool, dynamo: bool, dynamic_batch: bool,
                                                        family_exports) -> None:
    model = onnx.load(family_exports.path(name, fold_bn=fold_bn, dynamo=dynamo, dynamic_batch=dynamic_batch))
    structure = analyze(model)
    total = sum(g.size for g in structure.groups)
    share = sum(g.size for g in structure.prunable_groups) / total
    assert share >= 0.85, [(g.id, g.size, g.reason) for g in structure.groups if not g.prunable]
    allowed = ALLOWED_REASONS + ((DFL_REASON,) if dynamic_batch and name.startswith("yolo") else ())
    frozen = [g.reason for g in structure.groups if not g.prunable and g.size > 1 and g.kind != "heads"]
    assert all(any(a in reason for a in allowed) for reason in frozen), frozen
    heads = [g for g in structure.groups if g.kind == "heads"]
    assert len(heads) == len(structure.heads) == len([la for la in structure.layers if la.op == "AttentionScores"])
    assert all(g.prunable for g in heads), [g.reason for g in heads]
    assert len(structure.blocks) >= BLOCKS.get(name, 0)
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        pruned = assert_oracle(model, structure, random_plan(structure, rng, block_rate=0.5), rng)
        check_runs(pruned)
