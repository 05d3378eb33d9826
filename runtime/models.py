"""Models whose prunable layers carry the compiler's names (gstc/archs.py).

Every prunable conv is followed by a `ChannelMask` at the point where a pruned
channel must be exactly zero: after its BN in VGG and in a block's first conv, and
after BN *plus the shortcut* in a block's second conv, so that the shortcut is not
added into a pruned channel. The mask point is also where `activation_l1` scoring
reads the channel's activations (paper-experiments.md, ResNet18).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gstc.plan import PlanLayer


class ChannelMask(nn.Module):
    """Multiplies channels by a 0/1 mask; optionally records each channel's activation L1."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mask", torch.ones(channels))
        self.active = False  # all ones: skip the multiply (most of training)
        self.record: Callable[[torch.Tensor], None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active:
            x = x * self.mask.view(1, -1, 1, 1).to(x.dtype)
        if self.record is not None:
            self.record(x)
        return x


@dataclass(frozen=True)
class Prunable:
    """A prunable conv with its BN and the mask after it."""

    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    mask: ChannelMask


def _conv_bn(cin: int, cout: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    # No conv bias: the BN that follows makes it redundant, and a zeroed filter then
    # outputs exactly zero.
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)


class VGG11(nn.Module):
    """VGG11 with BN after every conv and a single dense layer (the paper's variant)."""

    POOL_AFTER = (1, 2, 4, 6, 8)  # 5 max-pools: 32x32 -> 1x1

    def __init__(self, widths: list[int], classes: int):
        super().__init__()
        cin = 3
        for i, cout in enumerate(widths, start=1):
            conv, bn = _conv_bn(cin, cout)
            setattr(self, f"conv{i}", conv)
            setattr(self, f"bn{i}", bn)
            setattr(self, f"mask{i}", ChannelMask(cout))
            cin = cout
        self.n = len(widths)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n + 1):
            x = getattr(self, f"mask{i}")(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            x = F.relu(x)
            if i in self.POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))

    def prunable(self) -> dict[str, Prunable]:
        return {f"conv{i}": Prunable(getattr(self, f"conv{i}"), getattr(self, f"bn{i}"), getattr(self, f"mask{i}"))
                for i in range(1, self.n + 1)}

    def live_params(self, removed: dict[str, int] | None = None) -> int:
        """Parameters left when `removed` filters per layer are gone, inputs of the next layer included."""
        removed = removed or {}
        live_in, total = 3, 0
        for i in range(1, self.n + 1):
            out = getattr(self, f"conv{i}").out_channels - removed.get(f"conv{i}", 0)
            total += out * live_in * 9 + 2 * out  # conv weights + BN scale and shift
            live_in = out
        return total + live_in * self.fc.out_features + self.fc.out_features


class _ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.before, self.after = (cout - cin) // 2, cout - cin - (cout - cin) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.before, self.after))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, option: str):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, stride)
        self.mask1 = ChannelMask(cout)
        self.conv2, self.bn2 = _conv_bn(cout, cout)
        self.mask2 = ChannelMask(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            if option == "A":
                self.shortcut = _ShortcutA(cin, cout)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.mask1(self.bn1(self.conv1(x))))
        return F.relu(self.mask2(self.bn2(self.conv2(out)) + self.shortcut(x)))


class ResNet(nn.Module):
    """CIFAR ResNets: a 3x3 stem, stages of basic blocks, global average pool, one dense layer."""

    def __init__(self, stem: int, widths: list[int], blocks: int, classes: int, option: str):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(3, stem)
        cin = stem
        self.stages = len(widths) // (2 * blocks)
        stage_widths = [widths[2 * blocks * s] for s in range(self.stages)]
        for s, cout in enumerate(stage_widths):
            stride = 1 if s == 0 else 2
            blocks_ = [BasicBlock(cin if b == 0 else cout, cout, stride if b == 0 else 1, option) for b in range(blocks)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks_))
            cin = cout
        self.fc = nn.Linear(cin, classes)
        self.option = option

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        for s in range(1, self.stages + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def blocks(self) -> list[tuple[str, BasicBlock]]:
        return [(f"layer{s}.{b}", block) for s in range(1, self.stages + 1)
                for b, block in enumerate(getattr(self, f"layer{s}"))]

    def prunable(self) -> dict[str, Prunable]:
        out = {}
        for name, block in self.blocks():
            out[f"{name}.conv1"] = Prunable(block.conv1, block.bn1, block.mask1)
            out[f"{name}.conv2"] = Prunable(block.conv2, block.bn2, block.mask2)
        return out

    def live_params(self, removed: dict[str, int] | None = None) -> int:
        """Parameters left when `removed` filters per layer are gone, inputs of the next layer included.

        A block's output channel is dead exactly when its conv2 is pruned there (the mask
        sits after the shortcut add); the next block's convs lose that input channel.
        """
        removed = removed or {}
        live = self.conv1.out_channels
        total = 3 * live * 9 + 2 * live
        for name, block in self.blocks():
            mid = block.conv1.out_channels - removed.get(f"{name}.conv1", 0)
            out = block.conv2.out_channels - removed.get(f"{name}.conv2", 0)
            total += mid * live * 9 + 2 * mid + out * mid * 9 + 2 * out
            if isinstance(block.shortcut, nn.Sequential):
                total += block.conv2.out_channels * live + 2 * block.conv2.out_channels
            live = out
        return total + live * self.fc.out_features + self.fc.out_features


def scaled(filters: int, width: float) -> int:
    """A conv's filter count under a width multiplier: rounded half up, at least 1."""
    return max(1, int(filters * width + 0.5))


# The runtime's own definitions (independent of the compiler's table, which they are
# checked against): VGG11's conv widths, and each ResNet's stem, stage widths and blocks.
VGG11_WIDTHS = (64, 128, 256, 256, 512, 512, 512, 512)


def _vgg11_bn(width: float, classes: int) -> nn.Module:
    return VGG11([scaled(f, width) for f in VGG11_WIDTHS], classes)


def _resnet(stem: int, stages: tuple[int, ...], blocks: int, option: str) -> Callable[[float, int], nn.Module]:
    def build(width: float, classes: int) -> nn.Module:
        widths = [scaled(w, width) for w in stages for _ in range(blocks) for _ in (1, 2)]
        return ResNet(scaled(stem, width), widths, blocks, classes, option)

    return build


MODELS: dict[str, Callable[[float, int], nn.Module]] = {
    "vgg11_bn": _vgg11_bn,
    "resnet18": _resnet(64, (64, 128, 256, 512), 2, "B"),  # CIFAR variant: 3x3 stem, 1x1-conv shortcuts
    "resnet20": _resnet(16, (16, 32, 64), 3, "A"),  # He et al.: option-A (zero-padding) shortcuts
    "resnet56": _resnet(16, (16, 32, 64), 9, "A"),
}


def build_model(arch: str, width: float, classes: int, layers: list[PlanLayer] | None = None) -> nn.Module:
    """Build `arch`; with the plan's `layers`, check that the model matches its table."""
    try:
        factory = MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(MODELS)}") from None
    model = factory(width, classes)
    if layers is not None:
        got = [(name, p.conv.out_channels) for name, p in model.prunable().items()]
        want = [(layer.name, layer.filters) for layer in layers]
        if got != want:
            raise RuntimeError(f"{arch} (width {width}) does not match the plan's layer table: {got} != {want}")
    return model
