"""MobileNetV2 in torchvision's layout: inverted residuals with depthwise 3x3 convs and ReLU6.

Depthwise convs (group = channels) and linear bottlenecks (no activation after the projection) are
the patterns that make MobileNet's channel coupling differ from ResNet's.
"""

from __future__ import annotations

from mdp_trt.zoo.builder import GraphBuilder, make_divisible

# expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu6(
    b: GraphBuilder, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1
) -> str:
    y = b.conv_bn(x, f"{name}.0", f"{name}.1", cin, cout, k, stride=stride, group=group)
    return b.relu6(y, f"{name}.2")


def _inverted_residual(b: GraphBuilder, x: str, name: str, cin: int, cout: int, stride: int, t: int) -> str:
    hidden = cin * t
    y, i = x, 0
    if t != 1:
        y = _conv_bn_relu6(b, y, f"{name}.conv.0", cin, hidden, 1)
        i = 1
    y = _conv_bn_relu6(b, y, f"{name}.conv.{i}", hidden, hidden, 3, stride=stride, group=hidden)
    # the linear projection: He gain 1 because nothing clips its output
    y = b.conv_bn(y, f"{name}.conv.{i + 1}", f"{name}.conv.{i + 2}", hidden, cout, 1, gain=1.0)
    if stride == 1 and cin == cout:
        y = b.add(x, y, f"{name}.add")
    return y


def mobilenet_v2(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """MobileNetV2 (width multiplier `width`), 1280-channel head, GAP, Flatten, Gemm."""
    c = make_divisible(32 * width)
    y = _conv_bn_relu6(b, x, "features.0", 3, c, 3, stride=2)
    index = 1
    for t, channels, n, s in _SETTINGS:
        cout = make_divisible(channels * width)
        for j in range(n):
            y = _inverted_residual(b, y, f"features.{index}", c, cout, s if j == 0 else 1, t)
            c, index = cout, index + 1
    head = make_divisible(1280 * max(1.0, width))
    y = _conv_bn_relu6(b, y, f"features.{index}", c, head, 1)
    y = b.flatten(b.gap(y, "avgpool"), "flatten")
    return b.gemm(y, "classifier.1", head, num_classes)
