"""Index arithmetic of grouped weights, shared by surgery, the masked model and the PyTorch masks.

A grouped Conv's weight is (C_out, C_in / g, k...): output channel o reads only the input channels
of its own group, part(o) = o // (C_out / g), at local column i = input channel - part(o) * C_in / g.
(ConvTranspose swaps the roles: (C_in, C_out / g, k...).) Pruning keeps the same number of channels
in every part on both sides, so each kept row keeps the same number of local columns.
"""

from __future__ import annotations

import numpy as np


def local_columns(rows: np.ndarray, row_part: int, kept: np.ndarray, col_part: int) -> np.ndarray:
    """For each kept row, the local columns it keeps: shape (len(rows), kept per part).

    `rows`: kept row indices (global); `row_part`: rows per part; `kept`: kept channels on the column
    side (global, sorted); `col_part`: columns per part.
    """
    parts = rows // row_part
    per_part = [kept[(kept >= p * col_part) & (kept < (p + 1) * col_part)] - p * col_part
                for p in range(int(parts.max()) + 1 if rows.size else 0)]
    counts = {len(c) for c in per_part}
    if len(counts) > 1:
        raise ValueError("a grouped weight must keep as many channels in every part")
    return np.stack([per_part[p] for p in parts.tolist()]) if rows.size else np.zeros((0, 0), np.int64)


def slice_grouped(weight: np.ndarray, rows: np.ndarray, cols: np.ndarray, col_total: int, groups: int) -> np.ndarray:
    """The grouped weight keeping `rows` and, in each row's part, the kept channels of `cols`."""
    local = local_columns(rows, weight.shape[0] // groups, cols, col_total // groups)
    return weight[rows[:, None], local]


def consumer_keep(weight_shape: tuple[int, ...], kept_inputs: np.ndarray, in_total: int, groups: int) -> np.ndarray:
    """Keep-mask of a grouped Conv weight's (row, column) entries whose input channel is kept."""
    rows, cols = weight_shape[0], weight_shape[1]
    global_input = (np.arange(rows) // (rows // groups))[:, None] * (in_total // groups) + np.arange(cols)[None, :]
    return np.isin(global_input, kept_inputs)
