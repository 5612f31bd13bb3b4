"""Small PyTorch models and an ONNX exporter, the ground truth of the exactness oracle.

A pruned ONNX model must compute what the same pruning computes in PyTorch, so the tests need models
whose reference is not our own ONNX code. These cover the coupling patterns the pruner must get right:
BN epilogues, residual Adds with a projection shortcut, depthwise convs with ReLU6 (and with a channel
multiplier), grouped convs, SE gates (Linear and Conv forms), and DenseNet-style channel Concats. They
are small (input 1x3x32x32) and seeded; BN running statistics are randomised so that BN is never the
identity (a fresh BN would hide bugs in folding or in slicing BN parameters).

Only tests that `pytest.importorskip("torch")` import this module.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

INPUT_SHAPE = (1, 3, 32, 32)


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """Conv (no bias) + BN, the pair an exporter folds in eval mode."""
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 conv + BN projection when the stride or width changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.branch = nn.Sequential(*conv_bn(cin, cout, 3, stride), nn.ReLU(), *conv_bn(cout, cout, 3))
        self.downsample = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.downsample(x))


class ResNetLike(nn.Module):
    """Stem, an identity block, a strided block with a downsample, GAP, Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16, 3), nn.ReLU())
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (unless t == 1), depthwise 3x3, linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [*conv_bn(cin, hidden, 1), nn.ReLU6()] if expand != 1 else []
        layers += [*conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(), *conv_bn(hidden, cout, 1)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Like(nn.Module):
    """Stem, three inverted residuals (one with a residual Add), a 1x1 head, GAP, Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(3, 16, 3, 2),
            nn.ReLU6(),
            InvertedResidual(16, 8, 1, 1),
            InvertedResidual(8, 12, 2, 4),
            InvertedResidual(12, 12, 1, 4),
            *conv_bn(12, 64, 1),
            nn.ReLU6(),
        )
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class SELinear(nn.Module):
    """Squeeze-excitation with Linear layers: exported as ReduceMean/GAP, Gemm, Relu, Gemm, Sigmoid."""

    def __init__(self, c: int, squeeze: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, squeeze), nn.Linear(squeeze, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class SEConv(nn.Module):
    """Squeeze-excitation with 1x1 convs on the pooled (N, C, 1, 1) map."""

    def __init__(self, c: int, squeeze: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, squeeze, 1), nn.ReLU(), nn.Conv2d(squeeze, c, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class SEBlock(nn.Module):
    """Residual block whose branch ends in an SE gate before the Add."""

    def __init__(self, c: int, se: nn.Module) -> None:
        super().__init__()
        self.branch = nn.Sequential(*conv_bn(c, c, 3), nn.ReLU(), *conv_bn(c, c, 3), se)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.branch(x))


class SEModel(nn.Module):
    """Stem, a block with a Linear SE, a strided conv, a block with a Conv SE, GAP, Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(3, 16, 3),
            nn.ReLU(),
            SEBlock(16, SELinear(16, 4)),
            *conv_bn(16, 24, 3, 2),
            nn.ReLU(),
            SEBlock(24, SEConv(24, 6)),
        )
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 whose output is concatenated to its input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            *conv_bn(cin, 2 * growth, 1),
            nn.ReLU(),
            nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], 1)


class DenseLike(nn.Module):
    """Stem, a 3-layer dense block, a transition (BN-ReLU-Conv1x1-AvgPool), another dense layer, head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        growth = 8
        self.features = nn.Sequential(
            *conv_bn(3, 16, 3),
            nn.ReLU(),
            DenseLayer(16, growth),
            DenseLayer(16 + growth, growth),
            DenseLayer(16 + 2 * growth, growth),
            nn.BatchNorm2d(16 + 3 * growth),
            nn.ReLU(),
            nn.Conv2d(16 + 3 * growth, 20, 1, bias=False),
            nn.AvgPool2d(2),
            DenseLayer(20, growth),
            nn.BatchNorm2d(20 + growth),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(20 + growth, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class GroupedBottleneck(nn.Module):
    """ResNeXt bottleneck: 1x1, grouped 3x3 (4 groups), 1x1, identity shortcut."""

    def __init__(self, c: int, width: int, groups: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(*conv_bn(c, width, 1), nn.ReLU(), *conv_bn(width, width, 3, groups=groups),
                                    nn.ReLU(), *conv_bn(width, c, 1))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.branch(x))


class ResNeXtLike(nn.Module):
    """Stem, a grouped bottleneck, a depthwise conv with a channel multiplier of 2, GAP, Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(*conv_bn(3, 16, 3), nn.ReLU(), GroupedBottleneck(16, 16, 4),
                                      *conv_bn(16, 32, 3, 2, groups=16), nn.ReLU())
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


MODELS: dict[str, type[nn.Module]] = {
    "resnet_like": ResNetLike,
    "resnext_like": ResNeXtLike,
    "mobilenet_v2_like": MobileNetV2Like,
    "se_model": SEModel,
    "dense_like": DenseLike,
}


def make(name: str, seed: int = 0) -> nn.Module:
    """Model `name` in eval mode with seeded weights and non-trivial BN statistics.

    Convs are He-initialised (PyTorch's default shrinks activations by ~sqrt(3) per layer, which would
    let an absolute tolerance hide a wrong output) and their biases are non-zero.
    """
    torch.manual_seed(seed)
    model = MODELS[name]()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.out_channels, generator=generator))
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
    return model.eval()


def export(model: nn.Module, path: str | Path, input_shape: tuple[int, ...], fold_bn: bool) -> Path:
    """Export `model` (in eval mode) to ONNX opset 17 with the TorchScript exporter, offline.

    fold_bn=True is the default eval export, which folds each BN into the Conv before it;
    fold_bn=False exports with TrainingMode.PRESERVE, which skips that folding pass and keeps every
    BatchNormalization node (in inference form, since the model is in eval mode).
    """
    model.eval()
    mode = torch.onnx.TrainingMode.EVAL if fold_bn else torch.onnx.TrainingMode.PRESERVE
    example = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated in favour of dynamo
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            training=mode,
            input_names=["input"],
            output_names=["output"],
        )
    return Path(path)
