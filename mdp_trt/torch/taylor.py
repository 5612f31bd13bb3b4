"""First-order Taylor channel importance (Molchanov et al. 2019), the criterion HALP and MDP use.

Removing channel c of a group zeroes its contribution in every layer that produces the group; to
first order the loss then changes by the sum, over the parameters carrying that contribution, of
`w * dL/dw`. Where a producer is followed by BatchNormalization those parameters are BN's gamma and
beta (HALP's `gamma * dL/dgamma + beta * dL/dbeta`); where it is not, the producer's filter and bias.
The terms of all producers of a group add up before the absolute value is taken: they are one channel.

Accumulation: for each of `steps` batches, the absolute value of that batch's term, summed over the
batches. Molchanov et al. and HALP accumulate a non-negative per-batch quantity (squared or absolute)
rather than taking the absolute value of the summed gradient, so that batches whose gradients
disagree in sign do not cancel and make a channel the loss is sensitive to look unimportant.

Scores are taken with the model in eval mode (BN uses its running statistics): scoring must not
change the model, and in train mode every batch would update BN's running statistics. Gradients are
computed with `torch.autograd.grad`, so parameters' `.grad` are left as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mdp_trt.importance.selection import with_head_scores
from mdp_trt.torch.data import Batch
from mdp_trt.torch.export import as_tuple, eval_mode
from mdp_trt.torch.graph import TorchGraph, output_axis

LossFn = Callable[[Any, Any], torch.Tensor]


@dataclass(frozen=True)
class _Term:
    """One producer's share of its channels' terms: the (parameter, channel axis) pairs that carry its
    output channels, and for each output position the slot of the flat score vector it adds to."""

    parts: tuple[tuple[str, int], ...]
    slots: torch.Tensor


def taylor_scores(model: nn.Module, graph: TorchGraph, batches: Sequence[Batch],
                  loss_fn: LossFn) -> dict[str, np.ndarray]:
    """Group id -> one non-negative score per channel (canonical order), accumulated over `batches`.

    Each batch is `(inputs, targets)` (inputs a tensor or a tuple of tensors); `loss_fn(model(*inputs),
    targets)` is the loss. Group ids are those of the traced `graph`.
    """
    groups = graph.structure.groups
    offsets = np.cumsum([0] + [g.size for g in groups])
    terms = _terms(graph, offsets)
    names = sorted({name for term in terms for name, _ in term.parts})
    parameters = [graph.parameters[name] for name in names]
    scores = torch.zeros(int(offsets[-1]), dtype=torch.float64)
    with eval_mode(model), _requiring_grad(parameters), torch.enable_grad():
        for inputs, targets in batches:
            loss = loss_fn(model(*as_tuple(inputs)), targets)
            grads = dict(zip(names, torch.autograd.grad(loss, parameters, allow_unused=True), strict=True))
            batch = torch.zeros_like(scores)
            for term in terms:
                for name, axis in term.parts:
                    if grads[name] is not None:
                        batch.index_add_(0, term.slots, _per_channel(graph.parameters[name], grads[name], axis))
            scores += batch.abs()
    flat = scores.numpy()
    return with_head_scores(graph.structure, {g.id: flat[offsets[i]:offsets[i + 1]].copy()
                                              for i, g in enumerate(groups)})


def _terms(graph: TorchGraph, offsets: np.ndarray) -> list[_Term]:
    structure = graph.structure
    terms = []
    for layer in structure.weighted_layers:
        node = graph.node(layer.name)
        tc = structure.channels[node.output[0]]
        slots = torch.as_tensor(offsets[tc.group] + tc.channel, dtype=torch.long)
        bn = graph.batch_norm(layer)
        if bn is not None and all(_is_vector(graph, name, len(tc.group)) for name in bn.input[1:3]):
            parts = ((bn.input[1], 0), (bn.input[2], 0))
        else:
            weight, transposed = graph.weight(layer)
            axis = output_axis(layer, node)
            parts = ((weight, 1 - axis if transposed else axis),)
            for bias in ([node.input[2]] if len(node.input) > 2 else []) + [graph.bias(layer) or ""]:
                if bias and _is_vector(graph, bias, len(tc.group)):
                    parts += ((bias, 0),)
        parts = tuple(p for p in parts if graph.parameter(p[0]) is not None)
        if parts:
            terms.append(_Term(parts, slots))
    return terms


def _is_vector(graph: TorchGraph, name: str, length: int) -> bool:
    parameter = graph.parameter(name)
    return parameter is not None and tuple(parameter.shape) == (length,)


def _per_channel(parameter: torch.Tensor, grad: torch.Tensor, axis: int) -> torch.Tensor:
    """Sum of `w * dL/dw` over everything but the channel axis."""
    product = (parameter.detach() * grad).to(torch.float64)
    return product.movedim(axis, 0).reshape(product.shape[axis], -1).sum(dim=1).cpu()


@contextmanager
def _requiring_grad(parameters: list[nn.Parameter]) -> Iterator[None]:
    """Frozen parameters get gradients for the duration of scoring (their importance still counts)."""
    frozen = [p for p in parameters if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
