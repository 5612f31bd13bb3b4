"""Real-architecture PyTorch models, written the way torchvision, timm and ultralytics write them.

The analysis and the surgery must hold on the ONNX graphs users actually export, and those graphs are
shaped by how each library writes its blocks: torchvision's `channel_shuffle` is view/transpose/view,
ultralytics' C2f is a `chunk` (or `split`) whose parts all reach one Concat, timm's LayerNorm2d is
permute/layer_norm/permute, the ConvNeXt-official one is mean/pow/sqrt arithmetic. The project may not
depend on those libraries, so each block here is written anew with the same ops in its forward; the
exported ONNX then holds the same op patterns. Widths and depths are scaled down (inputs 1x3x64x64 by
default) so a test exports and runs a model in well under a second, but every block is a real one.

Weights look trained (`make`): He-initialised convs and linears, non-zero biases, BatchNorm with
random affine parameters and running statistics calibrated to its input then perturbed, LayerNorm
near (1, 0), layer scales in [0.1, 1] instead of 1e-6, non-zero GRN parameters. A fresh model would
hide bugs: an identity BN hides a wrong folding, a zero bias hides a missing bias slice, a 1e-6 layer
scale hides a whole branch.

`export` mirrors `tests/torch_models.py::export` for the TorchScript exporter and adds the dynamo
exporter (it needs the `onnxscript` package; `DYNAMO_AVAILABLE` tells whether it is there).
The two write different graphs of one model: dynamo folds BN always, writes Split(num_outputs) for
`chunk`, drops no-op Slices and zero biases, and shares equal initializers by name instead of the
TorchScript exporter's Identity nodes; both are worth checking.

Only code that has torch (tests that `pytest.importorskip("torch")`, the benchmarks) imports this.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_INPUT_SHAPE = (1, 3, 64, 64)
DYNAMO_AVAILABLE = importlib.util.find_spec("onnxscript") is not None


# --------------------------------------------------------------------------------------------------
# torchvision ResNet / ResNeXt (BasicBlock, Bottleneck with groups and width_per_group, dilation)
# --------------------------------------------------------------------------------------------------


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 conv-BN, `out += identity`, ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet-50 style, stride on the 3x3); ResNeXt when groups > 1."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet skeleton with a per-stage block type (so one net holds both block kinds).

    `dilate` replaces a stage's stride with dilation, as `replace_stride_with_dilation` does for the
    DeepLab backbone. `num_classes=None` drops avgpool/fc and returns the stage outputs (a backbone).
    """

    def __init__(self, stages: Sequence[tuple[type[nn.Module], int, int]], stem: int = 16, groups: int = 1,
                 width_per_group: int = 64, dilate: Sequence[bool] = (), num_classes: int | None = 10) -> None:
        super().__init__()
        self.inplanes, self.dilation, self.groups, self.base_width = stem, 1, groups, width_per_group
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        dilate = tuple(dilate) + (False,) * (len(stages) - len(dilate))
        self.layers = nn.ModuleList(
            self._make_layer(block, planes, blocks, stride=1 if i == 0 else 2, dilate=dilate[i])
            for i, (block, planes, blocks) in enumerate(stages)
        )
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(self.inplanes, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                dilation=self.dilation))
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)[-1]
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet() -> nn.Module:
    """BasicBlock stages (identity and projection shortcuts) and a Bottleneck stage."""
    return ResNet([(BasicBlock, 16, 2), (BasicBlock, 32, 1), (Bottleneck, 16, 2)], stem=16)


def resnext() -> nn.Module:
    """ResNeXt bottlenecks, 8 groups of 4 channels in the first stage (8 of 8 after)."""
    return ResNet([(Bottleneck, 32, 2), (Bottleneck, 64, 2)], stem=32, groups=8, width_per_group=8)


# --------------------------------------------------------------------------------------------------
# RegNetY (torchvision/timm): bottleneck with fixed group width, SE on the bottleneck width
# --------------------------------------------------------------------------------------------------


class SqueezeExciteMean(nn.Module):
    """timm's SE: `x.mean((2, 3), keepdim=True)`, 1x1 conv, ReLU, 1x1 conv, sigmoid, multiply."""

    def __init__(self, channels: int, rd_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.fc2(self.act(self.fc1(x_se)))
        return x * self.gate(x_se)


def conv_norm_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True,
                  eps: float = 1e-5, act_layer: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: conv without bias, BN, optional activation."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=eps)]
    if act:
        layers.append(act_layer())
    return nn.Sequential(*layers)


class RegNetYBlock(nn.Module):
    """ResBottleneckBlock of RegNetY: a 1x1, grouped 3x3 (stride here), SE, 1x1; projection when needed."""

    def __init__(self, w_in: int, w_out: int, stride: int, group_width: int, se_ratio: float = 0.25) -> None:
        super().__init__()
        self.proj = conv_norm_act(w_in, w_out, 1, stride, act=False) if w_in != w_out or stride != 1 else None
        groups = w_out // group_width
        self.a = conv_norm_act(w_in, w_out, 1)
        self.b = conv_norm_act(w_out, w_out, 3, stride, groups=groups)
        self.se = SqueezeExciteMean(w_out, round(se_ratio * w_in))
        self.c = conv_norm_act(w_out, w_out, 1, act=False)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.c(self.se(self.b(self.a(x))))
        x = self.proj(x) + f if self.proj is not None else x + f
        return self.activation(x)


class RegNetY(nn.Module):
    def __init__(self, widths: Sequence[int] = (16, 32, 64), depths: Sequence[int] = (1, 2, 2),
                 group_width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_norm_act(3, 16, 3, 2)
        blocks: list[nn.Module] = []
        w_in = 16
        for w, d in zip(widths, depths, strict=True):
            for i in range(d):
                blocks.append(RegNetYBlock(w_in, w, 2 if i == 0 else 1, group_width))
                w_in = w
        self.trunk_output = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk_output(self.stem(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# --------------------------------------------------------------------------------------------------
# ShuffleNetV2 (torchvision)
# --------------------------------------------------------------------------------------------------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's channel shuffle: view to (b, g, c/g, h, w), swap axes 1 and 2, view back."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    x = x.view(batchsize, -1, height, width)
    return x


class ShuffleInvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch_features = oup // 2
        if self.stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, bias=False, groups=inp),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if self.stride > 1 else branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            nn.Conv2d(branch_features, branch_features, 3, self.stride, 1, bias=False, groups=branch_features),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, repeats: Sequence[int] = (2, 2, 2), channels: Sequence[int] = (16, 32, 64, 128, 256),
                 num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin = channels[0]
        stages = []
        for repeat, cout in zip(repeats, channels[1:4], strict=True):
            seq = [ShuffleInvertedResidual(cin, cout, 2)]
            seq += [ShuffleInvertedResidual(cout, cout, 1) for _ in range(repeat - 1)]
            stages.append(nn.Sequential(*seq))
            cin = cout
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(nn.Conv2d(cin, channels[-1], 1, 1, 0, bias=False), nn.BatchNorm2d(channels[-1]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x)
        x = x.mean([2, 3])  # globalpool
        return self.fc(x)


# --------------------------------------------------------------------------------------------------
# GhostNet (timm / the Huawei reference)
# --------------------------------------------------------------------------------------------------


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3.0) / 6.0


class GhostSqueezeExcite(nn.Module):
    def __init__(self, in_chs: int, se_ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        reduced_chs = _make_divisible(in_chs * se_ratio, divisor)
        self.conv_reduce = nn.Conv2d(in_chs, reduced_chs, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, in_chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.conv_expand(self.act1(self.conv_reduce(x_se)))
        return x * hard_sigmoid(x_se)


class GhostModule(nn.Module):
    """Primary 1x1 conv, a cheap depthwise (multiplier ratio-1) conv on its output, concat, slice to oup."""

    def __init__(self, inp: int, oup: int, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3,
                 stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.oup = oup
        init_channels = math.ceil(oup / ratio)
        new_channels = init_channels * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels, bias=False),
            nn.BatchNorm2d(new_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        return out[:, : self.oup, :, :]


class GhostBottleneck(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1,
                 se_ratio: float = 0.0, ratio: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True, ratio=ratio)
        if self.stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride=stride,
                                     padding=(dw_kernel_size - 1) // 2, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = GhostSqueezeExcite(mid_chs, se_ratio=se_ratio) if se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if in_chs == out_chs and self.stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride=stride, padding=(dw_kernel_size - 1) // 2,
                          groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        x += self.shortcut(residual)
        return x


class GhostNet(nn.Module):
    """GhostNet at small width. mid_chs 45 makes a GhostModule whose slice really cuts (46 -> 45); one
    module uses ratio 3, so its cheap op is a grouped conv with channel multiplier 2."""

    CFG = (  # k, mid, out, se_ratio, stride, ratio of ghost1
        (3, 16, 16, 0.0, 1, 2),
        (3, 48, 24, 0.0, 2, 2),
        (3, 72, 24, 0.0, 1, 2),
        (5, 72, 40, 0.25, 2, 2),
        (5, 45, 40, 0.25, 1, 2),
        (3, 48, 40, 0.0, 1, 3),
        (3, 96, 56, 0.25, 2, 2),
    )

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = nn.ReLU(inplace=True)
        blocks: list[nn.Module] = []
        cin = 16
        for k, mid, out, se, s, ratio in self.CFG:
            blocks.append(GhostBottleneck(cin, mid, out, k, s, se_ratio=se, ratio=ratio))
            cin = out
        blocks.append(conv_norm_act(cin, 112, 1))
        self.blocks = nn.Sequential(*blocks)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_head = nn.Conv2d(112, 160, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(160, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.act2(self.conv_head(self.global_pool(x)))
        x = x.flatten(1)
        return self.classifier(x)


# --------------------------------------------------------------------------------------------------
# ultralytics YOLOv8 / YOLO11
# --------------------------------------------------------------------------------------------------


def autopad(k: int, p: int | None = None, d: int = 1) -> int:
    if d > 1:
        k = d * (k - 1) + 1
    return k // 2 if p is None else p


class Conv(nn.Module):
    """ultralytics Conv: Conv2d(bias=False) + BN + SiLU (or no activation with act=False)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, d: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act is True else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(Conv):
    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act: bool = True) -> None:
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


class YoloBottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k: tuple[int, int] = (3, 3),
                 e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C2f(nn.Module):
    """CSP bottleneck with 2 convs; `forward` chunks, `forward_split` splits (the ultralytics exporter
    swaps in `forward_split` for ONNX; `use_split` picks it here)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5,
                 use_split: bool = False) -> None:
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(YoloBottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))
        self.use_split = use_split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_split:
            return self.forward_split(x)
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))

    def forward_split(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x).split((self.c, self.c), 1)
        y = [y[0], y[1]]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C3(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(YoloBottleneck(c_, c_, shortcut, g, k=(1, 3), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k(C3):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 k: int = 3) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(YoloBottleneck(c_, c_, shortcut, g, k=(k, k), e=1.0) for _ in range(n)))


class C3k2(C2f):
    def __init__(self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, g: int = 1,
                 shortcut: bool = True) -> None:
        super().__init__(c1, c2, n, shortcut, g, e, use_split=True)
        self.m = nn.ModuleList(
            C3k(self.c, self.c, 2, shortcut, g) if c3k else YoloBottleneck(self.c, self.c, shortcut, g)
            for _ in range(n)
        )


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class Attention(nn.Module):
    """ultralytics Attention of PSABlock: qkv 1x1, view + split into heads, matmul-softmax, positional dwconv."""

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        nh_kd = self.key_dim * num_heads
        h = dim + nh_kd * 2
        self.qkv = Conv(dim, h, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        N = H * W
        qkv = self.qkv(x)
        q, k, v = qkv.view(B, self.num_heads, self.key_dim * 2 + self.head_dim, N).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2
        )
        attn = (q.transpose(-2, -1) @ k) * self.scale
        attn = attn.softmax(dim=-1)
        x = (v @ attn.transpose(-2, -1)).view(B, C, H, W) + self.pe(v.reshape(B, C, H, W))
        return self.proj(x)


class PSABlock(nn.Module):
    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True) -> None:
        super().__init__()
        self.attn = Attention(c, attn_ratio=attn_ratio, num_heads=num_heads)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x) if self.add else self.attn(x)
        x = x + self.ffn(x) if self.add else self.ffn(x)
        return x


class C2PSA(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        assert c1 == c2
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=max(1, self.c // 64)) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = self.m(b)
        return self.cv2(torch.cat((a, b), 1))


class DFL(nn.Module):
    """Distribution focal loss integral: softmax over reg_max bins, a fixed 1x1 conv with weights 0..c1-1."""

    def __init__(self, c1: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        x = torch.arange(c1, dtype=torch.float)
        self.conv.weight.data[:] = nn.Parameter(x.view(1, c1, 1, 1))
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape  # batch, channels, anchors
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchors(sizes: Sequence[tuple[int, int]], strides: Sequence[float], grid_cell_offset: float = 0.5):
    """Anchor points (cell centres) and their strides, for feature maps of the given (h, w) sizes."""
    anchor_points, stride_tensor = [], []
    for (h, w), stride in zip(sizes, strides, strict=True):
        sx = torch.arange(end=w, dtype=torch.float32) + grid_cell_offset
        sy = torch.arange(end=h, dtype=torch.float32) + grid_cell_offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        anchor_points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_tensor.append(torch.full((h * w, 1), stride, dtype=torch.float32))
    return torch.cat(anchor_points), torch.cat(stride_tensor)


def dist2bbox(distance: torch.Tensor, anchor_points: torch.Tensor, xywh: bool = True, dim: int = -1) -> torch.Tensor:
    lt, rb = distance.chunk(2, dim)
    x1y1 = anchor_points - lt
    x2y2 = anchor_points + rb
    if xywh:
        c_xy = (x1y1 + x2y2) / 2
        wh = x2y2 - x1y1
        return torch.cat((c_xy, wh), dim)
    return torch.cat((x1y1, x2y2), dim)


class Detect(nn.Module):
    """ultralytics Detect in export mode: per level cat(box branch, cls branch), flatten and concat the
    levels, split box/cls, DFL, dist2bbox against the anchors, cat(boxes, sigmoid(cls)).

    The anchors are what ultralytics' exporter leaves in the module after its dry run at the export
    size (constant tensors); `legacy=False` is the YOLO11 head whose cls branch uses depthwise convs.
    """

    def __init__(self, nc: int, ch: Sequence[int], strides: Sequence[int], image_size: tuple[int, int],
                 legacy: bool = True) -> None:
        super().__init__()
        self.nc, self.nl, self.reg_max = nc, len(ch), 16
        self.no = nc + self.reg_max * 4
        self.stride = torch.tensor(strides, dtype=torch.float32)
        c2, c3 = max((16, ch[0] // 4, self.reg_max * 4)), max(ch[0], min(self.nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1)) for x in ch
        )
        if legacy:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, self.nc, 1))
                                     for x in ch)
        else:
            self.cv3 = nn.ModuleList(
                nn.Sequential(
                    nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                    nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                    nn.Conv2d(c3, self.nc, 1),
                )
                for x in ch
            )
        self.dfl = DFL(self.reg_max)
        sizes = [(image_size[0] // s, image_size[1] // s) for s in strides]
        anchors, stride_tensor = make_anchors(sizes, strides, 0.5)
        self.register_buffer("anchors", anchors.transpose(0, 1).contiguous(), persistent=False)
        self.register_buffer("strides", stride_tensor.transpose(0, 1).contiguous(), persistent=False)

    def bias_init(self) -> None:
        """ultralytics' Detect.bias_init (run when a model is built): box biases 1.0, cls biases a prior."""
        for a, b, s in zip(self.cv2, self.cv3, self.stride.tolist(), strict=True):
            a[-1].bias.data[:] = 1.0
            b[-1].bias.data[: self.nc] = math.log(5 / self.nc / (640 / s) ** 2)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        for i in range(self.nl):
            x[i] = torch.cat((self.cv2[i](x[i]), self.cv3[i](x[i])), 1)
        shape = x[0].shape  # BCHW
        x_cat = torch.cat([xi.view(shape[0], self.no, -1) for xi in x], 2)
        box, cls = x_cat.split((self.reg_max * 4, self.nc), 1)
        dbox = dist2bbox(self.dfl(box), self.anchors.unsqueeze(0), xywh=True, dim=1) * self.strides
        return torch.cat((dbox, cls.sigmoid()), 1)


class YOLOv8(nn.Module):
    """yolov8n layer by layer (widths 16..256, depths 1/2/2/1), nc classes, 3-scale Detect."""

    output_names = ("output0",)

    def __init__(self, nc: int = 8, image_size: tuple[int, int] = (64, 64)) -> None:
        super().__init__()
        self.b0, self.b1, self.b2 = Conv(3, 16, 3, 2), Conv(16, 32, 3, 2), C2f(32, 32, 1, True)
        self.b3, self.b4 = Conv(32, 64, 3, 2), C2f(64, 64, 2, True)
        self.b5, self.b6 = Conv(64, 128, 3, 2), C2f(128, 128, 2, True)
        self.b7, self.b8, self.b9 = Conv(128, 256, 3, 2), C2f(256, 256, 1, True), SPPF(256, 256, 5)
        self.up = nn.Upsample(None, 2, "nearest")
        self.h12 = C2f(384, 128, 1)
        self.h15 = C2f(192, 64, 1)
        self.h16, self.h18 = Conv(64, 64, 3, 2), C2f(192, 128, 1)
        self.h19, self.h21 = Conv(128, 128, 3, 2), C2f(384, 256, 1)
        self.detect = Detect(nc, (64, 128, 256), (8, 16, 32), image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.b4(self.b3(self.b2(self.b1(self.b0(x)))))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        h12 = self.h12(torch.cat([self.up(p5), p4], 1))
        h15 = self.h15(torch.cat([self.up(h12), p3], 1))
        h18 = self.h18(torch.cat([self.h16(h15), h12], 1))
        h21 = self.h21(torch.cat([self.h19(h18), p5], 1))
        return self.detect([h15, h18, h21])


class YOLOv8Fresh(YOLOv8):
    """yolov8 as ultralytics builds it, before training: Detect.bias_init sets every level's box bias
    to 1.0, so three equal initializers reach the exporter (it keeps one and routes it to the others)."""

    def post_init(self, generator: torch.Generator) -> None:
        self.detect.bias_init()


class YOLO11(nn.Module):
    """yolo11n layer by layer: C3k2 (split forward; C3k inside where c3k=True), SPPF, optional C2PSA,
    and the YOLO11 Detect head (depthwise convs in the cls branch)."""

    output_names = ("output0",)

    def __init__(self, nc: int = 8, image_size: tuple[int, int] = (64, 64), psa: bool = False) -> None:
        super().__init__()
        self.b0, self.b1 = Conv(3, 16, 3, 2), Conv(16, 32, 3, 2)
        self.b2 = C3k2(32, 64, 1, False, 0.25)
        self.b3, self.b4 = Conv(64, 64, 3, 2), C3k2(64, 128, 1, False, 0.25)
        self.b5, self.b6 = Conv(128, 128, 3, 2), C3k2(128, 128, 1, True)
        self.b7, self.b8 = Conv(128, 256, 3, 2), C3k2(256, 256, 1, True)
        self.b9 = SPPF(256, 256, 5)
        self.b10 = C2PSA(256, 256, 1) if psa else nn.Identity()
        self.up = nn.Upsample(None, 2, "nearest")
        self.h13 = C3k2(384, 128, 1, False)
        self.h16 = C3k2(256, 64, 1, False)
        self.h17, self.h19 = Conv(64, 64, 3, 2), C3k2(192, 128, 1, False)
        self.h20, self.h22 = Conv(128, 128, 3, 2), C3k2(384, 256, 1, True)
        self.detect = Detect(nc, (64, 128, 256), (8, 16, 32), image_size, legacy=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.b4(self.b3(self.b2(self.b1(self.b0(x)))))
        p4 = self.b6(self.b5(p3))
        p5 = self.b10(self.b9(self.b8(self.b7(p4))))
        h13 = self.h13(torch.cat([self.up(p5), p4], 1))
        h16 = self.h16(torch.cat([self.up(h13), p3], 1))
        h19 = self.h19(torch.cat([self.h17(h16), h13], 1))
        h22 = self.h22(torch.cat([self.h20(h19), p5], 1))
        return self.detect([h16, h19, h22])


# --------------------------------------------------------------------------------------------------
# ConvNeXt (timm / official) and ConvNeXt V2 (official)
# --------------------------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """timm's channels-first LayerNorm: permute to NHWC, F.layer_norm, permute back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerNormChannelsFirst(nn.Module):
    """The ConvNeXt-official channels-first LayerNorm, written out as mean/pow/sqrt arithmetic."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """ConvNeXt V2 global response normalisation (NHWC input)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        Nx = Gx / (Gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * Nx) + self.beta + x

    def post_init(self, generator: torch.Generator) -> None:
        dim = self.gamma.shape[-1]
        self.gamma.copy_((0.2 + 0.3 * torch.rand(dim, generator=generator)).view(1, 1, 1, dim))
        self.beta.copy_((0.1 * torch.randn(dim, generator=generator)).view(1, 1, 1, dim))


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7, permute to NHWC, LayerNorm, Linear 4x, GELU, [GRN], Linear, [layer scale], permute back,
    residual add (drop path is the identity in eval)."""

    def __init__(self, dim: int, layer_scale_init_value: float = 1e-6, grn: bool = False) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim) if grn else None
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (nn.Parameter(layer_scale_init_value * torch.ones(dim))
                      if layer_scale_init_value > 0 and not grn else None)
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        if self.grn is not None:
            x = self.grn(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = x * self.gamma
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        return shortcut + self.drop_path(x)

    def post_init(self, generator: torch.Generator) -> None:
        if self.gamma is not None:  # a trained layer scale, not the 1e-6 it starts from
            self.gamma.copy_(0.1 + 0.9 * torch.rand(self.gamma.shape[0], generator=generator))


class ConvNeXt(nn.Module):
    """Stem 4x4/4 + channels-first LN, [LN + 2x2/2 downsample] between stages, mean pool, LN, Linear.

    `cf_norm` picks the channels-first LayerNorm: timm's `LayerNorm2d` or the official arithmetic form.
    """

    def __init__(self, depths: Sequence[int] = (1, 1, 2, 1), dims: Sequence[int] = (16, 32, 48, 64),
                 cf_norm: type[nn.Module] = LayerNorm2d, grn: bool = False, num_classes: int = 10) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4),
                                                    cf_norm(dims[0], eps=1e-6)))
        for i in range(len(dims) - 1):
            self.downsample_layers.append(nn.Sequential(cf_norm(dims[i], eps=1e-6),
                                                        nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        self.stages = nn.ModuleList(nn.Sequential(*(ConvNeXtBlock(dim, grn=grn) for _ in range(depth)))
                                    for depth, dim in zip(depths, dims, strict=True))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        x = self.norm(x.mean([-2, -1]))  # global average pooling, (N, C, H, W) -> (N, C)
        return self.head(x)


# --------------------------------------------------------------------------------------------------
# Segmentation: FPN semantic head, DeepLabV3 (torchvision ASPP)
# --------------------------------------------------------------------------------------------------


class FPNSeg(nn.Module):
    """ResNet backbone (C2..C5), FPN (lateral 1x1, nearest x2 top-down adds, 3x3 outputs), all levels
    resized bilinearly to C2's size and concatenated, a conv head, bilinear resize to the input size."""

    def __init__(self, num_classes: int = 5, fpn_dim: int = 32) -> None:
        super().__init__()
        self.backbone = ResNet([(BasicBlock, 16, 1), (BasicBlock, 32, 1), (BasicBlock, 48, 1), (BasicBlock, 64, 1)],
                               stem=16, num_classes=None)
        chans = (16, 32, 48, 64)
        self.inner_blocks = nn.ModuleList(nn.Conv2d(c, fpn_dim, 1) for c in chans)
        self.layer_blocks = nn.ModuleList(nn.Conv2d(fpn_dim, fpn_dim, 3, padding=1) for _ in chans)
        self.head = nn.Sequential(nn.Conv2d(4 * fpn_dim, fpn_dim, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(fpn_dim), nn.ReLU(inplace=True), nn.Conv2d(fpn_dim, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_shape = x.shape[-2:]
        feats = self.backbone.features(x)
        last_inner = self.inner_blocks[-1](feats[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(feats) - 2, -1, -1):
            inner_lateral = self.inner_blocks[idx](feats[idx])
            last_inner = inner_lateral + F.interpolate(last_inner, scale_factor=2, mode="nearest")
            results.insert(0, self.layer_blocks[idx](last_inner))
        size = results[0].shape[-2:]
        ups = [results[0]] + [F.interpolate(r, size=size, mode="bilinear", align_corners=False) for r in results[1:]]
        x = self.head(torch.cat(ups, dim=1))
        return F.interpolate(x, size=input_shape, mode="bilinear", align_corners=False)


class ASPPConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class ASPPPooling(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = 32) -> None:
        super().__init__()
        modules: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                                  nn.BatchNorm2d(out_channels), nn.ReLU())]
        modules += [ASPPConv(in_channels, out_channels, rate) for rate in atrous_rates]
        modules.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(modules)
        self.project = nn.Sequential(nn.Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False),
                                     nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = [conv(x) for conv in self.convs]
        res = torch.cat(res, dim=1)
        return self.project(res)


class DeepLabV3(nn.Module):
    """torchvision DeepLabV3 with aux_loss: dilated ResNet (output stride 8), DeepLabHead (ASPP, 3x3
    conv-BN-ReLU, 1x1), an FCNHead on the previous stage, both bilinearly resized to the input."""

    output_names = ("out", "aux")

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.backbone = ResNet([(BasicBlock, 16, 1), (BasicBlock, 32, 1), (Bottleneck, 16, 1), (Bottleneck, 16, 1)],
                               stem=16, dilate=(False, False, True, True), num_classes=None)
        self.classifier = nn.Sequential(ASPP(64, (2, 4, 6)), nn.Conv2d(32, 32, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, num_classes, 1))
        self.aux_classifier = nn.Sequential(nn.Conv2d(64, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                            nn.ReLU(), nn.Dropout(0.1), nn.Conv2d(16, num_classes, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input_shape = x.shape[-2:]
        feats = self.backbone.features(x)
        out = self.classifier(feats[-1])
        out = F.interpolate(out, size=input_shape, mode="bilinear", align_corners=False)
        aux = self.aux_classifier(feats[-2])
        aux = F.interpolate(aux, size=input_shape, mode="bilinear", align_corners=False)
        return out, aux


# --------------------------------------------------------------------------------------------------
# MobileNetV3, EfficientNet (torchvision)
# --------------------------------------------------------------------------------------------------


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation; `functional_pool` uses F.adaptive_avg_pool2d as MobileNetV3's
    older `SqueezeExcitation` did, else the AdaptiveAvgPool2d module."""

    def __init__(self, input_channels: int, squeeze_channels: int, activation: type[nn.Module] = nn.ReLU,
                 scale_activation: type[nn.Module] = nn.Sigmoid, functional_pool: bool = False) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()
        self.functional_pool = functional_pool

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(input, 1) if self.functional_pool else self.avgpool(input)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(scale))))
        return scale * input


class MobileNetV3Block(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, act: str, stride: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        act_layer = nn.Hardswish if act == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(conv_norm_act(cin, exp, 1, eps=0.001, act_layer=act_layer))
        layers.append(conv_norm_act(exp, exp, k, stride, groups=exp, eps=0.001, act_layer=act_layer))
        if se:
            layers.append(SqueezeExcitation(exp, _make_divisible(exp // 4, 8), scale_activation=nn.Hardsigmoid,
                                            functional_pool=True))
        layers.append(conv_norm_act(exp, cout, 1, eps=0.001, act=False))
        self.block = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result += input
        return result


class MobileNetV3(nn.Module):
    CFG = (  # in, k, exp, out, se, act, stride
        (16, 3, 16, 16, True, "RE", 2),
        (16, 3, 72, 24, False, "RE", 2),
        (24, 3, 88, 24, False, "RE", 1),
        (24, 5, 96, 40, True, "HS", 2),
        (40, 5, 120, 40, True, "HS", 1),
        (40, 5, 144, 48, True, "HS", 1),
    )

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_norm_act(3, 16, 3, 2, eps=0.001, act_layer=nn.Hardswish)]
        layers += [MobileNetV3Block(*cfg) for cfg in self.CFG]
        layers.append(conv_norm_act(48, 288, 1, eps=0.001, act_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(288, 128), nn.Hardswish(inplace=True), nn.Dropout(p=0.2),
                                        nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class StochasticDepth(nn.Module):
    """torchvision's StochasticDepth (mode "row"); the identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return input
        survival = 1.0 - self.p
        noise = torch.empty([input.shape[0]] + [1] * (input.ndim - 1), dtype=input.dtype, device=input.device)
        return input * noise.bernoulli_(survival).div_(survival)


class MBConv(nn.Module):
    def __init__(self, cin: int, expand_ratio: float, k: int, stride: int, cout: int, sd_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        expanded = _make_divisible(cin * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_norm_act(cin, expanded, 1, eps=1e-3, act_layer=nn.SiLU))
        layers.append(conv_norm_act(expanded, expanded, k, stride, groups=expanded, eps=1e-3, act_layer=nn.SiLU))
        layers.append(SqueezeExcitation(expanded, max(1, cin // 4), activation=nn.SiLU))
        layers.append(conv_norm_act(expanded, cout, 1, eps=1e-3, act=False))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += input
        return result


class EfficientNet(nn.Module):
    CFG = (  # expand, k, stride, in, out, layers
        (1, 3, 1, 16, 8, 1),
        (6, 3, 2, 8, 16, 2),
        (6, 5, 2, 16, 24, 2),
        (6, 3, 2, 24, 40, 1),
    )

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_norm_act(3, 16, 3, 2, eps=1e-3, act_layer=nn.SiLU)]
        total = sum(c[-1] for c in self.CFG)
        index = 0
        for expand, k, stride, cin, cout, n in self.CFG:
            stage = []
            for i in range(n):
                stage.append(MBConv(cin if i == 0 else cout, expand, k, stride if i == 0 else 1, cout,
                                    0.2 * index / total))
                index += 1
            layers.append(nn.Sequential(*stage))
        layers.append(conv_norm_act(40, 160, 1, eps=1e-3, act_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(160, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


# --------------------------------------------------------------------------------------------------
# DenseNet, GoogLeNet (torchvision), UNet, CSPDarknet
# --------------------------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    """torchvision's _DenseLayer: takes the list of previous features and concatenates it itself."""

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, input: list[torch.Tensor]) -> torch.Tensor:
        concated_features = torch.cat(input, 1)
        bottleneck_output = self.conv1(self.relu1(self.norm1(concated_features)))
        return self.conv2(self.relu2(self.norm2(bottleneck_output)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(num_input_features + i * growth_rate, growth_rate,
                                                             bn_size))

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for _, layer in self.items():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    def __init__(self, growth_rate: int = 8, block_config: Sequence[int] = (2, 2, 2), num_init_features: int = 16,
                 bn_size: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(num_layers, num_features, bn_size, growth_rate))
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(num_features, num_features // 2))
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """torchvision's Inception: 1x1 | 1x1-3x3 | 1x1-3x3 (the '5x5' branch is a 3x3 there) | pool-1x1, cat."""

    def __init__(self, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outputs, 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(3, 16, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(16, 16, kernel_size=1)
        self.conv3 = BasicConv2d(16, 32, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(32, 8, 12, 16, 4, 8, 8)
        self.inception3b = Inception(40, 16, 16, 24, 4, 12, 12)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(64, 24, 12, 26, 4, 12, 16)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(78, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """ConvTranspose x2, pad to the skip's size (a no-op pad at these sizes, still exported), cat, DoubleConv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, n_classes: int = 3, base: int = 8) -> None:
        super().__init__()
        b = base
        self.inc = DoubleConv(3, b)
        self.down1, self.down2, self.down3, self.down4 = Down(b, 2 * b), Down(2 * b, 4 * b), Down(4 * b, 8 * b), \
            Down(8 * b, 16 * b)
        self.up1, self.up2, self.up3, self.up4 = Up(16 * b, 8 * b), Up(8 * b, 4 * b), Up(4 * b, 2 * b), Up(2 * b, b)
        self.outc = nn.Conv2d(b, n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.mish(x)


def cbm(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """Darknet conv: conv (no bias) + BN + Mish."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), Mish())


class DarkResBlock(nn.Module):
    def __init__(self, c: int, hidden: int) -> None:
        super().__init__()
        self.block = nn.Sequential(cbm(c, hidden, 1), cbm(hidden, c, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class CSPStage(nn.Module):
    """CSPDarknet53 stage: 3x3/2 downsample; two 1x1 convs split it into a bypass and a part that runs
    the residual blocks and a 1x1 transition; concat(part, bypass); 1x1 transition."""

    def __init__(self, cin: int, cout: int, n: int, first: bool = False) -> None:
        super().__init__()
        c = cout if first else cout // 2
        self.downsample = cbm(cin, cout, 3, 2)
        self.split_conv0 = cbm(cout, c, 1)
        self.split_conv1 = cbm(cout, c, 1)
        self.blocks_conv = nn.Sequential(*(DarkResBlock(c, cout // 2 if first else c) for _ in range(n)), cbm(c, c, 1))
        self.concat_conv = cbm(2 * c, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        x0 = self.split_conv0(x)
        x1 = self.blocks_conv(self.split_conv1(x))
        return self.concat_conv(torch.cat([x1, x0], dim=1))


class CSPDarknet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = cbm(3, 8, 3)
        self.stages = nn.Sequential(CSPStage(8, 16, 1, first=True), CSPStage(16, 32, 2), CSPStage(32, 64, 2))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --------------------------------------------------------------------------------------------------
# Tied parameters
# --------------------------------------------------------------------------------------------------


class Tied(nn.Module):
    """Weight sharing and equal parameters, which the TorchScript exporter deduplicates.

    `shared` runs twice (one initializer, two Conv nodes); `bn_a`/`bn_b` hold identical parameters
    and statistics; `conv_a`/`conv_b` have one bias vector; `conv_c`/`conv_d` zero biases. The
    exporter keeps one copy of each equal initializer and routes it to the other users through
    Identity nodes.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.shared = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn_a, self.bn_b = nn.BatchNorm2d(16), nn.BatchNorm2d(16)
        self.conv_a, self.conv_b = nn.Conv2d(16, 16, 1), nn.Conv2d(16, 16, 3, padding=1)
        self.conv_c, self.conv_d = nn.Conv2d(16, 32, 3, 2, 1), nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(self.bn_a(self.shared(x)))
        x = torch.relu(self.bn_b(self.shared(x)))
        x = x + self.conv_b(torch.relu(self.conv_a(x)))
        x = torch.relu(self.conv_d(torch.relu(self.conv_c(x))))
        return self.fc(x.mean((2, 3)))

    def post_init(self, generator: torch.Generator) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(self.bn_b, name).copy_(getattr(self.bn_a, name))
        self.conv_b.bias.copy_(self.conv_a.bias)
        self.conv_c.bias.zero_()
        self.conv_d.bias.zero_()


# --------------------------------------------------------------------------------------------------
# Vision transformers: timm's ViT/DeiT (fused qkv), separate projections, PyTorch's MultiheadAttention
# --------------------------------------------------------------------------------------------------


class FusedAttention(nn.Module):
    """timm's `Attention`: one qkv Linear, `reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)`, then
    the explicit `q @ k^T * scale` softmax (`fused_attn=False`) or `F.scaled_dot_product_attention`."""

    def __init__(self, dim: int, heads: int, sdpa: bool = False) -> None:
        super().__init__()
        self.heads, self.head_dim, self.sdpa = heads, dim // heads, sdpa
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.sdpa:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            x = attn @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class SeparateAttention(nn.Module):
    """Hugging Face style: q, k and v Linears, `view(B, N, H, D).transpose(1, 2)` each, scores divided by
    sqrt(D), the context `transpose(1, 2).contiguous().view(B, N, C)`."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_heads(self.query(x)), self.split_heads(self.key(x)), self.split_heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        context = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).contiguous()
        return self.out(context.view(*context.shape[:2], -1))


class MHAAttention(nn.Module):
    """torchvision's ViT encoder attention: `nn.MultiheadAttention(dim, heads, batch_first=True)`."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]

    def post_init(self, generator: torch.Generator) -> None:
        """The fused input projection is a bare parameter (no Linear for `make` to initialise): a trained
        one's weights, and a bias that is not zero."""
        weight = self.attention.in_proj_weight
        weight.copy_(torch.randn(weight.shape, generator=generator) * math.sqrt(2 / weight.shape[1]))
        self.attention.in_proj_bias.copy_(0.1 * torch.randn(weight.shape[0], generator=generator))


class TransformerBlock(nn.Module):
    """Pre-norm block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))` (Linear, GELU, Linear)."""

    def __init__(self, dim: int, heads: int, attention: Callable[[int, int], nn.Module], mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """timm's `VisionTransformer` shape: conv patch embedding, `flatten(2).transpose(1, 2)`, class token
    (and DeiT's distillation token) concatenated in front, position embedding added, blocks, final norm,
    heads on the token(s); `pool="mean"` averages the tokens instead (no class token)."""

    def __init__(self, attention: Callable[[int, int], nn.Module], dim: int = 64, heads: int = 4, depth: int = 2,
                 patch: int = 16, image: int = 64, tokens: int = 1, pool: str = "token",
                 num_classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.tokens = nn.Parameter(0.02 * torch.randn(1, tokens, dim)) if pool == "token" else None
        count = (image // patch) ** 2 + (tokens if pool == "token" else 0)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, count, dim))
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, attention) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(tokens if pool == "token" else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.tokens is not None:
            x = torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        if self.tokens is None:
            return self.heads[0](x.mean(dim=1))
        return sum(head(x[:, i]) for i, head in enumerate(self.heads)) / len(self.heads)


class WindowAttention(nn.Module):
    """timm's Swin `WindowAttention`: fused qkv, a relative position bias gathered from a learnt table by a
    constant index, and the shifted windows' mask added per window."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.head_dim, self.window = heads, dim // heads, window
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(0.02 * torch.randn((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", relative[..., 0] * (2 * window - 1) + relative[..., 1],
                             persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(-1, windows, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class SwinBlock(nn.Module):
    """Swin's block on (B, H, W, C): window partition, (shifted: `torch.roll` and the mask) attention,
    window reverse, residual; then the MLP sub-block."""

    def __init__(self, dim: int, heads: int, size: int, window: int, shift: int) -> None:
        super().__init__()
        self.size, self.window, self.shift = size, window, shift
        self.norm1, self.attn = nn.LayerNorm(dim), WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        mask = None
        if shift:
            regions = torch.zeros(1, size, size, 1)
            cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
            for label, (h, w) in enumerate((h, w) for h in cuts for w in cuts):
                regions[:, h, w, :] = label
            windows = self.partition(regions).squeeze(-1)
            mask = (windows.unsqueeze(1) - windows.unsqueeze(2)).ne(0).float() * -100.0
        self.register_buffer("attn_mask", mask, persistent=False)

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window
        x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, ws * ws, c)

    def reverse(self, windows: torch.Tensor, b: int) -> torch.Tensor:
        ws, size = self.window, self.size
        x = windows.view(b, size // ws, size // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b, size, size, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.reverse(self.attn(self.partition(y), self.attn_mask), b)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Swin's downsampling: the four 2x2 neighbours joined on channels, LayerNorm, Linear to 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class Swin(nn.Module):
    """A two-stage Swin (timm's layout, channels last): patches of 4, window 4, a regular and a shifted
    block per stage, patch merging between, final norm, mean over the tokens, head."""

    def __init__(self, dim: int = 32, heads: int = 2, window: int = 4, image: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        size = image // 4
        self.patch_embed = nn.Conv2d(3, dim, 4, 4)
        self.embed_norm = nn.LayerNorm(dim)
        self.stage1 = nn.Sequential(SwinBlock(dim, heads, size, window, 0), SwinBlock(dim, heads, size, window, 2))
        self.merge = PatchMerging(dim)
        self.stage2 = nn.Sequential(SwinBlock(2 * dim, 2 * heads, size // 2, window, 0),
                                    SwinBlock(2 * dim, 2 * heads, size // 2, window, 2))
        self.norm = nn.LayerNorm(2 * dim)
        self.head = nn.Linear(2 * dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))
        x = self.stage2(self.merge(self.stage1(x)))
        return self.head(self.norm(x).mean(dim=(1, 2)))


class MobileViTBlock(nn.Module):
    """timm's `MobileViTBlock`: a local 3x3 and 1x1 conv, the map unfolded into patches
    (`reshape(B * C * nh, ph, nw, pw).transpose(1, 2)...reshape(B * P, N, C)`), transformer blocks, the fold
    back, a 1x1 projection, the shortcut concatenated, a 3x3 fusion conv."""

    def __init__(self, c: int, dim: int, heads: int = 2, patch: int = 2) -> None:
        super().__init__()
        self.patch = patch
        self.conv_kxk = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU())
        self.conv_1x1 = nn.Conv2d(c, dim, 1, bias=False)
        self.transformer = nn.Sequential(TransformerBlock(dim, heads, FusedAttention, mlp_ratio=2))
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = nn.Sequential(nn.Conv2d(dim, c, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU())
        self.conv_fusion = nn.Sequential(nn.Conv2d(2 * c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_1x1(self.conv_kxk(x))
        b, c, h, w = x.shape
        ph = pw = self.patch
        nh, nw = h // ph, w // pw
        patches, area = nh * nw, ph * pw
        x = x.reshape(b * c * nh, ph, nw, pw).transpose(1, 2)
        x = x.reshape(b, c, patches, area).transpose(1, 3).reshape(b * area, patches, -1)
        x = self.norm(self.transformer(x)).contiguous().view(b, area, patches, -1)
        x = x.transpose(1, 3).reshape(b * c * nh, nw, ph, pw).transpose(1, 2).reshape(b, c, nh * ph, nw * pw)
        return self.conv_fusion(torch.cat((shortcut, self.conv_proj(x)), dim=1))


class MobileViT(nn.Module):
    """A MobileViT in miniature: conv stems down to 16x16, two MobileViT blocks, mean pool, head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU(),
                                  nn.Conv2d(16, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.SiLU())
        self.stage = nn.Sequential(MobileViTBlock(24, 32), MobileViTBlock(24, 32))
        self.head = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(self.stem(x)).mean((2, 3)))


class LinearNorm(nn.Module):
    """LeViT's `Linear` + `BatchNorm1d` on the flattened tokens."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout, bias=False)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.bn(x.flatten(0, 1)).reshape_as(x)


class LeViTAttention(nn.Module):
    """timm's LeViT `Attention`: one qkv LinearNorm viewed as (B, N, H, 2 * kd + d) and split per head, k
    permuted for the product, an attention bias per head gathered by constant offsets, hard swish before the
    output projection; the value width (attn_ratio * kd) differs from the key width."""

    def __init__(self, dim: int, key_dim: int = 8, heads: int = 4, attn_ratio: int = 2, resolution: int = 4) -> None:
        super().__init__()
        self.heads, self.key_dim, self.val_dim = heads, key_dim, attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.qkv = LinearNorm(dim, heads * (2 * key_dim + self.val_dim))
        self.proj = nn.Sequential(nn.Hardswish(), LinearNorm(heads * self.val_dim, dim))
        points = [(i, j) for i in range(resolution) for j in range(resolution)]
        offsets: dict[tuple[int, int], int] = {}
        index = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                index.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(0.1 * torch.randn(heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(index).view(len(points), len(points)),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, self.heads, -1).split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 3, 1), v.permute(0, 2, 1, 3)
        attn = (q @ k * self.scale + self.attention_biases[:, self.attention_bias_idxs]).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.heads * self.val_dim))


class LeViT(nn.Module):
    """A LeViT in miniature: conv stem with BN and hard swish (4x4 tokens at 64 px), two blocks of
    `x + attn(x)` and `x + mlp(x)` (LinearNorm, hard swish, LinearNorm), mean over tokens, BN head."""

    def __init__(self, dim: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.Hardswish(), nn.Conv2d(16, 32, 3, 2, 1),
            nn.BatchNorm2d(32), nn.Hardswish(), nn.Conv2d(32, dim, 3, 4, 1), nn.BatchNorm2d(dim))
        self.attns = nn.ModuleList(LeViTAttention(dim) for _ in range(2))
        self.mlps = nn.ModuleList(nn.Sequential(LinearNorm(dim, 2 * dim), nn.Hardswish(), LinearNorm(2 * dim, dim))
                                  for _ in range(2))
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        for attn, mlp in zip(self.attns, self.mlps, strict=True):
            x = x + attn(x)
            x = x + mlp(x)
        return self.head(x.mean(1))


class PoolMixer(nn.Module):
    """EfficientFormer's (and PoolFormer's) token mixer: `pool(x) - x`, an average over 3x3 that leaves
    out the padding."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class TwoLayerScales(nn.Module):
    """EfficientFormer's blocks scale both residual branches by a learnt vector (trained: well under 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def post_init(self, generator: torch.Generator) -> None:
        self.gamma1.copy_(0.1 + 0.5 * torch.rand(self.gamma1.shape, generator=generator))
        self.gamma2.copy_(0.1 + 0.5 * torch.rand(self.gamma2.shape, generator=generator))


class MetaBlock2d(TwoLayerScales):
    """timm's EfficientFormer `MetaBlock2d` (Meta4D): `x + ls1 * mix(x)`, `x + ls2 * mlp(x)` with a 1x1 conv
    MLP with BN and GELU; the layer scales are `x * gamma.view(1, -1, 1, 1)`."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.mixer = PoolMixer()
        self.mlp = nn.Sequential(nn.Conv2d(dim, 4 * dim, 1), nn.BatchNorm2d(4 * dim), nn.GELU(),
                                 nn.Conv2d(4 * dim, dim, 1), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(x) * self.gamma1.view(1, -1, 1, 1)
        return x + self.mlp(x) * self.gamma2.view(1, -1, 1, 1)


class EfficientFormerAttention(nn.Module):
    """timm's EfficientFormer `Attention`: one qkv Linear reshaped to (B, N, H, -1), permuted, split into q, k
    (key_dim each) and v (attn_ratio * key_dim) per head, `q @ k^T * scale` plus an attention bias per head
    gathered by relative offsets, softmax, `attn @ v`, output projection."""

    def __init__(self, dim: int, key_dim: int = 8, heads: int = 4, attn_ratio: int = 2, resolution: int = 4) -> None:
        super().__init__()
        self.heads, self.key_dim, self.val_dim = heads, key_dim, attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.qkv = nn.Linear(dim, heads * (2 * key_dim + self.val_dim))
        self.proj = nn.Linear(heads * self.val_dim, dim)
        pos = torch.stack(torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")).flatten(1)
        rel = (pos[..., :, None] - pos[..., None, :]).abs()
        self.attention_biases = nn.Parameter(0.1 * torch.randn(heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", rel[0] * resolution + rel[1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, self.heads * self.val_dim)
        return self.proj(x)


class MetaBlock1d(TwoLayerScales):
    """timm's EfficientFormer `MetaBlock1d` (Meta3D) on tokens: `x + ls1 * attn(norm(x))`,
    `x + ls2 * mlp(norm(x))`, the layer scales `x * gamma`."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = EfficientFormerAttention(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1 * self.attn(self.norm1(x))
        return x + self.gamma2 * self.mlp(self.norm2(x))


class EfficientFormer(nn.Module):
    """An EfficientFormer (v1) in miniature: a conv stem to 16x16, Meta4D stages with BN'd downsampling convs
    to 4x4, the map flattened to tokens, a Meta3D stage, LayerNorm, mean over tokens, and the classifier and
    distillation heads averaged (timm's eval forward)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        dims = (24, 32, 48)
        self.stem = nn.Sequential(nn.Conv2d(3, 12, 3, 2, 1), nn.BatchNorm2d(12), nn.ReLU(),
                                  nn.Conv2d(12, dims[0], 3, 2, 1), nn.BatchNorm2d(dims[0]), nn.ReLU())
        stages: list[nn.Module] = [MetaBlock2d(dims[0]), MetaBlock2d(dims[0])]
        for cin, cout in itertools.pairwise(dims):
            stages += [nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout)), MetaBlock2d(cout)]
        self.stages = nn.Sequential(*stages)
        self.tokens = nn.Sequential(MetaBlock1d(dims[-1]), MetaBlock1d(dims[-1]))
        self.norm = nn.LayerNorm(dims[-1])
        self.head, self.head_dist = nn.Linear(dims[-1], num_classes), nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x)).flatten(2).transpose(1, 2)
        x = self.norm(self.tokens(x)).mean(1)
        return (self.head(x) + self.head_dist(x)) / 2


# --------------------------------------------------------------------------------------------------
# Registry, trained-looking initialisation, export
# --------------------------------------------------------------------------------------------------

FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "resnet": resnet,
    "resnext": resnext,
    "regnety": RegNetY,
    "shufflenet_v2": ShuffleNetV2,
    "ghostnet": GhostNet,
    "mobilenet_v3": MobileNetV3,
    "efficientnet": EfficientNet,
    "densenet": DenseNet,
    "googlenet": GoogLeNet,
    "unet": UNet,
    "cspdarknet": CSPDarknet,
    "yolov8": YOLOv8,
    "yolov8_fresh": YOLOv8Fresh,
    "yolo11": YOLO11,
    "yolo11_psa": lambda: YOLO11(psa=True),
    "convnext": ConvNeXt,
    "convnext_cf": lambda: ConvNeXt(cf_norm=LayerNormChannelsFirst),
    "convnext_v2": lambda: ConvNeXt(cf_norm=LayerNormChannelsFirst, grn=True),
    "fpn_seg": FPNSeg,
    "deeplab_aspp": DeepLabV3,
    "tied": Tied,
    "vit": lambda: VisionTransformer(FusedAttention),
    "deit": lambda: VisionTransformer(lambda d, h: FusedAttention(d, h, sdpa=True), tokens=2),
    "vit_separate_qkv": lambda: VisionTransformer(SeparateAttention, pool="mean"),
    "vit_mha": lambda: VisionTransformer(MHAAttention),
    "swin": Swin,
    "mobilevit": MobileViT,
    "levit": LeViT,
    "efficientformer": EfficientFormer,
}

# The export input of each family. The detectors build their anchors for this size (as ultralytics'
# exporter leaves them after its dry run), so a family's shape is fixed here, not at export time.
INPUT_SHAPES: dict[str, tuple[int, ...]] = dict.fromkeys(FAMILIES, DEFAULT_INPUT_SHAPE)


def input_shape(name: str) -> tuple[int, ...]:
    return INPUT_SHAPES.get(name, DEFAULT_INPUT_SHAPE)


def output_names(model: nn.Module) -> list[str]:
    """The model's ONNX output names: `output`, or the class's `output_names` (detectors, multi-output)."""
    return list(getattr(model, "output_names", ("output",)))


def make(name: str, seed: int = 0) -> nn.Module:
    """Family `name` in eval mode with seeded, trained-looking weights (see the module docstring).

    Parameters a model fixes on purpose (the DFL conv's 0..15 weights, with requires_grad False) are
    left alone; a module's `post_init(generator)` runs last, for what a generic rule cannot say (layer
    scales, GRN, the tied model's equal parameters, ultralytics' Detect.bias_init).
    """
    torch.manual_seed(seed)
    model = FAMILIES[name]()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear) and module.weight.requires_grad:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
            elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
            elif isinstance(module, nn.LayerNorm | LayerNormChannelsFirst):
                shape = module.weight.shape
                module.weight.copy_(0.75 + 0.5 * torch.rand(shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(shape, generator=generator))
        _calibrate_batchnorm(model, input_shape(name), generator)
        for module in model.modules():
            post_init = getattr(module, "post_init", None)
            if post_init is not None:
                post_init(generator)
    return model.eval()


def _calibrate_batchnorm(model: nn.Module, shape: Sequence[int], generator: torch.Generator) -> None:
    """BN running statistics near the ones the layer really sees, then perturbed off them.

    Random statistics alone do not normalise: activations then grow block after block (outputs in the
    thousands), unlike a trained model's. One train-mode pass of BN (the rest stays in eval) on a few
    random images sets each BN's statistics to its input's; the perturbation (mean shifted by 0.1 std,
    variance scaled by 0.8..1.2) keeps BN from being exactly a standardisation.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    if not norms:
        return
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration pass
        bn.train()
    model(torch.randn((8, *tuple(shape)[1:]), generator=generator))
    for bn in norms:
        bn.momentum = 0.1
        c = bn.num_features
        std = bn.running_var.clamp_min(1e-3).sqrt()
        bn.running_mean.add_(0.1 * std * torch.randn(c, generator=generator))
        bn.running_var.copy_(bn.running_var.clamp_min(1e-3) * (0.8 + 0.4 * torch.rand(c, generator=generator)))
        bn.num_batches_tracked.zero_()
    model.eval()


def example_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))


def export(model: nn.Module, path: str | Path, input_shape: Sequence[int], *, fold_bn: bool, dynamo: bool = False,
           opset: int = 17, dynamic_batch: bool = False) -> Path:
    """Export `model` (in eval mode) to ONNX the way users do, offline; returns `path`.

    TorchScript exporter (dynamo=False), as `tests/torch_models.py::export`: fold_bn=True is the
    default eval export (TrainingMode.EVAL, which folds each BN into the Conv before it), fold_bn=False
    uses TrainingMode.PRESERVE, which keeps every BatchNormalization node (inference form).
    Dynamo exporter (dynamo=True, opset >= 18; ImportError without onnxscript): its default optimiser
    folds every Conv+BN pair itself and there is no user-facing switch to keep them (optimize=False
    leaves an unoptimised graph of SplitToSequence/CastLike/Expand nobody ships), so fold_bn does not
    change a dynamo export. Input `input`; outputs named by `output_names(model)`; weights inline.
    `dynamic_batch` (TorchScript): the batch axis of the input and outputs symbolic (`dynamic_axes`), as
    deployment exports usually are; shape computations then stay in the graph (`Shape(x)`).
    """
    model.eval()
    path = Path(path)
    example = example_input(input_shape)
    names = output_names(model)
    if dynamo:
        if not DYNAMO_AVAILABLE:
            raise ImportError("the dynamo ONNX exporter needs the onnxscript package (pip install onnxscript)")
        registration = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registration.level
        registration.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms" etc.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(model, (example,), dynamo=True, opset_version=max(opset, 18),
                                            input_names=["input"], output_names=names, verbose=False)
        finally:
            registration.setLevel(level)
        program.save(str(path), external_data=False)
        return path
    mode = torch.onnx.TrainingMode.EVAL if fold_bn else torch.onnx.TrainingMode.PRESERVE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated in favour of dynamo
        dynamic = {name: {0: "batch"} for name in ["input", *names]} if dynamic_batch else None
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset, training=mode,
                          input_names=["input"], output_names=names, dynamic_axes=dynamic)
    return path
