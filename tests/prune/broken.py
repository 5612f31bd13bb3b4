"""Models wrong the way a surgery bug makes them: `onnx.checker` accepts them, ONNX Runtime or the
exactness oracle does not."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "Conv"]


def bad_bias(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose first Conv has a bias one value longer than its output channels (ORT: 'bias must be a 1D
    tensor of size output_channels', only when it runs)."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    conv = _convs(broken)[0]
    channels = _initializer(broken, conv.input[1]).dims[0]
    if len(conv.input) > 2:
        broken.graph.initializer.remove(_initializer(broken, conv.input[2]))
    else:
        conv.input.append(f"{conv.name}.bad_bias")
    broken.graph.initializer.append(numpy_helper.from_array(np.ones(channels + 1, np.float32), conv.input[2]))
    onnx.checker.check_model(broken, full_check=True)
    return broken


def perturbed(model: onnx.ModelProto, index: int = 1) -> onnx.ModelProto:
    """A copy with the weight of its `index`-th Conv scaled by 1.5: it runs, and computes something else."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    weight = _initializer(broken, _convs(broken)[index].input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    return broken


def conv_name(model: onnx.ModelProto, index: int) -> str:
    return _convs(model)[index].name
