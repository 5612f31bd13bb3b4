"""ResNet-18/50 in torchvision's layout, and an SE-ResNet that mixes every block and SE form.

Names follow torchvision (`conv1`, `layer2.0.downsample.0`, `fc`) so pruning reports read like the
PyTorch model. Blocks are ResNet v1.5 (the stride sits on the 3x3 conv of a bottleneck).
"""

from __future__ import annotations

from collections.abc import Callable

from mdp_trt.zoo.builder import GraphBuilder, make_divisible

# (input tensor, block name, in channels, planes, stride, se form or None) -> (output, out channels)
BlockFn = Callable[[GraphBuilder, str, str, int, int, int, str | None], tuple[str, int]]


def _stem(b: GraphBuilder, x: str, width: float) -> tuple[str, int]:
    c = make_divisible(64 * width)
    y = b.conv_bn(x, "conv1", "bn1", 3, c, 7, stride=2)
    y = b.relu(y, "relu")
    return b.maxpool(y, "maxpool", 3, 2, pad=1), c


def _se(b: GraphBuilder, x: str, name: str, c: int, form: str) -> str:
    """Squeeze-excitation gate `x * sigmoid(fc2(relu(fc1(gap(x)))))`.

    `form` 'conv' uses 1x1 Convs on the (N,C,1,1) pooled map; 'gemm' flattens to (N,C), uses Gemms
    and unsqueezes back: both appear in exported models and couple channels differently.
    """
    squeeze = max(4, c // 16)
    s = b.gap(x, f"{name}.avgpool")
    if form == "conv":
        s = b.conv(s, f"{name}.fc1", c, squeeze, 1, bias=True)
        s = b.relu(s, f"{name}.relu")
        s = b.conv(s, f"{name}.fc2", squeeze, c, 1, bias=True, gain=1.0)
    else:
        s = b.flatten(s, f"{name}.flatten")
        s = b.gemm(s, f"{name}.fc1", c, squeeze, gain=2.0)
        s = b.relu(s, f"{name}.relu")
        s = b.gemm(s, f"{name}.fc2", squeeze, c)
    s = b.sigmoid(s, f"{name}.sigmoid")
    if form == "gemm":
        s = b.unsqueeze_hw(s, f"{name}.unsqueeze")
    return b.mul(x, s, f"{name}.mul")


def _shortcut(b: GraphBuilder, x: str, name: str, cin: int, cout: int, stride: int) -> str:
    if stride == 1 and cin == cout:
        return x
    return b.conv_bn(x, f"{name}.downsample.0", f"{name}.downsample.1", cin, cout, 1, stride=stride)


def basic_block(
    b: GraphBuilder, x: str, name: str, cin: int, planes: int, stride: int, se: str | None
) -> tuple[str, int]:
    """Two 3x3 convs and an identity (or 1x1 projection) shortcut; expansion 1."""
    y = b.relu(b.conv_bn(x, f"{name}.conv1", f"{name}.bn1", cin, planes, 3, stride=stride), f"{name}.relu1")
    y = b.conv_bn(y, f"{name}.conv2", f"{name}.bn2", planes, planes, 3)
    if se:
        y = _se(b, y, f"{name}.se", planes, se)
    y = b.add(y, _shortcut(b, x, name, cin, planes, stride), f"{name}.add")
    return b.relu(y, f"{name}.relu2"), planes


def bottleneck_block(
    b: GraphBuilder, x: str, name: str, cin: int, planes: int, stride: int, se: str | None
) -> tuple[str, int]:
    """1x1 reduce, 3x3 (strided), 1x1 expand to 4*planes, plus shortcut."""
    cout = planes * 4
    y = b.relu(b.conv_bn(x, f"{name}.conv1", f"{name}.bn1", cin, planes, 1), f"{name}.relu1")
    y = b.conv_bn(y, f"{name}.conv2", f"{name}.bn2", planes, planes, 3, stride=stride)
    y = b.relu(y, f"{name}.relu2")
    y = b.conv_bn(y, f"{name}.conv3", f"{name}.bn3", planes, cout, 1)
    if se:
        y = _se(b, y, f"{name}.se", cout, se)
    y = b.add(y, _shortcut(b, x, name, cin, cout, stride), f"{name}.add")
    return b.relu(y, f"{name}.relu3"), cout


def _resnet(
    b: GraphBuilder,
    x: str,
    stages: tuple[tuple[BlockFn, int, str | None], ...],
    *,
    num_classes: int,
    width: float,
) -> str:
    y, c = _stem(b, x, width)
    for i, (block, depth, se) in enumerate(stages):
        planes = make_divisible(64 * 2**i * width)
        for j in range(depth):
            stride = 2 if i > 0 and j == 0 else 1
            y, c = block(b, y, f"layer{i + 1}.{j}", c, planes, stride, se)
    y = b.flatten(b.gap(y, "avgpool"), "flatten")
    return b.gemm(y, "fc", c, num_classes)


def resnet18(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    stages = tuple((basic_block, 2, None) for _ in range(4))
    return _resnet(b, x, stages, num_classes=num_classes, width=width)


def resnet50(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]."""
    stages = tuple((bottleneck_block, n, None) for n in (3, 4, 6, 3))
    return _resnet(b, x, stages, num_classes=num_classes, width=width)


def se_resnet(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """SE-ResNet with two blocks per stage: basic blocks with Conv-SE in layers 1-2, bottlenecks with
    Gemm-SE in layers 3-4, so one model carries both block kinds and both SE forms."""
    stages: tuple[tuple[BlockFn, int, str | None], ...] = (
        (basic_block, 2, "conv"),
        (basic_block, 2, "conv"),
        (bottleneck_block, 2, "gemm"),
        (bottleneck_block, 2, "gemm"),
    )
    return _resnet(b, x, stages, num_classes=num_classes, width=width)
