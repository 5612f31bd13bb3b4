"""Reference models generated in-house, so tests and demos need no downloads and no torch.

`build(name, ...)` returns an `onnx.ModelProto` (IR 10, opset 17) with seeded random weights at
realistic scales. The architectures follow torchvision's layouts and names; the weights are random,
so accuracy is meaningless but structure, shapes, FLOPs and latency are real.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from mdp_trt.errors import InputError
from mdp_trt.zoo import densenet, mobilenet, resnet, toy, unet, vgg, vit
from mdp_trt.zoo.builder import GraphBuilder

Family = Callable[..., str]


@dataclass(frozen=True)
class ZooModel:
    """How to build one zoo model and which inputs it accepts."""

    fn: Family
    summary: str
    num_classes: int
    min_size: int = 32
    size_multiple: int = 1


_MODELS: dict[str, ZooModel] = {
    "toy": ZooModel(toy.toy, "tiny test model: conv stem, residual block, 2-branch concat, GAP, Gemm", 10, 8),
    "resnet18": ZooModel(resnet.resnet18, "ResNet-18, basic blocks [2,2,2,2], 1x1 downsample", 1000),
    "resnet50": ZooModel(resnet.resnet50, "ResNet-50, bottleneck blocks [3,4,6,3], 1x1 downsample", 1000),
    "mobilenet_v2": ZooModel(
        mobilenet.mobilenet_v2, "MobileNetV2, inverted residuals, depthwise 3x3, ReLU6, 1280 head", 1000
    ),
    "vgg11_bn": ZooModel(vgg.vgg11_bn, "VGG-11 with BN, Flatten of the 512xHxW map into Gemm 4096", 1000),
    "se_resnet": ZooModel(resnet.se_resnet, "SE-ResNet: basic blocks + Conv-SE, then bottlenecks + Gemm-SE", 1000),
    "densenet": ZooModel(
        densenet.densenet,
        "DenseNet-BC (4,8,12,8), growth 32, Concat dense blocks, avg-pool transitions",
        1000,
    ),
    "unet": ZooModel(
        unet.unet, "small U-Net, ConvTranspose and Resize (nearest, linear) upsampling, skip concats", 2, 8, 8
    ),
    "vit_tiny": ZooModel(
        vit.vit_tiny,
        "DeiT-tiny as timm writes it: patches of 16, embedding 192 (3 heads of 64), 12 blocks, MLP 768, class token",
        1000, vit.PATCH, vit.PATCH,
    ),
}

NAMES: tuple[str, ...] = tuple(_MODELS)


def summary(name: str) -> str:
    """One line describing a zoo model (for `mdp-trt zoo --list`)."""
    return _spec(name).summary


def _spec(name: str) -> ZooModel:
    try:
        return _MODELS[name.replace("-", "_")]  # `vit-tiny` as well as `vit_tiny`
    except KeyError:
        raise InputError(f"unknown zoo model {name!r}; choose one of: {', '.join(NAMES)}") from None


def _batch_dim(batch: int | str | None) -> int | str:
    if batch is None or batch == "N":
        return "N"
    if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1:
        return batch
    raise InputError(f"batch must be a positive integer or 'N' (symbolic), got {batch!r}")


MAX_INPUT_SIZE = 4096  # pixels per side
MAX_WIDTH = 16.0  # channel multiplier: resnet50 at 16x holds ~6 G parameters


def build(
    name: str,
    *,
    input_size: int = 224,
    batch: int | str | None = 1,
    fold_bn: bool = False,
    seed: int = 0,
    num_classes: int | None = None,
    width: float = 1.0,
) -> onnx.ModelProto:
    """Build zoo model `name` for square RGB inputs of `input_size` pixels.

    `batch` is a fixed batch size, or None/"N" for a symbolic batch dimension named N. `fold_bn` folds
    every BN that directly follows a Conv into it (same function, same seed draws). `num_classes`
    defaults to the model's own (1000 for classifiers, 10 for toy, 2 for unet); `width` scales channel
    counts (rounded to multiples of 8). Raises InputError for an unknown name or unusable sizes.
    """
    spec = _spec(name)
    if input_size > MAX_INPUT_SIZE:
        raise InputError(f"input size {input_size} is over {MAX_INPUT_SIZE}: the weights of models that flatten "
                         "their feature map grow with it")
    if input_size < spec.min_size or input_size % spec.size_multiple:
        raise InputError(
            f"{name} needs an input size >= {spec.min_size} and a multiple of {spec.size_multiple}, got {input_size}"
        )
    classes = spec.num_classes if num_classes is None else num_classes
    if classes < 1:
        raise InputError(f"num_classes must be >= 1, got {classes}")
    if not 0 < width <= MAX_WIDTH:  # also refuses nan
        raise InputError(f"width must be a number above 0 and at most {MAX_WIDTH}, got {width}")
    if seed < 0:
        raise InputError(f"seed must be 0 or more, got {seed}")
    b = GraphBuilder(name, seed=seed, fold_bn=fold_bn)
    x = b.input("input", 3, input_size, _batch_dim(batch))
    y = spec.fn(b, x, num_classes=classes, width=width, input_size=input_size)
    folded = ", BN folded" if fold_bn else ""
    return b.finish(y, doc=f"mdp-trt zoo {name}: {spec.summary} (random weights, seed {seed}{folded})")
