"""The per-batch masking of a pack's pruners: held filters' rows kept at zero through every training step.

Members' filters are disjoint rows of the packed tensors, so `StepHooks` zeroes the held
rows of every member with one `index_fill_` per packed tensor: the kernel launches per
batch do not grow with the pack size. Each member's own per-batch work (noise before a
batch, the windows that end after it) is its `Pruner`'s, which these hooks call.
"""

from __future__ import annotations

import torch

from gstc.runtime.layer_state import LayerState
from gstc.runtime.prune import Pruner
from gstc.runtime.units import WeightHooks, weight_states


class StepHooks:
    """The per-batch hooks of a pack's pruners, with the holds zeroed once per packed tensor.

    Masking member by member cost 6 kernel launches per pruned layer per member per batch
    (conv weight rows, BN scale and shift, and their gradients): 768 per step for a pack
    of 32 VGG11 runs pruning 4 layers, each a launch's host time on CUDA.
    Members' filters are disjoint rows of the packed tensors, so one list of held rows per
    packed tensor covers every member: at most 6 launches per pruned layer, whatever the
    pack size. `index_fill_` writes only the held rows, where `masked_fill_` reads and
    writes the whole tensor (1.7-2.6x slower per batch on the CPU in Figure 2's packs,
    `benchmarks/bench.py hooks`; benchmarks/RESULTS.md). The rows are rebuilt (host to
    device) only after a member's state changed, so no batch waits for the device.
    """

    def __init__(self, pruners: list[Pruner]):
        self.pruners = pruners
        groups: dict[str, list[LayerState]] = {}
        for pruner in pruners:
            for name, layer in pruner.layers.items():
                groups.setdefault(name, []).append(layer)
        self.groups = list(groups.values())
        # per group: the packed parameters with the indices of their held rows, kept only where something is held
        self.held: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.groups]
        self.weights = WeightHooks(weight_states(pruners))  # weight granularity: a 0/1 multiply per packed weight
        self._refresh(everything=True)  # another StepHooks may have read the changes already

    def _refresh(self, everything: bool = False) -> None:
        for i, layers in enumerate(self.groups):
            if not everything and not any(layer.changed for layer in layers):
                continue
            p = layers[0].p
            masks = {kind: torch.zeros(p.pack, p.channels, dtype=torch.bool) for kind in ("w", "bn")}
            for layer in layers:  # members are stacked along dim 0 of the packed tensors (models.member)
                for kind, mask in masks.items():
                    mask[layer.p.member] = layer.holds(kind)
                layer.changed = False
            rows = {kind: m.flatten().nonzero().flatten().to(layers[0].device) for kind, m in masks.items() if m.any()}
            # a follower's rows are the held filters' positions there (discovered models: packs of one)
            self.held[i] = [(param, rows[kind] if positions is None else positions[masks[kind][0]].to(param.device))
                            for param, kind, positions in p.packed() if kind in rows]

    def before_batch(self, noise: list[torch.Generator]) -> None:
        for pruner, g in zip(self.pruners, noise):
            pruner.before_batch(g)

    def after_backward(self) -> None:
        """Held filters get no gradient (so Adam's moments of them stay zero).

        The held rows are refreshed here, the step's first masking: holds change only at
        events and window ends (each member's after_step), never within a step.
        """
        self._refresh()
        for held in self.held:
            for param, rows in held:
                if param.grad is not None:
                    param.grad.index_fill_(0, rows, 0)
        self.weights.after_backward()

    def after_step(self) -> None:
        """Held values back to zero (weight decay and Adam's momentum move them), then each member's releases."""
        with torch.no_grad():
            for held in self.held:
                for param, rows in held:
                    param.index_fill_(0, rows, 0)
        self.weights.after_step()
        for pruner in self.pruners:
            pruner.after_step()
