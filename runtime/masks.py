"""Masks and the view of one prunable layer that scoring and the modes work on.

A `ChannelMask` multiplies a conv's output channels by 0/1 where a pruned channel must be
exactly zero (after its BN, or after the conv where no BN follows), and records channel
activations for `activation_l1`. A `Prunable` is one conv with its BN and mask; in a pack
(gstc.runtime.models), one member's part of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn


def member(t: torch.Tensor, k: int, pack: int, dim: int = 0) -> torch.Tensor:
    """Member k's part of a packed tensor (a view): members are stacked along `dim`."""
    return t if pack == 1 else t.unflatten(dim, (pack, -1)).select(dim, k)


class ChannelMask(nn.Module):
    """Multiplies channels by a 0/1 mask; optionally records each member's channel activations."""

    def __init__(self, channels: int, pack: int = 1):
        super().__init__()
        self.register_buffer("mask", torch.ones(channels * pack))
        self.pack = pack
        self.active = False  # all ones: skip the multiply (most of training)
        self.recorders: dict[int, Callable[[torch.Tensor], None]] = {}  # member -> callback

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active:
            x = x * self.mask.view(1, -1, 1, 1).to(x.dtype)
        for k, record in self.recorders.items():
            record(member(x, k, self.pack, dim=1))
        return x


@dataclass(frozen=True)
class Prunable:
    """A prunable conv with its BN (None: the mask sits after the conv) and its mask; in a pack, one member's part.

    The properties are views: writing into them writes into the (packed) model. A
    filter owns its conv weight row and bias (the built-in convs have none) and, where a
    BN follows, that channel's BN scale, shift and running statistics. A discovered
    layer's filters also live in its `followers` (modules holding its channels at their
    own positions: depthwise convs, gates, norms that read them elsewhere) and in its
    `coupled` layers (convs writing the same channels, at the same positions), whose
    tensors are held, saved and restored with its own.
    """

    conv: nn.Conv2d
    bn: nn.BatchNorm2d | None
    mask: ChannelMask
    member: int = 0
    pack: int = 1
    followers: tuple[Any, ...] = ()  # gstc.runtime.graph.Site: name, module, positions
    coupled: tuple["Prunable", ...] = ()

    def part(self, t: torch.Tensor) -> torch.Tensor:
        return member(t, self.member, self.pack)

    @property
    def channels(self) -> int:
        return self.conv.out_channels // self.pack

    @property
    def weight(self) -> torch.Tensor:
        return self.part(self.conv.weight)

    @property
    def affine(self) -> bool:
        """A BN with a scale and shift follows (what `ebn` scoring and `include_bn` holds need)."""
        return self.bn is not None and self.bn.weight is not None

    @property
    def bn_weight(self) -> torch.Tensor:
        if not self.affine:
            raise RuntimeError("this layer has no BN scale (no BatchNorm2d with affine=True follows its conv)")
        return self.part(self.bn.weight)

    @property
    def bn_bias(self) -> torch.Tensor:
        if not self.affine:
            raise RuntimeError("this layer has no BN shift (no BatchNorm2d with affine=True follows its conv)")
        return self.part(self.bn.bias)

    @property
    def mask_values(self) -> torch.Tensor:
        return self.part(self.mask.mask)

    def writers(self) -> tuple["Prunable", ...]:
        """This conv and the coupled ones: every conv whose filters these channels are."""
        return (self, *self.coupled)

    def _own(self) -> dict[str, torch.Tensor]:
        out = {"weight": self.weight}
        if self.conv.bias is not None:
            out["bias"] = self.part(self.conv.bias)
        if self.affine:
            out.update(bn_weight=self.bn_weight, bn_bias=self.bn_bias)
        if self.bn is not None and self.bn.running_mean is not None:
            out.update(running_mean=self.part(self.bn.running_mean), running_var=self.part(self.bn.running_var))
        return out

    def slots(self) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
        """Everything the filters own, as (key, tensor, positions): filter i is row i of the tensor (positions
        None) or row positions[i]. Conv weight rows (and biases), BN scales, shifts and running statistics."""
        out = [(key, t, None) for key, t in self._own().items()]
        for i, c in enumerate(self.coupled):
            out += [(f"c{i}.{key}", t, None) for key, t in c._own().items()]
        for i, site in enumerate(self.followers):
            m = site.module
            names = (("bn_weight", "weight"), ("bn_bias", "bias"), ("running_mean", "running_mean"),
                     ("running_var", "running_var")) if isinstance(m, nn.modules.batchnorm._BatchNorm) else \
                (("weight", "weight"), ("bias", "bias"))
            out += [(f"f{i}.{key}", getattr(m, attr), site.positions) for key, attr in names
                    if isinstance(getattr(m, attr, None), torch.Tensor)]
        return out

    def packed(self) -> list[tuple[nn.Parameter, str, torch.Tensor | None]]:
        """The whole pack's trained parameters of this layer, each with the hold that applies ('w' or 'bn') and the
        positions of the filters' rows (None: member k's filter i is row i of its part).

        A conv's bias belongs to its filter ('w'): a held filter of a conv without BN then outputs exactly zero.
        """
        out: list[tuple[nn.Parameter, str, torch.Tensor | None]] = []
        for w in self.writers():
            out.append((w.conv.weight, "w", None))
            if w.conv.bias is not None:
                out.append((w.conv.bias, "w", None))
            if w.affine:
                out += [(w.bn.weight, "bn", None), (w.bn.bias, "bn", None)]
        for site in self.followers:
            m = site.module
            kind = "bn" if isinstance(m, nn.modules.batchnorm._BatchNorm) else "w"
            out += [(p, kind, site.positions) for p in (m.weight, getattr(m, "bias", None)) if isinstance(p, nn.Parameter)]
        return out
