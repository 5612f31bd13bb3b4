"""A tiny residual CNN and helpers shared by the PyTorch-path tests (imported only after importorskip)."""

from __future__ import annotations

import torch
from torch import nn


class TinyResidual(nn.Module):
    """conv+BN (stem) -> residual conv+BN block -> conv with bias and no BN -> GAP -> Linear.

    Its residual stream is one group produced by two BNs (the stem's and the block's), and the last
    conv's group has no BN: both kinds of Taylor term, and their sum over a group's producers, occur.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.head = nn.Conv2d(4, 5, 1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        x = torch.relu(self.head(x))
        return self.fc(x.mean((2, 3)))


def tiny(seed: int = 0) -> TinyResidual:
    """Seeded, with BN affine parameters and statistics away from their defaults."""
    torch.manual_seed(seed)
    model = TinyResidual()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def batches(count: int, batch: int = 4, seed: int = 1, shape: tuple[int, ...] = (3, 8, 8),
            classes: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn((batch, *shape), generator=generator),
             torch.randint(0, classes, (batch,), generator=generator)) for _ in range(count)]
