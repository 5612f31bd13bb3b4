"""A small U-Net for segmentation: three encoder levels, a bottleneck, three decoder levels.

The decoder upsamples once with a ConvTranspose and twice with Resize (nearest, then linear) so all
three upsampling forms appear, each followed by a channel Concat with the encoder skip. The output is
(N, num_classes, H, W); the input size must be a multiple of 8.
"""

from __future__ import annotations

from mdp_trt.zoo.builder import GraphBuilder, make_divisible


def _double_conv(b: GraphBuilder, x: str, name: str, cin: int, cout: int) -> str:
    y = b.relu(b.conv_bn(x, f"{name}.conv1", f"{name}.bn1", cin, cout, 3), f"{name}.relu1")
    return b.relu(b.conv_bn(y, f"{name}.conv2", f"{name}.bn2", cout, cout, 3), f"{name}.relu2")


def unet(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """Encoder 16-32-64 (times `width`), bottleneck 128, decoder back to 16, 1x1 head conv."""
    c1, c2, c3, c4 = (make_divisible(c * width) for c in (16, 32, 64, 128))
    e1 = _double_conv(b, x, "enc1", 3, c1)
    e2 = _double_conv(b, b.maxpool(e1, "pool1", 2, 2), "enc2", c1, c2)
    e3 = _double_conv(b, b.maxpool(e2, "pool2", 2, 2), "enc3", c2, c3)
    y = _double_conv(b, b.maxpool(e3, "pool3", 2, 2), "bottleneck", c3, c4)
    y = b.conv_transpose(y, "up3", c4, c3, 2)
    y = _double_conv(b, b.concat([y, e3], "dec3.concat"), "dec3", 2 * c3, c3)
    y = b.resize2x(y, "up2", "nearest")
    y = _double_conv(b, b.concat([y, e2], "dec2.concat"), "dec2", c3 + c2, c2)
    y = b.resize2x(y, "up1", "linear")
    y = _double_conv(b, b.concat([y, e1], "dec1.concat"), "dec1", c2 + c1, c1)
    return b.conv(y, "head", c1, num_classes, 1, bias=True, gain=1.0)
