"""A plan as fixed masks on a PyTorch model, so it can be fine-tuned before physical pruning.

What is masked (all computed on the ONNX graph, applied to parameters by name):

* consumer side, as `mdp_trt.prune.mask_model` does: the input slices of weighted layers through
  which pruned channels enter (Conv `weight[:, pruned]`, Linear `weight[:, pruned features]`). This
  alone makes the model compute what the pruned model computes;
* producer side, so that pruned channels are zero rather than merely ignored: the output rows (and
  biases) of the layers producing them, and gamma and beta of every BN they pass through;
* removed blocks: every parameter read only inside the block, and the branch output itself (a forward
  hook on the submodule that returns it; see `blocks.py`).

Masked entries stay exactly zero while training: they are zeroed in place, a gradient hook zeroes
their gradients (so momentum and Adam moments never see them), and a global optimizer step hook
re-zeroes the parameters and any per-parameter optimizer state of the same shape after every step,
whatever the optimizer's update rule or state (pre-existing momentum, weight decay, Adam's epsilon).
Parameters keep their names and shapes, so `export` still writes initializers named like them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.hooks import RemovableHandle
from torch.utils.weak import WeakIdKeyDictionary

from mdp_trt.graph.view import attributes
from mdp_trt.prune.consumers import input_keep_mask, output_keep_mask
from mdp_trt.prune.plan import Plan
from mdp_trt.prune.positions import features, kept_positions
from mdp_trt.torch.blocks import branch_modules, zero_branch_output
from mdp_trt.torch.export import Inputs
from mdp_trt.torch.graph import TorchGraph, trace
from mdp_trt.torch.norms import mask_layer_norms

_MASKS: WeakIdKeyDictionary = WeakIdKeyDictionary()  # parameter -> its keep-mask (same shape, 0/1)
_STEP_HOOK: list[RemovableHandle] = []  # the one global optimizer hook, registered on first use


def apply_plan(model: nn.Module, plan: Plan, example_inputs: Inputs) -> nn.Module:
    """Mask `model` in place by `plan` (group and block ids of `export(model, example_inputs)`); returns it.

    The model trains normally with any optimizer; masked weights, their gradients and optimizer state
    stay zero. In eval mode it computes exactly what `mask_model` (and so `prune_model`) computes. Each
    `nn.LayerNorm` whose input the plan prunes takes its statistics over the kept channels
    (`mdp_trt.torch.norms`). Other normalisations or reductions over pruned channels (GroupNorm, GRN,
    LayerNorm written as arithmetic) still count the zeroed channels: the masked model approximates the
    pruned one there (a warning says so), and only the pruned export of the fine-tuned model is exact.
    """
    return apply_masks(model, trace(model, example_inputs), plan, example_inputs)


def apply_masks(model: nn.Module, graph: TorchGraph, plan: Plan, example_inputs: Inputs) -> nn.Module:
    """`apply_plan` for a model already traced (the pruning flow traces once)."""
    modules = branch_modules(model, graph, plan.remove_blocks, example_inputs)  # before any output is zeroed
    kept = kept_positions(graph.structure, plan)
    statistics = mask_layer_norms(model, graph, kept)
    if statistics:
        warnings.warn(f"the plan prunes channels that {len(statistics)} normalisation(s) over channels read "
                      f"({', '.join(statistics[:3])}{' ...' if len(statistics) > 3 else ''}): their statistics "
                      "still count the zeroed channels, so the masked model only approximates the pruned one",
                      stacklevel=3)
    for name, keep in parameter_masks(graph, plan).items():
        _mask_parameter(graph.parameters[name], keep)
    for module in modules.values():
        module.register_forward_hook(zero_branch_output)
    return model


def parameter_masks(graph: TorchGraph, plan: Plan) -> dict[str, np.ndarray]:
    """Parameter name -> boolean keep-mask of its shape, for every parameter the plan touches."""
    structure = graph.structure
    plan.validate(structure)
    kept = kept_positions(structure, plan)
    masks = _MaskSet(graph)
    for layer in structure.weighted_layers:
        node = graph.node(layer.name)
        source, out = node.input[0], node.output[0]
        weight, transposed = graph.weight(layer)
        attrs, shape = attributes(node), masks.shape(weight)
        if shape is None:
            continue
        shape = shape[::-1] if transposed else shape  # the layout the graph multiplies by
        if source in kept and not layer.depthwise:
            tc = structure.channels[source]
            keep = input_keep_mask(layer.op, attrs, shape, features(kept[source], tc.repeat),
                                   len(tc.group) * tc.repeat)
            masks.keep_only(weight, keep.T if transposed else keep)
        if out in kept:
            width = len(structure.channels[out].group)
            keep = output_keep_mask(layer.op, attrs, shape, kept[out], width)
            masks.keep_only(weight, keep.T if transposed else keep)
            separate = graph.bias(layer)  # a Linear on tokens: MatMul, then Add
            for bias in ([node.input[2]] if len(node.input) > 2 else []) + ([separate] if separate else []):
                if masks.is_vector(bias, width):
                    masks.drop(bias, 0, _dropped(width, kept[out]))
    for node in graph.view.nodes:
        if node.op_type == "BatchNormalization" and node.input[0] in kept:
            dropped = _dropped(len(structure.channels[node.input[0]].group), kept[node.input[0]])
            for name in node.input[1:3]:
                masks.drop(name, 0, dropped)
    masks.drop_all(_block_parameters(graph, plan))
    return masks.keep


class _MaskSet:
    """Keep-masks being built, one per parameter, created all-True on first use."""

    def __init__(self, graph: TorchGraph) -> None:
        self.graph = graph
        self.keep: dict[str, np.ndarray] = {}

    def is_vector(self, name: str, length: int) -> bool:
        parameter = self.graph.parameter(name)
        return parameter is not None and tuple(parameter.shape) == (length,)

    def drop(self, name: str, axis: int, index: np.ndarray) -> None:
        mask = self._mask(name)
        if mask is not None and index.size:
            mask[(slice(None),) * axis + (index,)] = False

    def shape(self, name: str) -> tuple[int, ...] | None:
        parameter = self.graph.parameter(name)
        return None if parameter is None else tuple(parameter.shape)

    def keep_only(self, name: str, keep: np.ndarray) -> None:
        """Drop what `keep` (of the parameter's shape) marks False."""
        mask = self._mask(name)
        if mask is not None:
            mask &= keep

    def drop_all(self, names: Iterable[str]) -> None:
        for name in names:
            mask = self._mask(name)
            if mask is not None:
                mask[...] = False

    def _mask(self, name: str) -> np.ndarray | None:
        parameter = self.graph.parameter(name)
        if parameter is None:
            return None
        return self.keep.setdefault(name, np.ones(tuple(parameter.shape), dtype=bool))


def _dropped(size: int, kept: np.ndarray) -> np.ndarray:
    return np.setdiff1d(np.arange(size), kept)


def _block_parameters(graph: TorchGraph, plan: Plan) -> set[str]:
    """Parameters read only by nodes of removed blocks (nested blocks are inside their parent's nodes)."""
    removed = {name for block_id in plan.remove_blocks for name in graph.structure.block(block_id).nodes}
    names: set[str] = set()
    for node_name in removed:
        for tensor in graph.node(node_name).input:
            if graph.parameter(tensor) is not None and all(
                    reader.name in removed for reader in graph.view.consumers.get(tensor, [])):
                names.add(tensor)
    return names


def _mask_parameter(parameter: nn.Parameter, keep: np.ndarray) -> None:
    mask = torch.as_tensor(keep, dtype=parameter.dtype, device=parameter.device)
    with torch.no_grad():
        parameter.mul_(mask)
    if parameter.requires_grad:
        parameter.register_hook(lambda grad: grad * mask)
    previous = _MASKS.get(parameter)
    _MASKS[parameter] = mask if previous is None else previous * mask
    if not _STEP_HOOK:
        _STEP_HOOK.append(register_optimizer_step_post_hook(_remask_after_step))


def _remask_after_step(optimizer: torch.optim.Optimizer, _args: object, _kwargs: object) -> None:
    """Re-zero masked parameters and their optimizer state after any optimizer's step."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                mask = _MASKS.get(parameter)
                if mask is None:
                    continue
                parameter.mul_(mask)
                for value in optimizer.state.get(parameter, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == parameter.shape:
                        value.mul_(mask)
