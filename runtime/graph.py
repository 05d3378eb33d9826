"""Where a conv's channels go: its readers, its coupled layers, and which convs can be pruned exactly.

gstc follows channels with Torch-Pruning's `DependencyGraph` (torch-pruning on PyPI), the
maintained library made for this: it traces one forward pass through autograd, so it
sees every op that touches a channel (a norm module of any BatchNorm subclass, timm's
norm-plus-activation modules, functional calls, concatenations, splits, residual adds,
squeeze-excitation products, flattening into a dense layer) and maps a channel's index
through each of them. For one conv's filters it returns the *group*: every tensor
dimension that holds those channels, in every module, with the positions there.

gstc's rule for a prunable layer: a pruned channel is exactly zero everywhere it is
read. Within a group, every tensor that *writes* the channel is held at zero (conv
weight rows and biases, norm scales and shifts, dense rows), so the channel is zero
after each of them; the layers that *read* it then see zeros, and removing the channel
physically (its filters and their input slices) leaves the model's output unchanged.
A group is one of three things to a conv in it:

- its own filters and its BN (the norm its output goes straight into: the mask sits
  after that norm);
- *coupled* layers: other full convs writing the same channels (the convs whose outputs
  a residual sum adds), pruned together with one schedule;
- *followers*: depthwise convs (their channels are their input's), gates (a
  squeeze-excitation conv whose output multiplies the channels) and norms that read the
  channels elsewhere (DenseNet's norms after a concatenation), zeroed with the layer.

A conv is refused, with the reason, where no exact meaning exists: its channels reach a
norm over channels (LayerNorm, GroupNorm: they re-centre a zeroed channel and change the
others' statistics), a grouped conv that is not depthwise (removing some channels leaves
its groups unequal), a module gstc cannot zero, or nothing at all (the model's output);
or where it is itself a depthwise conv or a gate (pruned with the layer it follows).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gstc.costs import Cost, Dim, Term, merged

NORMS_OVER_CHANNELS = (nn.LayerNorm, nn.GroupNorm)


class DiscoveryError(Exception):
    """A model whose prunable layers cannot be found; the message says why."""
BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)


def depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def grouped(module: nn.Module) -> bool:
    """A grouped conv that is not depthwise: its groups must keep equal channel counts."""
    return isinstance(module, nn.Conv2d) and module.groups > 1 and not depthwise(module)


@dataclass
class Site:
    """A module holding some of a layer's channels: `positions[i]` is the layer's channel i there."""

    name: str
    module: nn.Module
    positions: torch.Tensor  # long, one per filter of the layer


@dataclass
class Group:
    """One conv's channels as the graph sees them (see the module docstring)."""

    writers: list[str]  # full convs writing the channels, module order: the coupled layers
    followers: list[Site] = field(default_factory=list)
    refused: str | None = None
    out_dims: dict[str, int] = field(default_factory=dict)  # module -> positions of its output dim per channel
    in_dims: dict[str, int] = field(default_factory=dict)  # module -> positions of its input dim per channel


@dataclass
class Graph:
    """The analysis of one model: every conv's group and refusal, and the model's cost."""

    groups: dict[str, Group]  # conv name -> its group (writers share one Group object)
    refused: dict[str, str]  # conv name -> why it cannot be pruned on its own (followers and failures)
    norms: dict[str, str | None] = field(default_factory=dict)  # conv name -> the BN its output goes straight into
    cost: Cost | None = None


class Trace:
    """Forward hooks over one pass: each conv's and dense layer's calls and output size."""

    def __init__(self, model: nn.Module, example: torch.Tensor):
        self.names = {m: n for n, m in model.named_modules()}
        self.calls: dict[str, int] = {}
        self.pixels: dict[str, int] = {}  # per image: output positions (conv: H x W; dense: leading dims)
        self.example = example
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if isinstance(m, (nn.Conv2d, nn.Linear))]

    def _hook(self, module: nn.Module, args: tuple, out: Any) -> None:
        name = self.names[module]
        self.calls[name] = self.calls.get(name, 0) + 1
        if isinstance(out, torch.Tensor):
            channels = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
            self.pixels[name] = self.pixels.get(name, 0) + out.numel() // (len(self.example) * channels)

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _gate(node: Any) -> bool:
    """A conv's output reaches a product through one-input ops only (an activation): a gate."""
    seen, todo = set(), list(node.outputs)
    while todo:
        n = todo.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        fn = n.grad_fn.name() if n.grad_fn is not None else ""
        if fn.startswith("Mul"):
            return True
        if len(n.inputs) == 1 and not isinstance(n.module, (nn.Conv2d, nn.Linear)) and not isinstance(n.module, BATCH_NORMS):
            todo.extend(n.outputs)
    return False


def _norm_after(node: Any) -> nn.Module | None:
    """The BN a conv's output goes straight into (through one-input ops only: a norm-plus-activation module such as
    timm's BatchNormAct2d shows as its own batch_norm call, then the module), or None."""
    while len(node.outputs) == 1:
        node = node.outputs[0]
        if isinstance(node.module, BATCH_NORMS):
            return node.module
        if len(node.inputs) != 1 or isinstance(node.module, (nn.Conv2d, nn.Linear)):
            return None
    return None


def _refusal(module: nn.Module, name: str) -> str | None:
    """Why a module in a group makes the group unprunable, or None."""
    if isinstance(module, NORMS_OVER_CHANNELS):
        kind = type(module).__name__
        return (f"{name} ({kind}) normalizes over channels: it re-centres a zeroed channel and the others' statistics "
                "include it; prune a layer whose channels no such norm reads (inside a block, not its output)")
    if isinstance(module, BATCH_NORMS) and not module.affine:
        return f"{name} is a BatchNorm without scale and shift: a zeroed channel comes out of it as a constant"
    if grouped(module):
        return (f"{name} is a grouped conv (groups={module.groups}) that reads or writes these channels: removing "
                "some would leave its groups unequal")
    if isinstance(module, (nn.Conv2d, nn.Linear) + BATCH_NORMS):
        return None
    if isinstance(module, nn.Module) and not list(module.parameters(recurse=False)) and not list(module.buffers(recurse=False)):
        return None  # Torch-Pruning's own placeholders for additions, concatenations, reshapes
    if isinstance(module, nn.Parameter):
        return (f"these channels reach {name}, a parameter used outside a module gstc knows (a functional call), which "
                "gstc cannot zero and cut with the buffers used with it; make it a module (a BatchNorm2d, say)")
    return f"these channels reach {name} ({type(module).__name__}), which gstc cannot zero"


def analyze(model: nn.Module, example: torch.Tensor) -> Graph:
    """Every conv's group in `model` (called on `example`), and the model's parameter and MAC terms."""
    import torch_pruning as tp

    names: dict[Any, str] = {m: n for n, m in model.named_modules()}
    names.update({p: n for n, p in model.named_parameters()})  # parameters used by functional calls
    was = model.training
    model.eval()  # no BN statistic moves while tracing
    trace = Trace(model, example)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Torch-Pruning's notes on parameters it does not prune
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
        problem = None
    except Exception as exc:  # noqa: BLE001 - any failure of the library: every conv refused, with its words
        dg, problem = None, f"Torch-Pruning cannot follow this model's channels ({type(exc).__name__}: {exc})"
        trace.calls.clear(), trace.pixels.clear()
        try:
            with torch.no_grad():
                model(example)
        except Exception as failed:  # noqa: BLE001 - the model's own failure, said as such
            raise DiscoveryError(f"a forward pass of {type(model).__name__} on a batch of shape {tuple(example.shape)} "
                                 f"failed: {type(failed).__name__}: {failed}") from None
    finally:
        trace.close()
        model.train(was)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n in trace.calls]
    graph = Graph(groups={}, refused={})
    if dg is None:
        graph.refused = {n: problem for n in convs}
        graph.cost = _cost(model, trace, {})
        return graph
    modules = dict(model.named_modules())
    for name in convs:
        bn = _norm_after(dg.module2node[modules[name]])
        graph.norms[name] = names[bn] if bn is not None else None
    for name in convs:
        if name in graph.groups or name in graph.refused:
            continue
        conv = modules[name]
        pruner = dg.get_pruner_of_module(conv)
        group = dg.get_pruning_group(conv, pruner.prune_out_channels, idxs=list(range(conv.out_channels)))
        found = _group(dg, group, names, conv.out_channels, trace, graph.norms)
        for writer in found.writers:
            graph.groups[writer] = found
        for site in found.followers:
            if isinstance(site.module, nn.Conv2d) and site.name not in graph.groups:
                how = "a depthwise conv" if depthwise(site.module) else "a gate (its output multiplies them)"
                graph.refused[site.name] = (found.refused if found.refused else f"{how}: its channels are "
                                            f"{found.writers[0]}'s, and it is pruned with {found.writers[0]}")
        if name not in graph.groups and name not in graph.refused:  # a depthwise conv reading the input, say
            graph.refused[name] = found.refused or "its channels belong to no full conv's filters"
    accepted = {n: g for n, g in graph.groups.items() if g.refused is None}
    graph.cost = _cost(model, trace, accepted)
    return graph


def _group(dg: Any, group: Any, names: dict, n: int, trace: Trace, norms: dict[str, str | None]) -> Group:
    """The writers, followers and refusal of one Torch-Pruning group of `n` channels; `norms`: each conv's BN."""
    writers: list[str] = []
    outs: list[tuple[str, nn.Module, list[int]]] = []
    found = Group(writers=writers)
    problems: list[str] = []
    readers = 0
    for item in group.items:
        dep, idxs = item.dep, list(item.idxs)
        module = dep.target.module
        name = names.get(module, getattr(dep.target, "name", "?"))
        out = dep.handler.__name__ == "prune_out_channels"
        if len(idxs) % n:
            problems.append(f"these channels reach {name} through a reshape gstc cannot follow")
            continue
        dims = found.out_dims if out else found.in_dims
        dims[name] = dims.get(name, 0) + len(idxs) // n
        problem = _refusal(module, name)
        if problem:
            problems.append(problem)
        if isinstance(module, nn.Conv2d) and trace.calls.get(name, 0) > 1:
            problems.append(f"{name} is called {trace.calls[name]} times in one forward pass (shared weights)")
        if not out:
            readers += 1
        elif isinstance(module, (nn.Conv2d, nn.Linear) + BATCH_NORMS):
            outs.append((name, module, idxs))
    for name, module, idxs in outs:
        if isinstance(module, nn.Conv2d) and module.groups == 1 and not _gate(dg.module2node[module]):
            writers.append(name)
    own = set(writers) | {norms[w] for w in writers if norms.get(w)}
    for name, module, idxs in outs:
        if name not in own:
            if len(idxs) != n:
                problems.append(f"{name} holds each channel more than once")
                continue
            found.followers.append(Site(name, module, torch.tensor(idxs, dtype=torch.long)))
    if not readers:
        problems.append("its channels are the model's output: nothing reads them")
    if not writers:
        problems.append("no full conv writes these channels")
    order = {name: k for k, name in enumerate(names.values())}
    writers.sort(key=order.get)
    found.refused = problems[0] if problems else None
    return found


def _cost(model: nn.Module, trace: Trace, groups: dict[str, Group]) -> Cost:
    """Parameter and MAC terms: a dimension that holds an accepted group's channels shrinks with its layer."""
    out_dim: dict[str, dict[str, int]] = {}
    in_dim: dict[str, dict[str, int]] = {}
    for group in {id(g): g for g in groups.values()}.values():
        layer = group.writers[0]  # the coupled layers share one live count; the first names it
        for module, mult in group.out_dims.items():
            out_dim.setdefault(module, {})[layer] = mult
        for module, mult in group.in_dims.items():
            in_dim.setdefault(module, {})[layer] = mult

    modules = dict(model.named_modules())
    sizes = {g.writers[0]: modules[g.writers[0]].out_channels for g in groups.values()}

    def dim(module: str, size: int, per: dict[str, dict[str, int]], _: Any = None) -> Dim:
        mults = per.get(module, {})
        return Dim(fixed=size - sum(m * sizes[g] for g, m in mults.items()), per=mults)

    params: list[Term] = []
    macs: list[Term] = []
    counted: set[int] = set()
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in counted]
        counted.update(id(p) for p in own)
        if isinstance(module, nn.Conv2d):
            o = dim(name, module.out_channels, out_dim, sizes)
            i = dim(name, module.in_channels, in_dim, sizes) if module.groups == 1 else None
            area = module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups if i is None else 1)
            params.append(Term(k=area, out=o, inp=i))
            if module.bias is not None:
                params.append(Term(k=1, out=o))
            if name in trace.pixels:
                macs.append(Term(k=area * trace.pixels[name], out=o, inp=i))
        elif isinstance(module, nn.Linear):
            o, i = dim(name, module.out_features, out_dim, sizes), dim(name, module.in_features, in_dim, sizes)
            params.append(Term(k=1, out=o, inp=i))
            if module.bias is not None:
                params.append(Term(k=1, out=o))
            if name in trace.pixels:
                macs.append(Term(k=trace.pixels[name], out=o, inp=i))
        elif isinstance(module, BATCH_NORMS) and module.affine:
            params.append(Term(k=2, out=dim(name, module.num_features, out_dim, sizes)))
        else:
            params += [Term(k=p.numel()) for p in own]
    kernels = {name: list(m.weight.shape[1:]) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    dense = {name: list(m.weight.shape) for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    return Cost(params=merged(params), macs=merged(macs), kernels=kernels, dense=dense)
