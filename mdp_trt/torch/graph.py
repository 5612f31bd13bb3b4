"""The bridge from a PyTorch model to its ONNX structure: which parameter is which initializer.

Channel groups, layers and blocks are found on the ONNX graph by `mdp_trt.graph.analyze`, never
re-derived from PyTorch modules. Because `export` keeps initializers equal to parameters (same name,
shape and layout), everything computed on the graph (masks, score positions) applies to a parameter
by name; the only thing left to know is which axis of a weight holds output and which input channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from torch import nn

from mdp_trt.graph import Structure, analyze
from mdp_trt.graph.analyze import prepare
from mdp_trt.graph.structure import Layer
from mdp_trt.graph.view import GraphView, attributes
from mdp_trt.torch.export import Inputs, export


@dataclass(frozen=True)
class TorchGraph:
    """A model's ONNX export (unique node names), its Structure, and its parameters by name."""

    onnx_model: onnx.ModelProto
    structure: Structure
    view: GraphView
    parameters: dict[str, nn.Parameter]

    def node(self, name: str) -> onnx.NodeProto:
        return self.view.node_by_name[name]

    def parameter(self, name: str) -> nn.Parameter | None:
        return self.parameters.get(name)

    def weight(self, layer: Layer) -> tuple[str, bool]:
        """The parameter holding the layer's weight, and whether the graph reads it transposed: a Linear on
        tokens exports as `MatMul(x, Transpose(weight))` when constants are not folded, as `export` does."""
        name = self.node(layer.name).input[1]
        producer = self.view.producer.get(name)
        if (producer is not None and producer.op_type == "Transpose" and self.parameter(producer.input[0]) is not None
                and attributes(producer).get("perm", [1, 0]) == [1, 0]):
            return producer.input[0], True
        return name, False

    def bias(self, layer: Layer) -> str | None:
        """The bias the exporter wrote apart after the layer's MatMul (its `BiasAdd` epilogue), if any."""
        add = next((op for op in layer.epilogue if op.op == "BiasAdd"), None)
        if add is None:
            return None
        node = self.node(add.name)
        return next((name for name in node.input if self.parameter(name) is not None), None)

    def batch_norm(self, layer: Layer) -> onnx.NodeProto | None:
        """The BatchNormalization fused after `layer` (its epilogue), if any."""
        bn = next((op for op in layer.epilogue if op.op == "BatchNormalization"), None)
        return None if bn is None else self.node(bn.name)


def trace(model: nn.Module, example_inputs: Inputs) -> TorchGraph:
    """Export `model` in memory and analyse the export."""
    onnx_model = prepare(export(model, example_inputs))
    return TorchGraph(onnx_model, analyze(onnx_model), GraphView(onnx_model, infer_shapes=False),
                      dict(model.named_parameters(remove_duplicate=False)))


def output_axis(layer: Layer, node: onnx.NodeProto) -> int:
    """Axis of the layer's weight that indexes its output channels."""
    if layer.op == "ConvTranspose":
        return 0 if layer.depthwise else 1  # (C_in, C_out / group, k...)
    if layer.op == "Gemm" and not attributes(node).get("transB", 0):
        return 1  # (K, N)
    return 1 if layer.op == "MatMul" else 0  # Conv (C_out, C_in / group, k...), Gemm with transB (N, K)
