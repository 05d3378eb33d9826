"""A pruned model made physically smaller: its removed channels gone, not masked.

A channel is *removed* when its mask is zero: its filter was pruned with its BN (the
default `prune` mode), so it is exactly zero everywhere it is read, and taking it out
(its filter, its BN channel, its followers' channels and the input slices of every
layer that reads it) leaves the model's output unchanged. A filter pruned with
`include_bn: false`, or zeroed for a while, stays: its channel still carries its BN's
shift.

- Discovered models (torchvision, timm, your own) are cut by Torch-Pruning, each
  prunable layer's group at its removed channels: the library gstc follows channels with
  (gstc.runtime.graph), so the cut is the one the masks stand for.
- The built-in VGG11 is rebuilt with the kept widths. The built-in ResNets keep the
  paper's masks after the residual add: a block's output holds only its conv2's kept
  channels, and the shortcut is gathered onto them (a channel the block removes is
  dropped from the sum; a kept one the input lacks gets zero), exactly what the mask did.

The conformance tests (tests/runtime/test_conformance.py) check, per model, the masked
model's output against the exported one's in float64, and its cost (gstc.costs) against
the exported model's parameters and torch's FlopCounterMode.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from gstc.runtime.discover import Discovered
from gstc.runtime.models import VGG11, BasicBlock, ResNet


def removed_channels(model: nn.Module) -> dict[str, list[int]]:
    """Per prunable layer with removed channels (coupled layers: the first one): their indices, ascending."""
    prunable = model.prunable()
    names = model.leaders() if isinstance(model, Discovered) else list(prunable)
    out = {}
    for name in names:
        idx = (prunable[name].mask_values == 0).nonzero().flatten().tolist()
        if idx:
            out[name] = idx
    return out


def dense(model: nn.Module) -> nn.Module:
    """The unpruned architecture of `model` (its own weights, no masks), for comparison."""
    if isinstance(model, Discovered):
        return _unhooked(model)
    out = copy.deepcopy(model)
    for p in out.prunable().values():
        p.mask.active = False
        p.mask.mask.fill_(1)
    return out


def _unhooked(model: Discovered) -> nn.Module:
    """A copy of a discovered model's own network, without gstc's mask hooks."""
    net = copy.deepcopy(model.net)
    for module in net.modules():
        for hook in model.hook_ids:
            module._forward_hooks.pop(hook, None)
    return net


def physical(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of `model` without its removed channels (in eval mode); `example`: one batch of its input."""
    removed = removed_channels(model)
    if isinstance(model, Discovered):
        return _discovered(model, removed, example)
    if isinstance(model, VGG11):
        return _vgg(model, removed)
    if isinstance(model, ResNet):
        return _resnet(model, removed)
    raise TypeError(f"cannot export a {type(model).__name__}")


def _discovered(model: Discovered, removed: dict[str, list[int]], example: torch.Tensor) -> nn.Module:
    import warnings

    import torch_pruning as tp

    net = _unhooked(model).eval()
    if not removed:
        return net  # nothing to cut (and no graph to build: some models Torch-Pruning cannot follow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dg = tp.DependencyGraph().build_dependency(net, example_inputs=example.to(next(net.parameters())), verbose=False)
    for name, idx in removed.items():
        conv = net.get_submodule(name)
        dg.get_pruning_group(conv, dg.get_pruner_of_module(conv).prune_out_channels, idxs=idx).prune()
    return net


def _keep(n: int, removed: list[int]) -> torch.Tensor:
    gone = set(removed)
    return torch.tensor([i for i in range(n) if i not in gone], dtype=torch.long)


def _conv(conv: nn.Conv2d, rows: torch.Tensor, cols: torch.Tensor | None) -> nn.Conv2d:
    w = conv.weight.detach()[rows]
    w = w[:, cols] if cols is not None else w
    out = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    out = out.to(w)
    with torch.no_grad():
        out.weight.copy_(w)
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach()[rows])
    return out


def _bn(bn: nn.BatchNorm2d, rows: torch.Tensor) -> nn.BatchNorm2d:
    out = nn.BatchNorm2d(len(rows), eps=bn.eps, momentum=bn.momentum).to(bn.weight)
    with torch.no_grad():
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(out, key).copy_(getattr(bn, key).detach()[rows])
        out.num_batches_tracked.copy_(bn.num_batches_tracked)
    return out


def _linear(fc: nn.Linear, cols: torch.Tensor) -> nn.Linear:
    out = nn.Linear(len(cols), fc.out_features).to(fc.weight)
    with torch.no_grad():
        out.weight.copy_(fc.weight.detach()[:, cols])
        out.bias.copy_(fc.bias.detach())
    return out


class PrunedVGG11(nn.Module):
    """The built-in VGG11 with each conv at its kept width."""

    def __init__(self, model: VGG11, removed: dict[str, list[int]]):
        super().__init__()
        cols = None
        layers = []
        for i in range(1, model.n + 1):
            conv = getattr(model, f"conv{i}")
            rows = _keep(conv.out_channels, removed.get(f"conv{i}", []))
            layers.append(nn.Sequential(_conv(conv, rows, cols), _bn(getattr(model, f"bn{i}"), rows)))
            cols = rows
        self.convs = nn.ModuleList(layers)
        self.pool_after, self.average = model.POOL_AFTER, model.average
        self.fc = _linear(model.fc, cols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.convs, start=1):
            x = F.relu(layer(x))
            if i in self.pool_after:
                x = F.max_pool2d(x, 2)
        if self.average:
            x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def _vgg(model: VGG11, removed: dict[str, list[int]]) -> nn.Module:
    return PrunedVGG11(model, removed).eval()


class Gather(nn.Module):
    """A shortcut onto a block's kept output channels: `index[j]` is the input channel added into output channel j
    (the input's length: none, so zero), after subsampling by `stride`."""

    def __init__(self, index: torch.Tensor, stride: int):
        super().__init__()
        self.register_buffer("index", index)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        x = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], 1)
        return x.index_select(1, self.index)


class PrunedBlock(nn.Module):
    def __init__(self, block: BasicBlock, name: str, removed: dict[str, list[int]], cols: torch.Tensor):
        super().__init__()
        mid = _keep(block.conv1.out_channels, removed.get(f"{name}.conv1", []))
        rows = _keep(block.conv2.out_channels, removed.get(f"{name}.conv2", []))
        self.conv1, self.bn1 = _conv(block.conv1, mid, cols), _bn(block.bn1, mid)
        self.conv2, self.bn2 = _conv(block.conv2, rows, mid), _bn(block.bn2, rows)
        sc = block.shortcut
        if isinstance(sc, nn.Sequential):  # option B: a 1x1 conv and BN, cut like the others
            self.shortcut: nn.Module = nn.Sequential(_conv(sc[0], rows, cols), _bn(sc[1], rows))
        else:  # identity or option A (subsample, then `before` zero channels in front)
            before, stride = (sc.before, 2) if hasattr(sc, "before") else (0, 1)
            where = {int(c): k for k, c in enumerate(cols)}
            self.shortcut = Gather(torch.tensor([where.get(int(j) - before, len(cols)) for j in rows],
                                                dtype=torch.long, device=cols.device), stride)
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PrunedResNet(nn.Module):
    def __init__(self, model: ResNet, removed: dict[str, list[int]]):
        super().__init__()
        stem = torch.arange(model.conv1.out_channels)
        self.conv1, self.bn1 = _conv(model.conv1, stem, None), _bn(model.bn1, stem)
        blocks, cols = [], stem
        for name, block in model.blocks():
            blocks.append(PrunedBlock(block, name, removed, cols))
            cols = blocks[-1].rows
        self.blocks = nn.Sequential(*blocks)
        self.fc = _linear(model.fc, cols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _resnet(model: ResNet, removed: dict[str, list[int]]) -> nn.Module:
    return PrunedResNet(model, removed).eval()


# --- checking a model's layers ----------------------------------------------------------


def randomize_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Norms as training leaves them: scales, shifts and running statistics away from their initial 1 and 0, so
    that a norm a pruned channel reaches cannot hide behind its initial zero shift."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for t, low, high in ((m.weight, 0.5, 1.5), (m.bias, -1, 1), (m.running_mean, -1, 1), (m.running_var, 0.5, 2)):
                    if t is not None:
                        t.copy_(torch.empty_like(t).uniform_(low, high, generator=generator))


def inexact_layers(model: Discovered, example: torch.Tensor, tolerance: float = 1e-6) -> dict[str, str]:
    """The prunable layers of `model` whose removal is not what their masks compute: {layer: why}.

    Half of every prunable layer's channels are zeroed as the pruner zeroes them (weights, norms, followers,
    coupled layers, masks), the norms' scales, shifts and statistics randomized first, and the output compared with
    the model with those channels cut out, in float64; where they differ, each layer alone. This consumes `model`
    (its weights are changed): give it one built for the purpose. It catches what no rule of gstc.runtime.graph
    names, such as a channel that an activation not zero at zero (a sigmoid) turns into a constant.
    """
    layers = model.leaders()
    if not layers:
        return {}
    model.double().eval()
    example = example.double()
    generator = torch.Generator().manual_seed(0)
    randomize_norms(model, generator)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def difference(names: list[str]) -> float:
        model.load_state_dict(state)
        with torch.no_grad():
            for name in names:
                p = model.prunable()[name]
                half = torch.zeros(p.channels, dtype=torch.bool)
                half[torch.randperm(p.channels, generator=generator)[: p.channels // 2]] = True
                for param, _, positions in p.packed():
                    param[half if positions is None else positions[half]] = 0
                for w in p.writers():
                    w.mask.mask[half] = 0
                    w.mask.active = True
        try:
            cut = physical(model, example)  # Torch-Pruning traces through autograd: not under no_grad
            with torch.no_grad():
                return float((model(example) - cut(example)).abs().max())
        except RuntimeError:  # the cut model does not run: as bad as any difference
            return float("inf")
        finally:
            for p in model.prunable().values():
                p.mask.active = False

    if difference(layers) <= tolerance:
        return {}
    out = {}
    for name in layers:
        d = difference([name])
        if not d <= tolerance:
            out[name] = (f"removing its channels changes the model's output by {d:.1e} (with them zeroed as pruning "
                         "zeroes them): a pruned channel would not be zero everywhere it is read (an activation that "
                         "is not zero at zero, say)")
    return out


# --- measurements ---------------------------------------------------------------------


def macs(module: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one image through `module`: torch's FlopCounterMode (convolutions and matrix
    products; 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module.eval()(example[:1])
    return counter.get_total_flops() // 2


def latency(module: nn.Module, example: torch.Tensor, repeats: int = 20) -> float:
    """Median seconds of one forward pass over `example` on its device, after 3 warm-up passes."""
    module = module.eval()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            t0 = time.perf_counter()
            module(example)
            if i >= 3:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)
