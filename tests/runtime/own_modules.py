"""Models and datasets of a user's own, for the tests: copied next to a test's spec and named by import path.

- `tiny`: a few learnable images (class-dependent brightness plus noise), any channels and size.
- `GroupedNet`: a conv with BN, a grouped conv (groups=4) with BN, a depthwise conv with BN, and a
  conv with a bias and no BN (masked after the conv).
- `Untraceable`: the same kind of net with control flow on a tensor's value, which torch.fx cannot
  trace (its layers are found by a forward pass with hooks).
- `widevgg`: a builder function, registered as a plugin by a test.
"""

from __future__ import annotations

import torch
from torch import nn


def tiny(train: int = 48, test: int = 24, channels: int = 3, side: int = 32, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", train), ("test", test)):
        y = torch.arange(n) % classes
        x = 40 * y.view(-1, 1, 1, 1).float() + 80 * torch.rand(n, channels, side, side, generator=g)
        out[f"{split}_x"], out[f"{split}_y"] = x.round().clamp(0, 255).to(torch.uint8), y
    return out


class GroupedNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False)
        self.grouped_bn = nn.BatchNorm2d(16)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(16)
        self.plain = nn.Conv2d(16, 12, 1)  # a bias, no BN: masked after the conv
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = torch.relu(self.grouped_bn(self.grouped(x)))
        x = torch.relu(self.depthwise_bn(self.depthwise(x)))
        x = torch.relu(self.plain(x))
        return self.fc(x.mean((2, 3)))


class Untraceable(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.a = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.a_bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a_bn(self.a(x)))
        if x.mean() > -1e9:  # control flow on a value: fx's symbolic tracing raises here
            x = torch.relu(self.b(x))
        return self.fc(x.mean((2, 3)))


def widevgg(num_classes: int, depth: int = 2):
    layers: list[nn.Module] = []
    cin = 3
    for _ in range(depth):
        layers += [nn.Conv2d(cin, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU()]
        cin = 24
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, num_classes))
