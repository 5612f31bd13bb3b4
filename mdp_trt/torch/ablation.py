"""Block importance by ablation: the loss change measured with a residual branch removed.

First-order Taylor scores estimate the loss change of removing a few channels well and of removing a
whole branch badly: the branch's channels are scored one at a time, each as if every other stayed,
and a network can lean on a block far more than its channels' summed gradients show. Removing a block
is one discrete change, so it is measured: the loss with the branch's output zeroed, against the
loss of the model as it is, on the same batches the channel scores use (a forward pass per block and
batch, no gradients). Accumulated like the channel scores, as the sum over batches of the per-batch
absolute change, so the two are in the same units and `mdp_trt.solve.from_model` can compare them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mdp_trt.torch.blocks import zero_branch_output
from mdp_trt.torch.data import Batch
from mdp_trt.torch.export import as_tuple, eval_mode
from mdp_trt.torch.taylor import LossFn


def ablation_scores(model: nn.Module, branches: Mapping[str, nn.Module], batches: Sequence[Batch],
                    loss_fn: LossFn) -> dict[str, float]:
    """Block id -> sum over `batches` of |loss with the block's branch zeroed - loss of the model|.

    `branches` maps block ids to the submodules returning their branch outputs (`branch_modules`).
    """
    scores = dict.fromkeys(branches, 0.0)
    with eval_mode(model), torch.no_grad():
        for inputs, targets in batches:
            base = float(loss_fn(model(*as_tuple(inputs)), targets))
            for block_id, module in branches.items():
                handle = module.register_forward_hook(zero_branch_output)
                try:
                    removed = float(loss_fn(model(*as_tuple(inputs)), targets))
                finally:
                    handle.remove()
                scores[block_id] += abs(removed - base)
    return scores
