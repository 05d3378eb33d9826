"""Prunable layers of any model, found rather than listed.

Every `Conv2d` that the forward pass calls is listed, named by its module path
(`layer4.1.conv2`, `features.3.block.1.0`), and the channels of each are followed to
every reader (gstc.runtime.graph). A conv is prunable when its channels can be made
exactly zero everywhere they are read; otherwise it is listed with the reason it is
refused, and a spec that selects it is an error.

Where a conv's mask sits (`after`): after the BN its output goes straight into (any
BatchNorm subclass, timm's norm-plus-activation modules included), so the channel is
exactly zero there; after the conv where no BN follows. A pruned filter's weights are
held at zero, and so are the tensors of its *followers* (depthwise convs, gates, norms
that read it after a concatenation) and of its *coupled* layers (the other convs a
residual sum adds into the same channels), which are pruned together.

`Discovered` wraps the model: a `ChannelMask` per listed conv, called by a forward hook
on the module after which it sits, `prunable()` for the pruner, and the model's `cost`
(parameters and MACs as functions of the filters kept, gstc.costs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gstc.costs import Cost
from gstc.runtime.graph import DiscoveryError, Graph, Site, analyze

__all__ = ["DiscoveryError", "Discovered", "Found", "find"]
from gstc.runtime.masks import ChannelMask, Prunable


@dataclass(frozen=True)
class Found:
    name: str  # module path of the conv
    conv: nn.Conv2d
    norm: str | None  # module path of the BN after which the mask sits; None: after the conv
    bn: nn.BatchNorm2d | None
    refused: str | None = None  # why it cannot be pruned; None: prunable
    coupled: tuple[str, ...] = ()  # the other convs writing the same channels (pruned together)
    followers: tuple[Site, ...] = field(default=(), compare=False)  # other modules holding its channels

    @property
    def after(self) -> str:
        return "bn" if self.bn is not None else "conv"


def find(model: nn.Module, example: torch.Tensor) -> tuple[list[Found], Cost]:
    """The model's convs in module order (prunable or refused), and its cost."""
    graph: Graph = analyze(model, example)
    modules = dict(model.named_modules())
    found = []
    for name, conv in modules.items():
        if not isinstance(conv, nn.Conv2d) or (name not in graph.groups and name not in graph.refused):
            continue  # not a conv, or defined but never called: not part of the network
        group = graph.groups.get(name)
        norm = graph.norms.get(name)
        if group is None:
            found.append(Found(name, conv, norm, modules[norm] if norm else None, refused=graph.refused[name]))
            continue
        found.append(Found(name, conv, norm, modules[norm] if norm else None, refused=group.refused,
                           coupled=tuple(w for w in group.writers if w != name),
                           followers=tuple(group.followers) if group.refused is None else ()))
    if not found:
        raise DiscoveryError(f"{type(model).__name__} has no Conv2d that its forward pass calls: nothing to prune")
    assert graph.cost is not None
    return found, graph.cost


def _key(name: str) -> str:
    return name.replace(".", "__")  # ModuleDict keys cannot hold dots


class Discovered(nn.Module):
    """A model with a `ChannelMask` after each listed conv (or its BN), applied by forward hooks."""

    def __init__(self, net: nn.Module, found: list[Found], cost: Cost):
        super().__init__()
        self.net = net
        self.pack = 1
        self.found = found  # `find(net, example)`
        self.cost = cost
        self.masks = nn.ModuleDict({_key(f.name): ChannelMask(f.conv.out_channels) for f in self.found})
        self.hook_ids = []  # of the mask hooks: a copy of `net` without them is the model itself (gstc.runtime.export)
        for f in self.found:
            site = f.bn if f.bn is not None else f.conv
            self.hook_ids.append(site.register_forward_hook(self._hook(self.masks[_key(f.name)])).id)

    @staticmethod
    def _hook(mask: ChannelMask):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            return mask(out)
        return hook

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x)

    def table(self) -> list[dict[str, Any]]:
        """The layer table, as `gstc layers` lists it and the layer file stores it."""
        rows = []
        for f in self.found:
            row: dict[str, Any] = {"name": f.name, "filters": f.conv.out_channels, "after": f.after, "groups": f.conv.groups}
            if f.coupled:
                row["coupled"] = list(f.coupled)
            if f.followers:
                row["followers"] = [s.name for s in f.followers]
            if f.refused:
                row["refused"] = f.refused
            rows.append(row)
        return rows

    def leaders(self) -> list[str]:
        """The prunable layers that stand for their group: each one not coupled, and the first of coupled ones."""
        seen: set[str] = set()
        out = []
        for f in self.found:
            if f.refused is None and f.name not in seen:
                out.append(f.name)
                seen.update(f.coupled)
        return out

    def dense(self) -> dict[str, nn.Module]:
        """The model's dense layers by name, which weight granularity prunes too."""
        return {name: m for name, m in self.net.named_modules() if isinstance(m, nn.Linear)}

    def prunable(self, member: int = 0) -> dict[str, Prunable]:
        """Every listed conv as the pruner sees it; a prunable one with its followers and coupled layers."""
        own = {f.name: Prunable(f.conv, f.bn, self.masks[_key(f.name)]) for f in self.found}
        return {f.name: Prunable(f.conv, f.bn, own[f.name].mask, followers=f.followers,
                                 coupled=tuple(own[c] for c in f.coupled)) for f in self.found}
