"""A modest DenseNet-BC in torchvision's layout (block config (4, 8, 12, 8) instead of 121's (6, 12, 24, 16)).

Every dense layer reads the channel Concat of all earlier feature maps of its block, so one conv's
output channels reach many later convs at different offsets: the Concat coupling a pruner must track.
Its BNs are pre-activation (BN-ReLU-Conv after a Concat), so `fold_bn` can fold only the BN that
follows each bottleneck 1x1 conv.
"""

from __future__ import annotations

from mdp_trt.zoo.builder import GraphBuilder, make_divisible

_BLOCKS = (4, 8, 12, 8)
_BN_SIZE = 4


def _dense_layer(b: GraphBuilder, features: list[str], name: str, cin: int, growth: int) -> str:
    x = features[0] if len(features) == 1 else b.concat(features, f"{name}.concat")
    y = b.relu(b.bn(x, f"{name}.norm1"), f"{name}.relu1")
    y = b.conv_bn(y, f"{name}.conv1", f"{name}.norm2", cin, _BN_SIZE * growth, 1)
    y = b.relu(y, f"{name}.relu2")
    return b.conv(y, f"{name}.conv2", _BN_SIZE * growth, growth, 3)


def _transition(b: GraphBuilder, x: str, name: str, cin: int, cout: int) -> str:
    y = b.relu(b.bn(x, f"{name}.norm"), f"{name}.relu")
    y = b.conv(y, f"{name}.conv", cin, cout, 1)
    return b.avgpool(y, f"{name}.pool", 2, 2)


def densenet(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """Stem, four dense blocks (growth 32) with compressing transitions, BN-ReLU, GAP, Gemm."""
    growth = make_divisible(32 * width)
    c = 2 * growth
    y = b.relu(b.conv_bn(x, "features.conv0", "features.norm0", 3, c, 7, stride=2), "features.relu0")
    y = b.maxpool(y, "features.pool0", 3, 2, pad=1)
    for i, n_layers in enumerate(_BLOCKS, start=1):
        block = f"features.denseblock{i}"
        features = [y]
        for j in range(1, n_layers + 1):
            features.append(_dense_layer(b, features, f"{block}.denselayer{j}", c + (j - 1) * growth, growth))
        y, c = b.concat(features, f"{block}.concat"), c + n_layers * growth
        if i < len(_BLOCKS):
            y = _transition(b, y, f"features.transition{i}", c, c // 2)
            c //= 2
    y = b.relu(b.bn(y, "features.norm5"), "features.relu5")
    y = b.flatten(b.gap(y, "avgpool"), "flatten")
    return b.gemm(y, "classifier", c, num_classes)
