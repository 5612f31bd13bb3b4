"""ONNX export of a PyTorch model in the form the rest of mdp-trt relies on.

`keep_bn=True` (the default, and the only form `mdp_trt.torch` itself uses) guarantees two things:

* BatchNormalization stays a node of its own (TorchScript exporter, `TrainingMode.PRESERVE` on a model
  in eval mode), so Taylor scores can be read off BN's gamma and beta and surgery slices BN statistics.
* Every initializer is a parameter or buffer exported as is: same name (`layer1.0.conv1.weight`), shape
  and layout. That is why `do_constant_folding=False`: folding turns expressions of parameters into new
  initializers named by the exporter (a Linear applied to a 3-D tensor becomes `MatMul` with a folded,
  transposed weight `onnx::MatMul_62`). Without folding, masks and scores computed on the ONNX graph
  apply to the PyTorch parameters by name lookup. `export` checks this for the weights of every weighted
  op and BN and raises `InputError` if it ever fails.

`keep_bn=False` is a deployment export (`TrainingMode.EVAL` with folding: BN is folded into the conv,
whose weights get new names); the property above does not hold for it and nothing here relies on it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch
from torch import nn

from mdp_trt.errors import InputError
from mdp_trt.graph.structure import WEIGHTED_OPS
from mdp_trt.io import save_model_atomic
from mdp_trt.prune.verify import check_runs

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
# Initializer slots that must be parameters: weighted ops' weight and bias, BN's scale/bias/statistics.
_PARAMETER_SLOTS = {**{op: (1, 2) for op in WEIGHTED_OPS}, "BatchNormalization": (1, 2, 3, 4)}

Inputs = torch.Tensor | Sequence[torch.Tensor]


def as_tuple(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    """Model inputs as the tuple `model(*inputs)` takes (one tensor or a sequence of them)."""
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def export(model: nn.Module, example_inputs: Inputs, path: str | Path | None = None,
           keep_bn: bool = True) -> onnx.ModelProto:
    """Export `model` to ONNX opset 17 with a symbolic batch axis; write it to `path` if given.

    Inputs are named `input` (`input_1`, ... for further inputs), the output `output`. The model is
    exported in eval mode (its mode is restored afterwards). Removed-block masks installed by
    `apply_plan` step aside during export: the file holds the architecture with its (masked) weights,
    and `mdp_trt.prune.prune_model` with the plan removes the blocks. A file is written only once the
    model loads and runs in ONNX Runtime (`VerificationError` otherwise).
    """
    inputs = as_tuple(example_inputs)
    input_names = [INPUT_NAME] + [f"{INPUT_NAME}_{i}" for i in range(1, len(inputs))]
    dynamic_axes = {name: {0: "batch"} for name in [*input_names, OUTPUT_NAME]}
    buffer = io.BytesIO()
    with eval_mode(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated in favour of dynamo
        torch.onnx.export(
            model,
            inputs,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL,
            do_constant_folding=not keep_bn,
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
        )
    onnx_model = onnx.load_from_string(buffer.getvalue())
    _restore_deduplicated(onnx_model, model)
    if keep_bn:
        check_parameter_names(onnx_model, model)
    if path is not None:
        check_runs(onnx_model, label="the exported model")  # nothing is written that does not run
        save_model_atomic(onnx_model, Path(path))
    return onnx_model


def check_parameter_names(onnx_model: onnx.ModelProto, model: nn.Module) -> None:
    """Raise InputError unless every weight and BN initializer is a parameter or buffer of `model`
    with the same shape (the property the whole PyTorch bridge rests on)."""
    shapes = {name: tuple(t.shape) for name, t in
              [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]}
    initializers = {t.name: tuple(t.dims) for t in onnx_model.graph.initializer}
    for node in onnx_model.graph.node:
        for slot in _PARAMETER_SLOTS.get(node.op_type, ()):
            name = node.input[slot] if slot < len(node.input) else ""
            if name in initializers and shapes.get(name) != initializers[name]:
                raise InputError(f"ONNX export: initializer '{name}' of {node.op_type} '{node.name}' is not a "
                                 "parameter of the model; mdp_trt.torch needs weights exported under their "
                                 "parameter names")


def _restore_deduplicated(onnx_model: onnx.ModelProto, model: nn.Module) -> None:
    """Give every parameter its own initializer again, in place.

    The exporter stores parameters with equal values once and reads the others through Identity nodes
    (a masked model has many all-zero parameters, a fresh one many BN scales of ones). A BN whose gamma
    is an Identity output is no longer a BN with constant parameters to the analysis, and the name of
    the parameter is lost for the bridge, so the copies are put back.
    """
    names = {name for name, _ in [*model.named_parameters(remove_duplicate=False),
                                  *model.named_buffers(remove_duplicate=False)]}
    graph = onnx_model.graph
    initializers = {t.name: t for t in graph.initializer}
    aliases = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers
               and n.output[0] in names and n.output[0] not in initializers]
    for node in aliases:
        copy = onnx.TensorProto()
        copy.CopyFrom(initializers[node.input[0]])
        copy.name = node.output[0]
        graph.initializer.append(copy)
        graph.node.remove(node)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode for the block, each back in its own mode afterwards."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)
