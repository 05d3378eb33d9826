"""Prunable layers of any model, found rather than listed.

Every `Conv2d` of a model is a prunable layer, named by its module path
(`layer4.1.conv2`, `features.3.block.1.0`). Where a pruned filter's channel is masked
(made exactly zero) depends on what reads the conv's output:

- the conv's only reader is a `BatchNorm2d`: the mask sits after that BN, so the channel
  is exactly zero there (a zeroed filter alone would leave the BN's shift);
- anything else (no BN, or the output also read elsewhere): the mask sits after the conv.

The readers are found by `torch.fx` tracing. A model that fx cannot trace (data-dependent
control flow) is found by one forward pass with hooks instead: a BN whose input is the very
tensor a conv returned follows that conv (a second reader cannot be seen that way).

Grouped and depthwise convs (groups > 1) need nothing special: gstc masks output channels
and never removes them, so no tensor changes shape and no group has to shrink with another.
A filter of a depthwise conv is one output channel, masked like any other; the layer's
schedule is its own (the convs around it are not pruned with it unless a spec says so).

`Discovered` wraps the model: a `ChannelMask` per layer, called by a forward hook on the
module after which it sits, and the `prunable()` / `live_params()` that the pruner and
the trainer use with the built-in models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gstc.runtime.masks import ChannelMask, Prunable


class DiscoveryError(Exception):
    """A model whose prunable layers cannot be found; the message says why."""


@dataclass(frozen=True)
class Found:
    name: str  # module path of the conv
    conv: nn.Conv2d
    norm: str | None  # module path of the BN after which the mask sits; None: after the conv
    bn: nn.BatchNorm2d | None

    @property
    def after(self) -> str:
        return "bn" if self.bn is not None else "conv"


def _convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _by_fx(model: nn.Module) -> tuple[dict[str, str | None], list[str]]:
    """(conv path -> BN path or None, convs that read the model's input), from a torch.fx trace."""
    import torch.fx

    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    calls: dict[str, list[torch.fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    follows: dict[str, str | None] = {}
    first: list[str] = []
    for name, nodes in calls.items():
        if not isinstance(modules.get(name), nn.Conv2d):
            continue
        if len(nodes) > 1:
            raise DiscoveryError(f"conv {name} is called {len(nodes)} times in one forward pass; a prunable conv "
                                 "must have one output to mask")
        users = list(nodes[0].users)
        bn = (users[0].target if len(users) == 1 and users[0].op == "call_module"
              and isinstance(modules.get(users[0].target), nn.BatchNorm2d) else None)
        follows[name] = bn
        if any(isinstance(a, torch.fx.Node) and a.op == "placeholder" for a in nodes[0].args):
            first.append(name)
    return follows, first


def _by_hooks(model: nn.Module, example: torch.Tensor) -> tuple[dict[str, str | None], list[str]]:
    """The same as `_by_fx`, from one forward pass with hooks (for models fx cannot trace)."""
    outputs: dict[int, str] = {}  # id of a conv's output tensor -> conv path
    keep: list[torch.Tensor] = []
    follows: dict[str, str | None] = {}
    first: list[str] = []
    handles = []

    def conv_hook(name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if name in follows:
                raise DiscoveryError(f"conv {name} is called more than once in one forward pass; a prunable conv "
                                     "must have one output to mask")
            follows[name] = None
            outputs[id(out)] = name
            keep.append(out)  # alive until the pass ends, so no other tensor reuses its id
            if args and args[0] is example:
                first.append(name)
        return hook

    def bn_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            conv = outputs.get(id(args[0])) if args else None
            if conv is not None and follows.get(conv) is None:
                follows[conv] = name
        return hook

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook(name)))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(bn_hook(name)))
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(example)
    except DiscoveryError:
        raise
    except Exception as exc:
        raise DiscoveryError(f"torch.fx cannot trace {type(model).__name__}, and a forward pass on a batch of shape "
                             f"{tuple(example.shape)} failed: {type(exc).__name__}: {exc}") from None
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return follows, first


def find(model: nn.Module, example: torch.Tensor) -> tuple[list[Found], list[str]]:
    """The model's prunable layers in module order, and the convs that read the input."""
    modules = dict(model.named_modules())
    try:
        follows, first = _by_fx(model)
    except DiscoveryError:
        raise
    except Exception:  # fx cannot trace it (control flow on values, unsupported calls): observe one pass
        follows, first = _by_hooks(model, example)
    found = []
    for name, conv in _convs(model).items():
        if name not in follows:
            continue  # defined but never called: not part of the network
        bn = follows[name]
        found.append(Found(name, conv, bn, modules[bn] if bn else None))
    if not found:
        raise DiscoveryError(f"{type(model).__name__} has no Conv2d that its forward pass calls: nothing to prune")
    return found, first


def _key(name: str) -> str:
    return name.replace(".", "__")  # ModuleDict keys cannot hold dots


class Discovered(nn.Module):
    """A model with a `ChannelMask` after each prunable conv (or its BN), applied by forward hooks."""

    def __init__(self, net: nn.Module, found: list[Found]):
        super().__init__()
        self.net = net
        self.pack = 1
        self.found = found  # `find(net, example)`
        self.masks = nn.ModuleDict({_key(f.name): ChannelMask(f.conv.out_channels) for f in self.found})
        for f in self.found:
            site = f.bn if f.bn is not None else f.conv
            site.register_forward_hook(self._hook(self.masks[_key(f.name)]))

    @staticmethod
    def _hook(mask: ChannelMask):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            return mask(out)
        return hook

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x)

    def table(self) -> list[dict[str, Any]]:
        """The layer table, as `gstc layers` prints it and the layer file stores it."""
        return [{"name": f.name, "filters": f.conv.out_channels, "after": f.after, "groups": f.conv.groups}
                for f in self.found]

    def prunable(self, member: int = 0) -> dict[str, Prunable]:
        return {f.name: Prunable(f.conv, f.bn, self.masks[_key(f.name)]) for f in self.found}

    def live_params(self, removed: dict[str, int] | None = None) -> int:
        """Parameters less those of the removed filters themselves: conv weight row and bias, BN scale and shift.

        Unlike the built-in models' count, a removed filter's input weights in the layers that
        read it are not subtracted: which layers read a channel is not known for any model.
        """
        total = sum(p.numel() for p in self.net.parameters())
        by_name = {f.name: f for f in self.found}
        for name, n in (removed or {}).items():
            f = by_name[name]
            own = f.conv.weight[0].numel() + (1 if f.conv.bias is not None else 0) + (2 if f.bn is not None else 0)
            total -= n * own
        return total
