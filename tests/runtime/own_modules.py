"""Models and datasets of a user's own, for the tests: copied next to a test's spec and named by import path.

- `tiny`: a few learnable images (class-dependent brightness plus noise), any channels and size.
- `GroupedNet`: a conv with BN, a grouped conv (groups=4) with BN, a depthwise conv with BN, and a
  conv with a bias and no BN (masked after the conv).
- `BlockNet`: an inverted residual block: followers (a depthwise conv, a gate) and coupled layers.
- `FunctionalNorm`: a norm called as a function on parameters of the model's own.
- `SigmoidNet`: a sigmoid after a conv's BN (a zeroed channel becomes 0.5).
- `Untraceable`: a net with control flow on a tensor's value, which torch.fx cannot trace (Torch-Pruning
  follows one real forward pass, so it finds its layers).
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


class BlockNet(nn.Module):
    """A stem, then an inverted residual block: a 1x1 expansion conv, a depthwise conv (its channels are the
    expansion's), a squeeze-excitation gate (its output multiplies them), a 1x1 projection added to the stem's
    output (the two write the same channels: coupled); then a conv with a bias and no BN."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.expand, self.expand_bn = nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.dw, self.dw_bn = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32)
        self.se_reduce, self.se_expand = nn.Conv2d(32, 8, 1), nn.Conv2d(8, 32, 1)
        self.project, self.project_bn = nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16)
        self.plain = nn.Conv2d(16, 12, 1)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        h = torch.relu(self.expand_bn(self.expand(x)))
        h = torch.relu(self.dw_bn(self.dw(h)))
        h = h * torch.sigmoid(self.se_expand(torch.relu(self.se_reduce(h.mean((2, 3), keepdim=True)))))
        x = x + self.project_bn(self.project(h))
        x = torch.relu(self.plain(x))
        return self.fc(x.mean((2, 3)))


class FunctionalNorm(nn.Module):
    """A conv whose output a norm reads through a functional call with parameters of its own (no BN module)."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.scale, self.shift = nn.Parameter(torch.ones(8)), nn.Parameter(torch.zeros(8))
        self.register_buffer("mean", torch.zeros(8))
        self.register_buffer("var", torch.ones(8))
        self.head = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.batch_norm(self.conv(x), self.mean, self.var, self.scale, self.shift, self.training)
        return self.fc(torch.relu(self.head(torch.relu(x))).mean((2, 3)))


class SigmoidNet(nn.Module):
    """A conv whose BN output goes through a sigmoid: a zeroed channel reaches the next conv as 0.5."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.a, self.a_bn = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.a_bn(self.a(x)))
        return self.fc(torch.relu(self.b(x)).mean((2, 3)))


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
