"""The scores a plan is solved from, for a PyTorch model: Taylor scores per channel, ablation per block.

Both are computed on the same batches, taken from `data` once (so `data` may be a one-shot iterator).
The result is the importance file format (`mdp_trt.importance.load_scores`): group id -> one score
per channel, block id -> one score.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from mdp_trt.io import atomic_path
from mdp_trt.torch.ablation import ablation_scores
from mdp_trt.torch.blocks import branch_modules
from mdp_trt.torch.data import Batch, first_batches
from mdp_trt.torch.export import Inputs
from mdp_trt.torch.graph import TorchGraph, trace
from mdp_trt.torch.taylor import LossFn, taylor_scores


def taylor_importance(model: nn.Module, data: Iterable[Batch], loss_fn: LossFn, steps: int,
                      example_inputs: Inputs, *, blocks: bool = True) -> dict[str, np.ndarray]:
    """Group id -> one non-negative Taylor score per channel, from the first `steps` batches of `data`;
    with `blocks`, also block id -> the loss change measured with the block removed (`ablation.py`).

    `data` yields `(inputs, targets)` (inputs a tensor or a tuple of tensors); `loss_fn(model(*inputs),
    targets)` is the loss. Group and block ids are those of `export(model, example_inputs)`.
    """
    return model_scores(model, trace(model, example_inputs), first_batches(data, steps), loss_fn, example_inputs,
                        blocks=blocks)


def model_scores(model: nn.Module, graph: TorchGraph, batches: Sequence[Batch], loss_fn: LossFn,
                 example_inputs: Inputs, *, blocks: bool = True) -> dict[str, np.ndarray]:
    """`taylor_importance` on batches already taken, for a model already traced (the flow traces once)."""
    scores = taylor_scores(model, graph, batches, loss_fn)
    block_ids = [b.id for b in graph.structure.blocks] if blocks else []
    if block_ids:
        branches = branch_modules(model, graph, block_ids, example_inputs)
        scores |= {b: np.array([value]) for b, value in ablation_scores(model, branches, batches, loss_fn).items()}
    return scores


def save_importance(scores: dict[str, np.ndarray], path: str | Path) -> None:
    """Write scores in the `.npz` format `build --importance` and `mdp_trt.importance.load_scores` read."""
    arrays = {key: np.asarray(values, dtype=np.float64).reshape(-1) for key, values in scores.items()}
    with atomic_path(Path(path)) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)
