"""Synthetic MDP problems shaped like real networks, for benchmarks and scaling tests.

The real instances we have are ResNet only and coarse; these give ResNet-50/101 and MobileNetV2
structures (shared residual groups, removable blocks, depthwise layers, a classifier with a null
out-group) on a grid of `levels` channel counts per group, with
- latency of a layer with c_in inputs and c_out outputs = a * c_in * c_out + b * (c_in + c_out) + c
  (compute, memory traffic, launch), a scaled by kernel area and feature-map size: monotone tables;
- importance = cumulative sum of per-channel scores sorted in decreasing order (as a Taylor score
  ranking gives), read at each level: increasing and concave.
Latencies are in ms; the dense network comes out at roughly `dense_ms`.
`noisy_pair` is the opposite of realistic: two wide groups whose latency tables carry +-30% noise per
entry, so that neither dominance nor the greedy start helps and the model is as large as the grid.
It exists to check that time limits hold when building the model is itself expensive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mdp_trt.solve.problem import Block, Group, Layer, Problem


@dataclass
class _Builder:
    levels: int
    rng: np.random.Generator
    groups: list[Group] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    widths: dict[str, int] = field(default_factory=dict)

    def group(self, channels: int) -> str:
        gid = f"g{len(self.groups)}"
        steps = np.linspace(channels / self.levels, channels, self.levels)
        self.groups.append(Group(gid, tuple(round(float(s)) for s in steps), 0, self.levels - 1))
        self.widths[gid] = channels
        return gid

    def block(self) -> str:
        bid = f"b{len(self.blocks)}"
        self.blocks.append(Block(bid))
        return bid

    def layer(self, g_in: str | None, g_out: str | None, block: str | None, flops: float, depthwise=False):
        """`flops` scales compute: kernel area x output pixels."""
        self.layers.append(
            {"in": g_in, "out": g_out, "block": block, "flops": flops, "dw": depthwise, "id": f"l{len(self.layers)}"}
        )

    def channels(self, gid: str | None, fallback: int) -> np.ndarray:
        if gid is None:
            return np.array([float(fallback)])
        return np.array(next(g.levels for g in self.groups if g.id == gid), dtype=float)

    def build(self, dense_ms: float) -> Problem:
        raw = []
        for spec in self.layers:
            c_in = self.channels(spec["in"], 3)[:, None]
            c_out = self.channels(spec["out"], 1000)[None, :]
            if spec["dw"]:  # depthwise: cost linear in the (shared) channel count
                table = spec["flops"] * np.broadcast_to(c_out, (c_in.size, c_out.size)) * 8
            else:
                table = spec["flops"] * c_in * c_out
            table = table + 0.02 * spec["flops"] ** 0.5 * (c_in + c_out) + 5e3
            raw.append(table)
        dense = sum(t[-1, -1] for t in raw)
        layers = []
        for spec, table in zip(self.layers, raw, strict=True):
            importance = np.array([])
            if spec["out"] is not None:
                scores = np.sort(self.rng.lognormal(0.0, 1.0, self.widths[spec["out"]]))[::-1]
                cum = np.concatenate([[0.0], np.cumsum(scores)])
                importance = cum[self.channels(spec["out"], 0).astype(int)] * self.rng.uniform(0.5, 1.5)
            layers.append(
                Layer(spec["id"], spec["in"], spec["out"], spec["block"], table * dense_ms / dense, importance)
            )
        return Problem(tuple(self.groups), tuple(self.blocks), tuple(layers), None, 0.0, "ms")


def resnet(depth: int, levels: int = 16, seed: int = 0, dense_ms: float = 10.0) -> Problem:
    """ResNet-50 (depth 50) or -101 (101): bottlenecks as removable blocks, downsample paths kept."""
    stages = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    b = _Builder(levels, np.random.default_rng(seed))
    stem = b.group(64)
    b.layer(None, stem, None, 49 * 112 * 112)
    prev, size = stem, 56
    for s, count in enumerate(stages):
        width = 64 * 2**s
        if s:
            size //= 2
        residual = b.group(4 * width)
        b.layer(prev, residual, None, size * size)  # downsample / projection shortcut
        for _ in range(count):
            blk = b.block()
            inner1, inner2 = b.group(width), b.group(width)
            b.layer(prev, inner1, blk, size * size)
            b.layer(inner1, inner2, blk, 9 * size * size)
            b.layer(inner2, residual, blk, size * size)
            prev = residual
    b.layer(prev, None, None, 1)
    return b.build(dense_ms)


def mobilenet_v2(levels: int = 16, seed: int = 0, dense_ms: float = 5.0) -> Problem:
    """MobileNetV2: inverted residuals (expand, depthwise in == out group, project); the stride-1 blocks
    with a residual connection are removable and share their stage's residual group."""
    config = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    b = _Builder(levels, np.random.default_rng(seed))
    prev, width, size = b.group(32), 32, 112
    b.layer(None, prev, None, 9 * size * size)
    for t, c, n, s in config:
        residual = b.group(c)
        for i in range(n):
            size //= s if i == 0 else 1
            blk = b.block() if i > 0 else None
            hidden = b.group(width * t) if t != 1 else prev
            if t != 1:
                b.layer(prev, hidden, blk, size * size)
            b.layer(hidden, hidden, blk, 9 * size * size, depthwise=True)
            b.layer(hidden, residual, blk, size * size)
            prev, width = residual, c
    last = b.group(1280)
    b.layer(prev, last, None, 7 * 7)
    b.layer(last, None, None, 1)
    return b.build(dense_ms)


def noisy_pair(levels: int = 300, seed: int = 0, dense_ms: float = 16.0) -> Problem:
    """Two groups of `levels` levels joined by one layer (a levels x levels table), noise on every entry."""
    rng = np.random.default_rng(seed)
    widths = np.arange(1, levels + 1, dtype=float)

    def noise(*shape: int) -> np.ndarray:
        return rng.uniform(0.7, 1.3, shape)

    def scores() -> np.ndarray:
        return np.cumsum(np.sort(rng.lognormal(0.0, 1.0, levels))[::-1])

    tables = [widths[None, :] * noise(1, levels), np.outer(widths, widths) / 10 * noise(levels, levels),
              widths[:, None] * noise(levels, 1)]
    scale = dense_ms / sum(float(t[-1, -1]) for t in tables)
    groups = tuple(Group(f"g{n}", tuple(range(1, levels + 1)), 0, levels - 1) for n in range(2))
    layers = (
        Layer("in", None, "g0", None, tables[0] * scale, scores()),
        Layer("mid", "g0", "g1", None, tables[1] * scale, scores()),
        Layer("out", "g1", None, None, tables[2] * scale, np.array([])),
    )
    return Problem(groups, (), layers, None, 0.0, "ms")
