"""What a pruning method (gstc.methods) works through at one event: `Event`.

An event names its layers (one, or a global scope's group), how many units to take, and the
entry's target. A method asks it for the layers' scores (by their scoring plugin), ranks with
`choose` (one ranking across the layers: the target's `count` among the free units, ties by
position, random ones from the event's generator), and takes units with `take`, which starts
the mode on them and records what was taken for events.jsonl.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

Pruner = Any  # gstc.runtime.prune.Pruner, which calls this module


@dataclass(frozen=True)
class Scores:
    """One layer's scores at an event: `raw` as its scoring returned them (filters, or the weight's shape), and
    `units`, one per unit (N:M: a group's is what taking it removes), flat; both float64 on the host."""

    raw: torch.Tensor
    units: torch.Tensor


def choose(scores: torch.Tensor, candidates: torch.Tensor, k: int, target: str, generator: torch.Generator) -> torch.Tensor:
    """Indices of `k` units among `candidates` (bool mask): lowest/highest score, ties by index; or random."""
    idx = candidates.nonzero().flatten().cpu()
    if k > len(idx):
        raise RuntimeError(f"the plan asks for {k} units but only {len(idx)} are untargeted")
    if target == "random":
        return idx[torch.randperm(len(idx), generator=generator)[:k]].sort().values
    s = scores.detach().double().cpu()[idx]
    if target == "smallest":
        order = torch.argsort(s, stable=True)
    elif target == "largest":
        order = torch.argsort(-s, stable=True)  # stable: among equal scores, the lower index first
    else:
        raise ValueError(f"unknown target {target!r}; known: smallest, random, largest")
    return idx[order[:k]].sort().values


class Event:
    """One event of one run: its layers' states, the count to take, the target and the event's generator."""

    def __init__(self, pruner: Pruner, names: list[str], count: int, batches_per_epoch: int,
                 generator: torch.Generator):
        self.pruner, self.names, self.count = pruner, names, count
        self.states = [pruner.states()[n] for n in names]
        self.target = self.states[0].schedule.target
        self.batches_per_epoch, self.generator = batches_per_epoch, generator
        self.taken: dict[str, list[torch.Tensor]] = {n: [] for n in names}  # the unit scores of what was taken

    def free(self) -> list[torch.Tensor]:
        """Per layer, which units no event has taken yet (flat booleans)."""
        return [st.free() for st in self.states]

    def scores(self) -> list[Scores]:
        """Per layer, its scoring's scores of the model as it is now."""
        out = []
        for name, state in zip(self.names, self.states):
            raw = self.pruner.score(name).detach().double().cpu()
            out.append(Scores(raw, state.unit_scores(raw, self.target)))
        return out

    def rounds(self) -> list[int]:
        """The count split into rounds: one, or the scoring's `rounds`, each keeping the fraction
        (kept / before)^(1 / rounds) of what the round before kept (SynFlow's exponential schedule)."""
        loaded = self.pruner.scorings[self.names[0]][0]
        rounds = getattr(loaded.plugin, "rounds", None)
        before = sum(st.untargeted() for st in self.states)
        n = min(rounds(loaded.params), self.count) if rounds is not None and self.count > 0 else 1
        after = before - self.count
        kept = [before] + [max(after, round(before * (after / before) ** (j / n))) for j in range(1, n)] + [after]
        return [a - b for a, b in zip(kept, kept[1:]) if a > b] or [self.count]

    def choose(self, scores: list[Scores], count: int, target: str | None = None) -> list[torch.Tensor]:
        """Per layer, the indices of its units among `count` chosen by one ranking across the layers."""
        units, free = [s.units for s in scores], self.free()
        if len(units) == 1:  # one layer: its own units, exactly as always
            flat, candidates = units[0], free[0]
        else:
            flat, candidates = torch.cat(units), torch.cat(free)
        chosen = choose(flat, candidates, count, target or self.target, self.generator)
        out, offset = [], 0
        for u in units:
            out.append(chosen[(chosen >= offset) & (chosen < offset + len(u))] - offset)
            offset += len(u)
        return out

    def take(self, chosen: list[torch.Tensor], scores: list[Scores]) -> None:
        """Take each layer's chosen units: they are targeted for good and the mode starts on them."""
        self.pruner.probes.clear()  # the model changed: a later round probes again
        for name, state, idx, s in zip(self.names, self.states, chosen, scores):
            state.take_units(self.pruner, idx, s.raw, self.target, self.batches_per_epoch, self.generator)
            self.taken[name].append(s.units[idx])
