"""Channel maps: which channel id sits at each position of a tensor's channel axes, and how reshapes move them.

Most tensors carry channels on one axis (NCHW's axis 1, the last axis of a channels-last stretch). A
reshape can split that axis into sub-axes: a channel shuffle views (N, C, H, W) as (N, g, C/g, H, W),
GroupNorm as (N, G, C/G*H*W), YOLO's DFL as (N, 4, 16, A). A map therefore holds an array of ids
with one dimension per channel-carrying axis (in tensor-axis order), and per axis a repeat: how many
consecutive features each index spans there (a Flatten of N,C,H,W gives repeat H*W).

`reshape_map` follows a map through any reshape by writing both shapes as one row-major sequence of
digits (mixed-radix factors): channel digits, and free digits (batch, spatial, repeat). Output axes
take consecutive digits, splitting a digit where an axis ends inside it. An output axis that holds
channels must hold channel digits first and free digits after them: a free factor outside a channel
index would interleave other data between channels, which no map can describe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Dim = int | str | None


@dataclass(frozen=True)
class ChannelMap:
    """`ids` has one dimension per channel axis; `axes[j]` is the tensor axis of dimension j (increasing)
    and `repeats[j]` the features each index spans on it, so that axis has length ids.shape[j] * repeats[j].

    `rows_fixed` marks a factored map (two channel axes) whose leading sub-axis the pruned model keeps
    whole (a reshape's leading factor, such as GroupNorm's groups): only the trailing sub-axis is
    pruned, the same number in every row.
    """

    ids: np.ndarray
    axes: tuple[int, ...]
    repeats: tuple[int, ...]
    rows_fixed: bool = False

    @classmethod
    def on(cls, ids: np.ndarray, axis: int, repeat: int = 1) -> ChannelMap:
        return cls(np.asarray(ids, dtype=np.int64).reshape(-1), (axis,), (repeat,))

    @property
    def single(self) -> bool:
        return len(self.axes) == 1

    @property
    def axis(self) -> int:
        """The channel axis of a single-axis map."""
        assert self.single, "factored channel map"
        return self.axes[0]

    @property
    def repeat(self) -> int:
        assert self.single, "factored channel map"
        return self.repeats[0]

    @property
    def flat(self) -> np.ndarray:
        return self.ids.reshape(-1)

    def length(self, j: int = 0) -> int:
        """Length of the tensor axis that holds channel dimension j."""
        return int(self.ids.shape[j]) * self.repeats[j]

    def shifted(self, offset: int) -> ChannelMap:
        """The same map with every axis moved by `offset` (broadcasting, a leading axis added or removed)."""
        return ChannelMap(self.ids, tuple(a + offset for a in self.axes), self.repeats, self.rows_fixed)

    def moved(self, axes: tuple[int, ...]) -> tuple[ChannelMap, bool]:
        """The map with its dimensions on new tensor axes; True when that reorders the dimensions."""
        order = sorted(range(len(axes)), key=axes.__getitem__)
        reordered = order != list(range(len(axes)))
        ids = np.transpose(self.ids, order) if reordered else self.ids
        return ChannelMap(ids, tuple(axes[j] for j in order), tuple(self.repeats[j] for j in order),
                          self.rows_fixed and not reordered), reordered


@dataclass
class _Digit:
    size: int | str  # a symbolic dimension stays one opaque digit
    channel: bool
    axis: int = -1  # the input axis a channel digit comes from


def reshape_map(in_shape, out_shape, cmap: ChannelMap) -> ChannelMap | None:
    """The map of a reshape's output, or None when the reshape mixes channels with other data.

    Both shapes must be known; a symbolic dimension must reappear unchanged in the output.
    """
    if in_shape is None or out_shape is None or any(d is None for d in (*in_shape, *out_shape)):
        return None
    digits = _digits(in_shape, cmap)
    if digits is None:
        return None
    ids = cmap.ids
    dims = list(ids.shape)  # one entry per channel digit, in order
    taken: list[list[_Digit]] = []
    position = 0  # index of the next channel digit in `dims`
    for out_axis, size in enumerate(out_shape):
        group: list[_Digit] = []
        if isinstance(size, str):
            if not digits or digits[0].size != size:
                return None
            group.append(digits.pop(0))
            taken.append(group)
            continue
        # A one-channel index stays on a unit axis where it was, else joins the next axis with data.
        while digits and digits[0].channel and digits[0].size == 1 and (size != 1 or digits[0].axis == out_axis):
            group.append(digits.pop(0))
        product = 1
        while product < size:
            if not digits or isinstance(digits[0].size, str):
                return None
            digit = digits[0]
            if size % (product * digit.size) == 0:
                group.append(digits.pop(0))
                product *= digit.size
                continue
            need = size // product
            if size % product or digit.size % need:
                return None
            head, rest = _Digit(need, digit.channel, digit.axis), _Digit(digit.size // need, digit.channel, digit.axis)
            if digit.channel:
                index = position + sum(1 for d in group if d.channel)
                dims[index:index + 1] = [need, digit.size // need]
            digits[0] = rest
            group.append(head)
            product *= need
        if product != size:
            return None
        position += sum(1 for d in group if d.channel)
        taken.append(group)
    if any(d.size != 1 or d.channel for d in digits):
        return None
    ids = ids.reshape(dims)
    axes, repeats, merged_dims = [], [], []
    for axis, group in enumerate(taken):
        channel = [d for d in group if d.channel]
        if not channel:
            continue
        first = next(i for i, d in enumerate(group) if d.channel)
        leading_free = group[:first]
        trailing = group[first:]
        boundary = len(channel)
        if any(d.size != 1 for d in leading_free) or any(not d.channel for d in trailing[:boundary]):
            return None  # data outside the channel index, or channels interleaved with other data
        axes.append(axis)
        repeats.append(int(np.prod([d.size for d in trailing[boundary:]], dtype=np.int64)))
        merged_dims.append(int(np.prod([d.size for d in channel], dtype=np.int64)))
    if len(axes) > 2:
        return None
    result = ids.reshape(merged_dims)
    rows_fixed = len(axes) == 2 and (cmap.single or cmap.rows_fixed)
    return ChannelMap(result, tuple(axes), tuple(repeats), rows_fixed)


def _digits(shape, cmap: ChannelMap) -> list[_Digit] | None:
    digits: list[_Digit] = []
    sub = dict(zip(cmap.axes, range(len(cmap.axes)), strict=True))
    for axis, size in enumerate(shape):
        if axis in sub:
            j = sub[axis]
            if not isinstance(size, int) or size != cmap.length(j):
                return None
            digits.append(_Digit(int(cmap.ids.shape[j]), True, axis))
            if cmap.repeats[j] != 1:
                digits.append(_Digit(cmap.repeats[j], False))
        elif size != 1:
            digits.append(_Digit(size, False))
    return digits
