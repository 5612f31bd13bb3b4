"""NumPy reference of the spatial ops the zoo builder emits, run on a probe batch while it builds.

A trained network's BN running mean/var are the statistics of the BN's input. Random weights with BN
statistics drawn around (0, 1) leave a residual stream un-normalised instead: it doubles its variance
at every block and ResNet-50's logits reach 1e3, and moment estimates (no data) drift by 100x through
VGG because max-pooling and channel correlations defeat them. So the builder pushes a small batch of
random images through each op as it emits it and sets each BN's running statistics from what arrives.
These functions follow ONNX semantics for the attribute values the builder uses (NCHW, square kernels).
"""

from __future__ import annotations

import numpy as np


def _taps(x: np.ndarray, k: int, stride: int) -> list[np.ndarray]:
    """The k*k shifted, strided views of x (one per kernel tap), each (N, C, Ho, Wo).

    Copying k*k such slices is much faster than materialising a 6-D sliding-window view.
    """
    ho = (x.shape[2] - k) // stride + 1
    wo = (x.shape[3] - k) // stride + 1
    return [
        x[:, :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
        for i in range(k)
        for j in range(k)
    ]


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int, pad: int, group: int) -> np.ndarray:
    """ONNX Conv with symmetric padding `pad` and `group` groups.

    One GEMM per group over the whole batch (not one per image: BLAS threads cost a hand-off per call),
    and plain multiply-adds over the k*k taps for depthwise convs, where a GEMM would be 1 x k*k.
    """
    cout, cg, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    taps = _taps(xp, k, stride)
    n, c, ho, wo = taps[0].shape
    if cg == 1 and cout == c == group:
        y = sum(w[:, 0, t // k, t % k][None, :, None, None] * tap for t, tap in enumerate(taps))
    else:
        cols = np.stack(taps, axis=1).reshape(n, k * k, group, cg, ho, wo)
        # rows (cin, kh, kw) to match w; columns (N, Ho, Wo)
        cols = cols.transpose(2, 3, 1, 0, 4, 5).reshape(group, cg * k * k, n * ho * wo)
        wg = w.reshape(group, cout // group, cg * k * k)
        y = np.concatenate([wg[g] @ cols[g] for g in range(group)]).reshape(cout, n, ho, wo)
        y = y.transpose(1, 0, 2, 3)
    if b is not None:
        y = y + b[None, :, None, None]
    return np.ascontiguousarray(y)


def gemm(x: np.ndarray, w: np.ndarray, b: np.ndarray, rows: int = 256) -> np.ndarray:
    """ONNX Gemm with transB=1 in float64, `rows` weight rows at a time, so a 411 MB float32 weight
    never gets a float64 copy."""
    parts = [x @ w[i : i + rows].astype(np.float64).T for i in range(0, w.shape[0], rows)]
    return np.concatenate(parts, axis=1) + b


def conv_transpose(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX ConvTranspose with kernel = stride and no padding: every input pixel paints one k x k patch."""
    n, _, h, wd = x.shape
    _, cout, k, _ = w.shape
    y = np.einsum("nchw,coij->nohiwj", x, w, optimize=True).reshape(n, cout, h * k, wd * k)
    return y + b[None, :, None, None]


def maxpool(x: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """ONNX MaxPool; padding never wins the max."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    return np.maximum.reduce(_taps(x, k, stride))


def avgpool(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """ONNX AveragePool without padding."""
    return np.add.reduce(_taps(x, k, stride)) / (k * k)


def resize2x(x: np.ndarray, mode: str) -> np.ndarray:
    """ONNX Resize by 2 in H and W: 'nearest' (asymmetric, floor) or 'linear' (half_pixel)."""
    for axis in (2, 3):
        if mode == "nearest":
            x = np.repeat(x, 2, axis=axis)
            continue
        # half_pixel at scale 2: output 2j samples j - 1/4, output 2j+1 samples j + 1/4 (edges clamped)
        size = x.shape[axis]
        prev = np.take(x, np.maximum(np.arange(size) - 1, 0), axis=axis)
        nxt = np.take(x, np.minimum(np.arange(size) + 1, size - 1), axis=axis)
        pair = np.stack([0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt], axis=axis + 1)
        shape = list(x.shape)
        shape[axis] *= 2
        x = pair.reshape(shape)
    return x
