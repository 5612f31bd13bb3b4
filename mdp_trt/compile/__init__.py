"""Compile a (pruned) model for its target: an ONNX Runtime optimised model, or a TensorRT engine."""

from mdp_trt.compile.artifact import Artifact
from mdp_trt.compile.compile import compile_model

__all__ = ["Artifact", "compile_model"]
