"""BatchNorm statistics re-estimated for a pruned model.

A BN's running mean and variance describe its input in the model it was trained in. Pruning changes
that input: a conv that lost input channels, or a residual sum that lost a branch, produces different
statistics, and in eval mode the stale ones shift and scale every channel wrongly. A pruned model
evaluated as it is can do no better than chance even when the plan kept most of its importance, and a
short fine-tune mostly measures how fast the running averages forget (BN momentum 0.1: after 12
batches, 28% of each statistic is still the dense model's). Re-estimating the statistics on a few
batches, forward only, is the standard first step after pruning (EagleEye's adaptive BN, Li et al.
2020) and the fair place to compare plans from.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mdp_trt.torch.data import Batch, first_batches
from mdp_trt.torch.export import as_tuple


def recalibrate_batch_norm(model: nn.Module, data: Iterable[Batch], steps: int) -> nn.Module:
    """Replace every BatchNorm's running statistics by their average over the first `steps` batches of
    `data` (`(inputs, targets)` pairs; the targets are not used). Parameters, masks and the model's
    train/eval mode are left as they were. Returns the model."""
    batches = first_batches(data, steps)
    # _BatchNorm: every BatchNorm1d/2d/3d, SyncBatchNorm and lazy variant, and no other norm.
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    try:
        model.train()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: every batch counts the same
        with torch.no_grad():
            for inputs, _ in batches:
                model(*as_tuple(inputs))
    finally:
        for module, training in modes.items():
            module.training = training
        for norm, momentum in momenta.items():
            norm.momentum = momentum
    return model
