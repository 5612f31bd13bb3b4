"""LayerNorms over pruned channels compute their statistics over the kept ones in the masked model.

A LayerNorm over C reads every channel of its input. The pruned model normalises over the channels the plan
keeps, so the masked model must too, or fine-tuning trains a function other than the one the pruned export
computes: a transformer's embedding width feeds every block's norms. Each `nn.LayerNorm` module behind such
a node gets a forward hook that recomputes its output with the mean and variance of the kept channels (the
pruned ones come out zero). During ONNX export the hook steps aside: the export holds the plain LayerNorm,
which `prune_model` then cuts to the kept channels.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import onnx
import torch
from torch import nn

from mdp_trt.graph.view import attributes
from mdp_trt.torch.graph import TorchGraph


def mask_layer_norms(model: nn.Module, graph: TorchGraph, kept: dict[str, np.ndarray]) -> list[str]:
    """Hook every LayerNorm module whose input the plan prunes; returns the reductions over pruned channels
    left as they are (GroupNorm, a LayerNorm written as arithmetic, ...), whose masked model approximates."""
    left = []
    for reduction in graph.structure.reductions:
        node = graph.node(reduction.node)
        if reduction.input not in kept or node.op_type == "MatMul":  # q @ k^T is exact (see masks.py)
            continue
        module = _layer_norm_module(model, graph, node)
        tc = graph.structure.channels[reduction.input]
        # over the last axis, recorded as a reduction over channels: the channels are that axis
        if module is None or not tc.single or tc.repeat != 1 or module.normalized_shape[0] != len(tc.group):
            left.append(node.name)
            continue
        keep = torch.zeros(len(tc.group), dtype=torch.float64)
        keep[torch.as_tensor(kept[reduction.input])] = 1.0
        module.register_forward_hook(partial(_kept_statistics, keep))
    return sorted(set(left))


def _layer_norm_module(model: nn.Module, graph: TorchGraph, node: onnx.NodeProto) -> nn.LayerNorm | None:
    """The `nn.LayerNorm` over the last axis that a LayerNormalization node was exported from."""
    if node.op_type != "LayerNormalization" or int(attributes(node).get("axis", -1)) != -1 or len(node.input) < 2:
        return None
    if graph.parameter(node.input[1]) is None or not node.input[1].endswith(".weight"):
        return None
    try:
        module = model.get_submodule(node.input[1].removesuffix(".weight"))
    except AttributeError:
        return None
    return module if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1 else None


def _kept_statistics(keep: torch.Tensor, module: nn.LayerNorm, args: tuple, output: torch.Tensor
                     ) -> torch.Tensor | None:
    if torch.onnx.is_in_onnx_export():
        return None
    x = args[0]
    mask = keep.to(dtype=x.dtype, device=x.device)
    count = mask.sum()
    mean = (x * mask).sum(-1, keepdim=True) / count
    centred = (x - mean) * mask
    y = centred * torch.rsqrt((centred * centred).sum(-1, keepdim=True) / count + module.eps)
    if module.weight is not None:
        y = y * module.weight
    if module.bias is not None:
        y = y + module.bias
    return y * mask
