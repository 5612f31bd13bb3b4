"""Which entries of a weighted layer's weight read each of its input channels.

The masked model zeroes the entries through which pruned channels enter a layer (and the PyTorch
masks do the same to the parameter), so that pruned channels cannot influence any kept one.
"""

from __future__ import annotations

import numpy as np

from mdp_trt.prune.grouped import consumer_keep


def input_keep_mask(op: str, attrs: dict, weight_shape: tuple[int, ...], kept: np.ndarray, width: int) -> np.ndarray:
    """Boolean mask of the weight's shape: False where a dropped input feature enters.

    `kept`: kept input feature indices; `width`: all input features.
    """
    group = int(attrs.get("group", 1))
    keep = np.ones(weight_shape, dtype=bool)
    if op == "Conv" and group > 1:
        return keep & consumer_keep(weight_shape, kept, width, group).reshape(
            *weight_shape[:2], *([1] * (len(weight_shape) - 2)))
    dropped = np.setdiff1d(np.arange(width), kept)
    if op == "Conv" or (op == "Gemm" and attrs.get("transB", 0)):
        keep[:, dropped] = False
    else:  # ConvTranspose (C_in first), Gemm without transB and MatMul (K first)
        keep[dropped] = False
    return keep


def output_keep_mask(op: str, attrs: dict, weight_shape: tuple[int, ...], kept: np.ndarray, width: int) -> np.ndarray:
    """Boolean mask of the weight's shape: False where the filter of a dropped output channel is."""
    group = int(attrs.get("group", 1))
    keep = np.ones(weight_shape, dtype=bool)
    if op == "ConvTranspose" and group > 1:  # (C_in, C_out / g, k...): outputs are local to each row's group
        return keep & consumer_keep(weight_shape, kept, width, group).reshape(
            *weight_shape[:2], *([1] * (len(weight_shape) - 2)))
    dropped = np.setdiff1d(np.arange(width), kept)
    if op == "Conv" or (op == "Gemm" and attrs.get("transB", 0)):
        keep[dropped] = False
    else:  # ConvTranspose (C_out second), Gemm without transB and MatMul (N second)
        keep[:, dropped] = False
    return keep
