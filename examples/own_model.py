"""An architecture and a dataset of your own, as gstc takes them (examples/own-model.yaml).

`SmallVGG` is a plain torch module: gstc finds its prunable convs itself (every Conv2d;
the mask sits after the BatchNorm2d that reads it). `shapes` returns uint8 images and
integer labels: 16x16 grayscale squares, crosses, rings and bars drawn at random places
with noise, generated from a fixed seed, so the example needs no download.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallVGG(nn.Module):
    """`depth` conv-BN-ReLU stages of `width` x 2^stage filters, a max-pool after every second, one dense layer."""

    def __init__(self, num_classes: int, in_channels: int = 3, depth: int = 4, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(depth):
            cout = width * 2 ** (i // 2)
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _draw(kind: int, g: torch.Generator, side: int) -> torch.Tensor:
    img = torch.zeros(side, side)
    r = int(torch.randint(2, 6, (1,), generator=g))
    cy, cx = (int(v) for v in torch.randint(r, side - r, (2,), generator=g))
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    if kind == 0:  # filled square
        img[((y - cy).abs() < r) & ((x - cx).abs() < r)] = 1
    elif kind == 1:  # cross
        img[((y - cy).abs() < 1) & ((x - cx).abs() <= r)] = 1
        img[((x - cx).abs() < 1) & ((y - cy).abs() <= r)] = 1
    elif kind == 2:  # ring
        d = ((y - cy) ** 2 + (x - cx) ** 2).float().sqrt()
        img[(d - r).abs() < 0.8] = 1
    else:  # horizontal bar
        img[((y - cy).abs() < 2) & ((x - cx).abs() <= r)] = 1
    return img


def shapes(train: int = 2000, test: int = 500, side: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Four classes of shapes: images uint8 (N, 1, side, side), labels int64 (N,)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", train), ("test", test)):
        y = torch.randint(0, 4, (n,), generator=g)
        x = torch.stack([_draw(int(k), g, side) for k in y])
        x = (0.45 * x + 0.55 * torch.rand(n, side, side, generator=g)).mul(255).round().to(torch.uint8)
        out[f"{split}_x"], out[f"{split}_y"] = x.unsqueeze(1), y
    return out
