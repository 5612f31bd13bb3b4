"""Which submodule computes a residual block's branch output, so that removing the block can zero it.

The ONNX side names the branch output tensor; PyTorch has modules, not tensor names. Reading module
paths out of the exporter's node names would tie us to one exporter's naming scheme, so the mapping
is established on values instead: the model and its export run on the same random input, and the
branch output is matched to the submodule whose output equals it. Only submodules called exactly once
qualify (a hook on a module reused elsewhere, like a shared ReLU, would zero more than the branch).
Nested candidates (a BN and the Sequential that ends with it) return the same tensor; the outermost,
the last to return, is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from mdp_trt.errors import InputError
from mdp_trt.torch.export import Inputs, as_tuple, eval_mode
from mdp_trt.torch.graph import TorchGraph

_SEED = 0


def branch_modules(model: nn.Module, graph: TorchGraph, block_ids: Sequence[str],
                   example_inputs: Inputs) -> dict[str, nn.Module]:
    """Block id -> the submodule whose output is the block's branch output (InputError if none is)."""
    if not block_ids:
        return {}
    inputs = _probe_inputs(as_tuple(example_inputs))
    blocks = [graph.structure.block(b) for b in block_ids]
    targets = _onnx_values(graph.onnx_model, [b.branch_output for b in blocks], inputs)
    returned = _single_call_outputs(model, inputs)
    found: dict[str, nn.Module] = {}
    for block, target in zip(blocks, targets, strict=True):
        matches = [module for module, value in returned if value.shape == target.shape and _close(value, target)]
        if not matches:
            raise InputError(f"block {block.id}: its branch output '{block.branch_output}' is not the output of a "
                             "submodule called once, so PyTorch cannot remove it; prune without blocks")
        found[block.id] = matches[-1]
    return found


def _probe_inputs(example: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Seeded normal noise shaped like the example (floating inputs); zeros would match too much."""
    generator = torch.Generator().manual_seed(_SEED)
    return tuple(torch.randn(t.shape, generator=generator, dtype=t.dtype) if t.is_floating_point() else t
                 for t in example)


def _onnx_values(model: onnx.ModelProto, tensors: list[str], inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in tensors)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {arg.name: t.detach().cpu().numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    return session.run(tensors, feeds)


def _single_call_outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[tuple[nn.Module, np.ndarray]]:
    """(module, output) for every submodule called exactly once with a tensor output, in return order."""
    calls: dict[nn.Module, int] = {}
    returned: list[tuple[nn.Module, np.ndarray]] = []

    def record(module: nn.Module, _args: object, output: object) -> None:
        calls[module] = calls.get(module, 0) + 1
        if isinstance(output, torch.Tensor):
            returned.append((module, output.detach().cpu().numpy().copy()))

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with eval_mode(model), torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return [(m, value) for m, value in returned if calls[m] == 1]


def _close(value: np.ndarray, target: np.ndarray) -> bool:
    scale = float(np.abs(target).max()) if target.size else 0.0
    return scale > 0 and bool(np.allclose(value, target, rtol=1e-3, atol=1e-4 * scale))


def zero_branch_output(_module: nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor | None:
    """Forward hook for a removed block's branch module: it contributes nothing. During ONNX export the
    branch is left in the graph (the plan removes it from the export with `prune_model`)."""
    return None if torch.onnx.is_in_onnx_export() else torch.zeros_like(output)
