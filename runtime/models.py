"""Models whose prunable layers carry the compiler's names (gstc/archs.py).

Every prunable conv is followed by a `ChannelMask` at the point where a pruned
channel must be exactly zero: after its BN in VGG and in a block's first conv, and
after BN *plus the shortcut* in a block's second conv, so that the shortcut is not
added into a pruned channel. The mask point is also where `activation_l1` scoring
reads the channel's activations (as the paper's ResNet18 pruning does).

Every model can be built as a *pack* of K independent copies (docs/design.md, "Speed"):
convolutions grouped with groups = K, batch norm over K x C channels and a batched
dense layer. The input is K images side by side in the channel dimension (K x 3
channels), the output K x classes logits. Every parameter and buffer of a pack holds its
members' tensors stacked along dimension 0, so `member_state` / `pack_states` convert
between a pack's state_dict and its members' (the state_dict of a model built alone).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gstc.archs import builtin_cost
from gstc.plan import PlanLayer
from gstc.runtime.masks import ChannelMask, Prunable, member

__all__ = ["ChannelMask", "Prunable", "member", "member_state", "pack_states", "build_model", "MODELS"]


def member_state(state: dict[str, torch.Tensor], k: int, pack: int) -> dict[str, torch.Tensor]:
    """Member k's state_dict (as if built alone) from a pack's; scalars (BN batch counts) are shared."""
    return {name: (member(t, k, pack) if t.dim() else t).clone() for name, t in state.items()}


def pack_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A pack's state_dict from its members' (the inverse of `member_state`)."""
    return {name: torch.cat([s[name] for s in states]) if t.dim() else t.clone() for name, t in states[0].items()}


class PackedLinear(nn.Module):
    """K independent dense layers as one: weight (K x out, in), input (B, K x in), output (B, K x out)."""

    def __init__(self, features: int, out: int, pack: int):
        super().__init__()
        layers = [nn.Linear(features, out) for _ in range(pack)]  # each member initialized as nn.Linear is
        self.weight = nn.Parameter(torch.cat([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]))
        self.pack, self.in_features, self.out_features = pack, features, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pack
        y = torch.einsum("bki,koi->bko", x.unflatten(1, (k, -1)), self.weight.unflatten(0, (k, -1)))
        return (y + self.bias.unflatten(0, (k, -1))).flatten(1)


def _dense(features: int, out: int, pack: int) -> nn.Module:
    return nn.Linear(features, out) if pack == 1 else PackedLinear(features, out, pack)


def _conv_bn(cin: int, cout: int, stride: int = 1, pack: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    # No conv bias: the BN that follows makes it redundant, and a zeroed filter then
    # outputs exactly zero. groups = pack: member k's filters see only member k's inputs.
    return (nn.Conv2d(cin * pack, cout * pack, 3, stride=stride, padding=1, bias=False, groups=pack),
            nn.BatchNorm2d(cout * pack))


class VGG11(nn.Module):
    """VGG11 with BN after every conv and a single dense layer (the paper's variant)."""

    POOL_AFTER = (1, 2, 4, 6, 8)  # 5 max-pools: 32x32 -> 1x1

    def __init__(self, widths: list[int], classes: int, pack: int = 1, channels: int = 3,
                 size: tuple[int, int] = (32, 32)):
        super().__init__()
        if min(size) < 32:
            raise ValueError(f"vgg11_bn needs images of at least 32x32 (its 5 max-pools halve them); these are "
                             f"{size[0]}x{size[1]}")
        # A side of 64 pixels or more is still 2 or more after the 5 pools: averaged before the dense layer.
        self.average = max(size) >= 64
        cin = self.channels = channels
        for i, cout in enumerate(widths, start=1):
            conv, bn = _conv_bn(cin, cout, pack=pack)
            setattr(self, f"conv{i}", conv)
            setattr(self, f"bn{i}", bn)
            setattr(self, f"mask{i}", ChannelMask(cout, pack))
            cin = cout
        self.n, self.pack = len(widths), pack
        self.fc = _dense(cin, classes, pack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n + 1):
            x = getattr(self, f"mask{i}")(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            x = F.relu(x, inplace=True)  # BN's and the mask's backward do not need their output: 1-4% per step
            if i in self.POOL_AFTER:
                x = F.max_pool2d(x, 2)
        if self.average:
            x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))

    def dense(self) -> dict[str, nn.Module]:
        """The dense layers, which weight granularity prunes too: the classifier."""
        return {"fc": self.fc}

    def prunable(self, member: int = 0) -> dict[str, Prunable]:
        return {f"conv{i}": Prunable(getattr(self, f"conv{i}"), getattr(self, f"bn{i}"), getattr(self, f"mask{i}"),
                                     member, self.pack) for i in range(1, self.n + 1)}


class _ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, cin: int, cout: int, pack: int = 1):
        super().__init__()
        self.before, self.after = (cout - cin) // 2, cout - cin - (cout - cin) // 2
        self.pack = pack

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2].unflatten(1, (self.pack, -1))  # each member's channels padded on its own
        return F.pad(x, (0, 0, 0, 0, self.before, self.after)).flatten(1, 2)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, option: str, pack: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, stride, pack)
        self.mask1 = ChannelMask(cout, pack)
        self.conv2, self.bn2 = _conv_bn(cout, cout, pack=pack)
        self.mask2 = ChannelMask(cout, pack)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            if option == "A":
                self.shortcut = _ShortcutA(cin, cout, pack)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(cin * pack, cout * pack, 1, stride=stride, bias=False, groups=pack),
                                              nn.BatchNorm2d(cout * pack))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.mask1(self.bn1(self.conv1(x))), inplace=True)  # in place: see VGG.forward
        return F.relu(self.mask2(self.bn2(self.conv2(out)) + self.shortcut(x)), inplace=True)


class ResNet(nn.Module):
    """CIFAR ResNets: a 3x3 stem, stages of basic blocks, global average pool, one dense layer."""

    def __init__(self, stem: int, widths: list[int], blocks: int, classes: int, option: str, pack: int = 1,
                 channels: int = 3):
        super().__init__()
        self.pack, self.channels = pack, channels
        self.conv1, self.bn1 = _conv_bn(channels, stem, pack=pack)
        cin = stem
        self.stages = len(widths) // (2 * blocks)
        stage_widths = [widths[2 * blocks * s] for s in range(self.stages)]
        for s, cout in enumerate(stage_widths):
            stride = 1 if s == 0 else 2
            blocks_ = [BasicBlock(cin if b == 0 else cout, cout, stride if b == 0 else 1, option, pack)
                       for b in range(blocks)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks_))
            cin = cout
        self.fc = _dense(cin, classes, pack)
        self.option = option

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        for s in range(1, self.stages + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def blocks(self) -> list[tuple[str, BasicBlock]]:
        return [(f"layer{s}.{b}", block) for s in range(1, self.stages + 1)
                for b, block in enumerate(getattr(self, f"layer{s}"))]

    def dense(self) -> dict[str, nn.Module]:
        """The dense layers, which weight granularity prunes too: the classifier."""
        return {"fc": self.fc}

    def prunable(self, member: int = 0) -> dict[str, Prunable]:
        out = {}
        for name, block in self.blocks():
            out[f"{name}.conv1"] = Prunable(block.conv1, block.bn1, block.mask1, member, self.pack)
            out[f"{name}.conv2"] = Prunable(block.conv2, block.bn2, block.mask2, member, self.pack)
        return out


def scaled(filters: int, width: float) -> int:
    """A conv's filter count under a width multiplier: rounded half up, at least 1."""
    return max(1, int(filters * width + 0.5))


# The runtime's own definitions (independent of the compiler's table, which they are
# checked against): VGG11's conv widths, and each ResNet's stem, stage widths and blocks.
VGG11_WIDTHS = (64, 128, 256, 256, 512, 512, 512, 512)


def _vgg11_bn(width: float, classes: int, pack: int = 1, channels: int = 3, size: tuple[int, int] = (32, 32)) -> nn.Module:
    return VGG11([scaled(f, width) for f in VGG11_WIDTHS], classes, pack, channels, size)


def _resnet(stem: int, stages: tuple[int, ...], blocks: int, option: str) -> Callable[..., nn.Module]:
    def build(width: float, classes: int, pack: int = 1, channels: int = 3, size: tuple[int, int] = (32, 32)) -> nn.Module:
        widths = [scaled(w, width) for w in stages for _ in range(blocks) for _ in (1, 2)]
        return ResNet(scaled(stem, width), widths, blocks, classes, option, pack, channels)

    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "vgg11_bn": _vgg11_bn,
    "resnet18": _resnet(64, (64, 128, 256, 512), 2, "B"),  # CIFAR variant: 3x3 stem, 1x1-conv shortcuts
    "resnet20": _resnet(16, (16, 32, 64), 3, "A"),  # He et al.: option-A (zero-padding) shortcuts
    "resnet56": _resnet(16, (16, 32, 64), 9, "A"),
}


def build_model(arch: str, width: float, classes: int, layers: list[PlanLayer] | None = None, pack: int = 1,
                channels: int = 3, size: tuple[int, int] = (32, 32), args: dict | None = None) -> nn.Module:
    """Build `arch` (a pack of `pack` copies) for images of `channels` x `size` and `classes` classes.

    Built-in names build the paper's models; any other architecture (`torchvision.NAME`,
    `module:attribute`, a plugin's name) is built by `gstc.runtime.builders` and wrapped so
    that its prunable layers are found (`gstc.runtime.discover`). With the plan's `layers`,
    the model is checked against their table.
    """
    if arch in MODELS:
        model = MODELS[arch](width, classes, pack, channels, tuple(size))
        model.cost = builtin_cost(arch, width, channels, tuple(size), classes)  # one member's, as the plan counts it
    else:
        from gstc.runtime.builders import build_external

        if pack != 1:
            raise ValueError(f"{arch}: packs are built only for the built-in architectures ({', '.join(MODELS)})")
        model = build_external(arch, args or {}, classes, channels, size)
    if layers is not None:
        got = [(name, p.channels) for name, p in model.prunable().items()]
        want = [(layer.name, layer.filters) for layer in layers]
        if got != want:
            raise LayerMismatch(arch, got, want)
    return model


class LayerMismatch(ValueError):
    """The model built differs from the plan's layer table (a stale layer file, or a changed model)."""

    def __init__(self, arch: str, got: list[tuple[str, int]], want: list[tuple[str, int]]):
        gone = [f"{n} ({f})" for n, f in want if (n, f) not in got]
        new = [f"{n} ({f})" for n, f in got if (n, f) not in want]
        detail = "; ".join(part for part in (
            f"the table lists {', '.join(gone[:5])}{' ...' if len(gone) > 5 else ''} that the model lacks" if gone else "",
            f"the model has {', '.join(new[:5])}{' ...' if len(new) > 5 else ''} that the table lacks" if new else "",
        ) if part) or "the layers come in another order"
        super().__init__(f"{arch} does not match the layer table the plan was compiled from: {detail}. If the model "
                         "changed on purpose, rewrite the spec's layer file with `gstc layers SPEC --write` (its runs "
                         "then get new ids)")
