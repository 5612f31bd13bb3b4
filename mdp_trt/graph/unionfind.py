"""Union-find over integer channel ids, with array-at-a-time union and find."""

from __future__ import annotations

import numpy as np


class UnionFind:
    """Disjoint sets of channel ids; ids are handed out in blocks by `new`."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._size: list[int] = []

    def new(self, count: int) -> np.ndarray:
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
        self._size.extend([1] * count)
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, item: int) -> int:
        parent = self._parent
        root = item
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:  # path compression
            parent[item], item = root, parent[item]
        return root

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Merge a[i] with b[i] for every i (the arrays must have equal length)."""
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx == ry:
                continue
            if self._size[rx] < self._size[ry]:
                rx, ry = ry, rx
            self._parent[ry] = rx
            self._size[rx] += self._size[ry]

    def roots(self) -> np.ndarray:
        """The root of every id, as an array indexed by id."""
        parent = np.asarray(self._parent, dtype=np.int64)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand
