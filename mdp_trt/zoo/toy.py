"""A tiny model for fast tests: a stem, one residual block, a two-branch Concat, a pool, a classifier.

It holds one of each coupling pattern the pruner handles (residual Add, channel Concat, BN epilogues,
Flatten into Gemm after GAP) at a size that builds and runs in milliseconds.
"""

from __future__ import annotations

from mdp_trt.zoo.builder import GraphBuilder, make_divisible


def toy(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """stem(8) -> residual block(8) -> Concat(1x1 branch, 3x3 branch) -> MaxPool -> conv(16) -> GAP -> fc."""
    c = make_divisible(8 * width)
    stem = b.relu(b.conv_bn(x, "stem.conv", "stem.bn", 3, c, 3), "stem.relu")
    y = b.relu(b.conv_bn(stem, "block.conv1", "block.bn1", c, c, 3), "block.relu1")
    y = b.conv_bn(y, "block.conv2", "block.bn2", c, c, 3)
    y = b.relu(b.add(y, stem, "block.add"), "block.relu2")
    a = b.relu(b.conv(y, "branch_a.conv", c, c, 1, bias=True), "branch_a.relu")
    d = b.relu(b.conv(y, "branch_b.conv", c, c, 3, bias=True), "branch_b.relu")
    y = b.maxpool(b.concat([a, d], "concat"), "pool", 2, 2)
    y = b.relu(b.conv_bn(y, "conv_out", "bn_out", 2 * c, 2 * c, 3), "relu_out")
    y = b.flatten(b.gap(y, "avgpool"), "flatten")
    return b.gemm(y, "fc", 2 * c, num_classes)
