"""User-supplied channel scores (`build --importance FILE.npz`).

The file is a NumPy `.npz` archive. Each entry is keyed either by a group id (`g3`: one score per
channel of the group, in the group's order as `analyze --json` numbers it) or by the name of a
producing layer's weight initializer (`layer1.0.conv1.weight`: one score per output channel of that
layer; scores of several producers of a group add up). Every prunable group needs scores.
A removable block's id (`b2`, as `analyze --json` numbers blocks) may hold one value: the loss change
measured with the block removed, which prices removing it (see `mdp_trt.solve.from_model`). Scores
given per layer also price the blocks holding those layers: a block costs at least their sum.
`mdp_trt.torch.taylor_importance` writes this format.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx

from mdp_trt.errors import InputError
from mdp_trt.graph.structure import Structure
from mdp_trt.importance.selection import with_head_scores


def read_scores(path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive as float64 scores, or a one-line InputError for a file that is missing,
    not a NumPy .npz archive, cut short, or holding scores that are not finite and non-negative."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise InputError(f"{path}: not a NumPy .npz archive (a single array)")
            arrays = {key: np.asarray(archive[key], dtype=np.float64).reshape(-1) for key in archive.files}
    except FileNotFoundError:
        raise InputError(f"{path}: no such importance file") from None
    except (OSError, EOFError, ValueError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"{path}: not a readable NumPy .npz archive ({exc})") from None
    for key, values in arrays.items():
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise InputError(f"{path}: scores of '{key}' must be finite and non-negative")
    return arrays


def load_scores(path: Path, model: onnx.ModelProto, structure: Structure) -> dict[str, np.ndarray]:
    """Group id -> per-channel scores, plus block id -> one score for the blocks the file scores."""
    arrays = read_scores(path)
    groups = {g.id: g for g in structure.groups}
    block_ids = {b.id for b in structure.blocks}
    weight_of = {node.name: node.input[1] for node in model.graph.node if len(node.input) > 1}
    layer_by_weight = {weight_of.get(la.name): la for la in structure.weighted_layers}
    node_output = {node.name: node.output[0] for node in model.graph.node}
    group_ids = [g.id for g in structure.groups]
    parents = {b.id: b.parent for b in structure.blocks}
    scores = {g.id: np.zeros(g.size) for g in structure.groups}
    held = dict.fromkeys(block_ids, 0.0)  # the scores of the layers inside each block
    covered: set[str] = set()
    for key, values in arrays.items():
        if key in groups:
            if values.size != groups[key].size:
                raise InputError(f"{path}: '{key}' has {values.size} scores; the group has {groups[key].size}")
            scores[key] += values
            covered.add(key)
        elif key in block_ids:
            if values.size != 1:
                raise InputError(f"{path}: block '{key}' needs one score, got {values.size}")
            scores[key] = values
        elif key in layer_by_weight:
            layer = layer_by_weight[key]
            tc = structure.channels[node_output[layer.name]]
            if values.size != len(tc.group):
                raise InputError(f"{path}: '{key}' has {values.size} scores; the layer has {len(tc.group)} "
                                 "output channels")
            for position, (g, c) in enumerate(zip(tc.group.tolist(), tc.channel.tolist(), strict=True)):
                scores[group_ids[g]][c] += values[position]
                covered.add(group_ids[g])
            block = layer.block
            while block is not None:
                held[block] += float(values.sum())
                block = parents[block]
        else:
            raise InputError(f"{path}: '{key}' is neither a group id, a block id nor a layer's weight name")
    for block, total in held.items():  # a block costs at least the layers it holds
        if total > float(np.sum(scores.get(block, 0.0))):
            scores[block] = np.array([total])
    missing = [g.id for g in structure.prunable_groups if g.id not in covered and g.kind != "heads"]
    if missing:
        raise InputError(f"{path}: no scores for prunable group(s) {', '.join(missing[:8])}"
                         + (" ..." if len(missing) > 8 else ""))
    return with_head_scores(structure, scores)  # heads the file does not score: by their channels
