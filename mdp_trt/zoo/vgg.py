"""VGG-11 with BN in torchvision's layout.

Its classifier flattens the (N, 512, 7, 7) feature map into a Gemm, so each conv channel feeds 49
Gemm inputs: the channel x spatial expansion a pruner must follow. At 224 the classifier is the real
4096-wide one; for small inputs it narrows with the flattened area so the model stays small.
"""

from __future__ import annotations

from mdp_trt.zoo.builder import GraphBuilder, make_divisible

_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg11_bn(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """Conv(+bias)-BN-ReLU features with five MaxPools, Flatten, Gemm-ReLU-Gemm-ReLU-Gemm."""
    y, c, index = x, 3, 0
    for v in _CFG:
        if v == "M":
            y = b.maxpool(y, f"features.{index}", 2, 2)
            index += 1
            continue
        cout = make_divisible(int(v) * width)
        y = b.conv_bn(y, f"features.{index}", f"features.{index + 1}", c, cout, 3, bias=True)
        y = b.relu(y, f"features.{index + 2}")
        c, index = cout, index + 3
    spatial = input_size // 32
    hidden = make_divisible(4096 * width * min(1.0, spatial * spatial / 49))
    y = b.flatten(y, "flatten")
    y = b.relu(b.gemm(y, "classifier.0", c * spatial * spatial, hidden, gain=2.0), "classifier.1")
    y = b.relu(b.gemm(y, "classifier.3", hidden, hidden, gain=2.0), "classifier.4")
    return b.gemm(y, "classifier.6", hidden, num_classes)
