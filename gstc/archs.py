"""Prunable-layer tables of the supported architectures, without torch.

The compiler resolves `select` globs and filter counts from these tables; the runtime
builds the real models and checks them against the same tables (tests/runtime).
Names follow the torch modules' names so that masks and plans line up one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

# VGG11 with batch norm: eight 3x3 convs, BN after each, five max-pools, one dense layer.
_VGG11 = (64, 128, 256, 256, 512, 512, 512, 512)


@dataclass(frozen=True)
class Layer:
    name: str
    filters: int


def _scaled(filters: int, width: float) -> int:
    """Filter count under a width multiplier: rounded half up, at least 1."""
    return max(1, int(filters * width + 0.5))


def _vgg11_bn() -> list[tuple[str, int]]:
    return [(f"conv{i + 1}", f) for i, f in enumerate(_VGG11)]


def _resnet(stages: tuple[int, ...], blocks: int) -> list[tuple[str, int]]:
    # Basic blocks: layer{s}.{b}.conv1 and .conv2 both have the stage's width.
    return [
        (f"layer{s + 1}.{b}.conv{c}", width)
        for s, width in enumerate(stages)
        for b in range(blocks)
        for c in (1, 2)
    ]


ARCHS = {
    "vgg11_bn": _vgg11_bn,
    "resnet18": lambda: _resnet((64, 128, 256, 512), 2),  # CIFAR variant, 3x3 stem
    "resnet20": lambda: _resnet((16, 32, 64), 3),  # option-A shortcuts
    "resnet56": lambda: _resnet((16, 32, 64), 9),
}


def layers(arch: str, width: float = 1.0) -> list[Layer]:
    """The prunable layers of `arch` in forward order, with filter counts under `width`."""
    try:
        table = ARCHS[arch]
    except KeyError:
        from gstc.errors import did_you_mean

        raise ValueError(f"unknown architecture {arch!r}{did_you_mean(arch, ARCHS)}; "
                         f"known: {', '.join(ARCHS)}") from None
    return [Layer(name, _scaled(f, width)) for name, f in table()]
