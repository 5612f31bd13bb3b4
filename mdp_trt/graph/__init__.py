"""Structure analysis of ONNX graphs: channel groups, weighted layers, removable blocks."""

from mdp_trt.graph.analyze import analyze, prepare
from mdp_trt.graph.load import load_model
from mdp_trt.graph.structure import Block, EpilogueOp, Group, Layer, Reduction, Segment, Structure, TensorChannels

__all__ = [
    "Block",
    "EpilogueOp",
    "Group",
    "Layer",
    "Reduction",
    "Segment",
    "Structure",
    "TensorChannels",
    "analyze",
    "load_model",
    "prepare",
]
