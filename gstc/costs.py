"""Parameters and multiply-accumulates of a pruned model, counted without torch.

A pruned model's cost depends on how many filters each prunable layer keeps, and on
nothing else: a removed channel takes with it its own filter's weights (conv weight row,
bias, BN scale and shift) and the input slice of every layer that reads it. gstc writes
a model's cost as a sum of `Term`s, each the size of one tensor (parameters) or one
layer's work (MACs):

    k * out * in      with out, in = fixed + sum over layers L of mult_L * live_L

where live_L is the number of L's filters still alive and mult_L how many positions of
that dimension each of L's channels occupies (1; or, where a flattened feature map is
read by a dense layer, its pixels). A conv's weight is k = kernel area, out = its
filters, in = the channels it reads (of a depthwise conv, k = kernel area and no `in`);
its MACs are k = kernel area x output pixels. MACs count convolutions and dense layers
only (the usual convention; norms, activations and additions are left out).

The built-in architectures' terms are written here (`builtin`); any other model's come
from its dependency graph (gstc.runtime.graph) and are stored in its layer file. The
conformance tests (tests/runtime/test_conformance.py) check both against the physically
pruned model: `sum(p.numel())` and torch's FlopCounterMode.
"""

from __future__ import annotations

import math
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dim(Frozen):
    fixed: int = Field(default=0, description="Positions of this dimension that no prunable layer's filters occupy.")
    per: dict[str, int] = Field(default_factory=dict, description="Prunable layer -> positions per live filter.")

    def size(self, live: dict[str, int]) -> int:
        return self.fixed + sum(m * live[name] for name, m in self.per.items())


class Term(Frozen):
    k: int = Field(description="Constant factor: kernel area, output pixels, 2 for a norm's scale and shift.")
    out: Dim | None = Field(default=None, description="The output-channel dimension; None: a constant factor of 1.")
    inp: Dim | None = Field(default=None, description="The input-channel dimension; None: a constant factor of 1.")

    def value(self, live: dict[str, int]) -> int:
        return self.k * (self.out.size(live) if self.out else 1) * (self.inp.size(live) if self.inp else 1)


class Cost(Frozen):
    params: list[Term] = Field(description="One term per parameter tensor (terms of one shape merged).")
    macs: list[Term] = Field(description="One term per convolution or dense layer, per image.")
    kernels: dict[str, list[int]] = Field(default_factory=dict, description="Each conv's filter shape: [input "
                                          "channels / groups, kernel height, kernel width]; its weights are filters x "
                                          "their product.")

    dense: dict[str, list[int]] = Field(default_factory=dict, description="Each dense (linear) layer's weight shape, "
                                        "[out features, in features]: single weights and N:M groups prune them too.")

    def fanin(self) -> dict[str, int]:
        """Weights per filter of each conv."""
        return {name: math.prod(shape) for name, shape in self.kernels.items()}

    def count(self, live: dict[str, int]) -> tuple[int, int]:
        """(parameters, MACs per image) with `live` filters per prunable layer."""
        return sum(t.value(live) for t in self.params), sum(t.value(live) for t in self.macs)

    def to_json(self) -> dict:
        """Compact form for layer files: each term [k, out, in], a dimension [fixed, {layer: mult}] or null."""
        def dim(d: Dim | None) -> list | None:
            return None if d is None else [d.fixed, d.per]
        return {"params": [[t.k, dim(t.out), dim(t.inp)] for t in self.params],
                "macs": [[t.k, dim(t.out), dim(t.inp)] for t in self.macs],
                **({"kernels": self.kernels} if self.kernels else {}), **({"dense": self.dense} if self.dense else {})}

    @classmethod
    def from_json(cls, data: dict) -> "Cost":
        def dim(d: list | None) -> Dim | None:
            return None if d is None else Dim(fixed=int(d[0]), per={str(k): int(v) for k, v in d[1].items()})
        return cls(params=[Term(k=int(k), out=dim(o), inp=dim(i)) for k, o, i in data["params"]],
                   macs=[Term(k=int(k), out=dim(o), inp=dim(i)) for k, o, i in data["macs"]],
                   kernels={str(k): [int(x) for x in v] for k, v in data.get("kernels", {}).items()},
                   dense={str(k): [int(x) for x in v] for k, v in data.get("dense", {}).items()})


def merged(terms: Iterable[Term]) -> list[Term]:
    """Terms of one shape summed into one; constant dimensions folded into k; zero terms dropped."""
    out: dict[str, Term] = {}
    for t in terms:
        k, dims = t.k, []
        for d in (t.out, t.inp):
            if d is not None and not d.per:
                k *= d.fixed
                d = None
            dims.append(d)
        if k == 0:
            continue
        key = "|".join("-" if d is None else f"{d.fixed}:{sorted(d.per.items())}" for d in dims)
        if key in out:
            k += out[key].k
        out[key] = Term(k=k, out=dims[0], inp=dims[1])
    return list(out.values())


def live_after(layers: list, schedules: list) -> dict[str, int]:
    """Filters left per layer after a configuration's last event (plan layers and schedules): a filter is removed
    when its mode is `prune` with its BN (include_bn); zeroed or noised filters, and filters pruned with
    `include_bn: false` (their BN's shift still reaches the readers), stay."""
    live = {layer.name: layer.filters for layer in layers}
    for s in schedules:
        if s.granularity == "filter" and s.mode.kind == "prune" and s.mode.include_bn and s.kept:
            live[s.layer] = s.kept[-1]
    return live


def nonzero_after(params: list[int], schedules: list) -> list[int] | None:
    """Weight and N:M granularity: [parameters, parameters not held at zero after the last event]; None where every
    schedule prunes filters (their count is `params`). A global group's counts are counted once."""
    weights = [s for s in schedules if s.granularity != "filter" and s.mode.kind == "prune" and s.kept]
    if not weights:
        return None
    seen: set[str] = set()
    zero = 0
    for s in weights:
        key = s.group[0] if s.group else s.layer
        if key not in seen:
            seen.add(key)
            n, m = s.nm or (0, 1)  # an N:M group loses M - N weights; a single weight, itself
            zero += (s.kept[0] + s.pruned[0] - s.kept[-1]) * (m - n)
    return [params[0], params[1] - zero]


def before_after(cost: Cost, layers: list, schedules: list) -> tuple[list[int], list[int]]:
    """([parameters unpruned, after the last event], [MACs unpruned, after]) of a configuration."""
    before = cost.count({layer.name: layer.filters for layer in layers})
    after = cost.count(live_after(layers, schedules))
    return [before[0], after[0]], [before[1], after[1]]


# --- the built-in architectures ------------------------------------------------------


def _conv(params: list, macs: list, out: Dim, inp: Dim, pixels: int, kernel: int = 9, bn: bool = True) -> None:
    params.append(Term(k=kernel, out=out, inp=inp))
    if bn:
        params.append(Term(k=2, out=out))  # BN scale and shift
    macs.append(Term(k=kernel * pixels, out=out, inp=inp))


def _down(side: int) -> int:
    """A side after a 3x3 (padding 1) or 1x1 convolution with stride 2: ceil(side / 2)."""
    return (side + 1) // 2


def builtin(arch: str, table: list[tuple[str, int]], channels_in: int, size: tuple[int, int], classes: int,
            stem: int = 0) -> Cost:
    """The cost of a built-in architecture whose prunable layers are `table` (name, filters).

    VGG11: each conv reads the previous one's channels; its mask sits after its BN.
    ResNets: a block's output channel is its conv2's (the mask sits after the shortcut
    add), so the next block's conv1 and shortcut conv read conv2's live channels, and a
    1x1 shortcut conv loses the rows of its block's removed channels too. `stem`: the
    ResNet's first conv's filters (never pruned).
    """
    params: list[Term] = []
    macs: list[Term] = []
    kernels: dict[str, list[int]] = {}
    h, w = size
    filters = dict(table)
    if arch == "vgg11_bn":
        pool_after = (1, 2, 4, 6, 8)
        inp = Dim(fixed=channels_in)
        for i, (name, _) in enumerate(table, start=1):
            out = Dim(per={name: 1})
            kernels[name] = [inp.size(filters), 3, 3]
            _conv(params, macs, out, inp, h * w)
            inp = out
            if i in pool_after:
                h, w = h // 2, w // 2
        features = inp
    else:
        stem_dim = Dim(fixed=stem)
        _conv(params, macs, stem_dim, Dim(fixed=channels_in), h * w)
        live = stem_dim
        for i in range(0, len(table), 2):
            conv1, conv2 = table[i][0], table[i + 1][0]  # layer{s}.{b}.conv1 and .conv2
            stage, block = conv1.split(".")[:2]
            stride = 2 if block == "0" and stage != "layer1" else 1  # each later stage starts by halving
            if stride == 2:
                h, w = _down(h), _down(w)
            mid, out = Dim(per={conv1: 1}), Dim(per={conv2: 1})
            kernels[conv1], kernels[conv2] = [live.size(filters), 3, 3], [filters[conv1], 3, 3]
            _conv(params, macs, mid, live, h * w)
            _conv(params, macs, out, mid, h * w)
            if stride == 2 and arch == "resnet18":  # option B: a 1x1 conv and BN
                _conv(params, macs, out, live, h * w, kernel=1)
            live = out
        features = live
    params += [Term(k=classes, inp=features), Term(k=classes)]  # the dense layer: weight and bias
    macs.append(Term(k=classes, inp=features))
    dense = {"fc": [classes, features.size(filters)]}
    return Cost(params=merged(params), macs=merged(macs), kernels=kernels, dense=dense)
