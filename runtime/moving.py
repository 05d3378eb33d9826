"""Moving masks (gstc.moving: SET and RigL) as a step plug-in of the training loop.

At a move (after the backward pass of training batch t, every `delta_t` batches until
T_end), each pruned layer of a run that has one drops its `moved` active weights of
smallest magnitude and grows as many of the weights inactive after the drop (the dropped
ones included, as RigL does): those of largest gradient magnitude on this batch (rigl;
the gradient is read before the pruning hooks zero the inactive weights' part) or drawn
at random from (seed, t) (set). Ties go to the lower index. The moved weights' optimizer
state (momentum, Adam's moments) is reset, a dropped weight is zeroed, and a grown one
starts at zero (it was held there); then the step goes on with the new mask. Layers with
no inactive weight (kept dense by erk) do not move. Each move is recorded in events.jsonl
(`"move": true`): per layer the active count, the weights moved and the overlap of the
new active set with the old one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gstc.plan import MovingSpec
from gstc.runtime.records import MoveLayer, MoveRecord
from gstc.runtime.rng import GROW, epoch_generator


def fraction(batch: int, end: int, drop: float) -> float:
    """The fraction of active weights moved after training batch `batch` (1-based) of `end` (T_end) batches."""
    return drop / 2 * (1 + math.cos(math.pi * batch / end)) if batch <= end else 0.0


def moved(active: int, share: float) -> int:
    """Weights moved in a layer with `active` active weights: round(share x active), halves up."""
    return min(active, math.floor(share * active + 0.5))


def move_end(spec: MovingSpec, batches: int) -> int:
    """T_end: the batch after which the mask stays, of the training's `batches`."""
    return math.floor(spec.stop * batches)


def move_batches(spec: MovingSpec, batches: int) -> list[int]:
    """The training batches (1-based, of `batches` in all) after which the mask moves."""
    return list(range(spec.delta_t, move_end(spec, batches) + 1, spec.delta_t))


def move(weight: torch.Tensor, grad: torch.Tensor, held: torch.Tensor, n: int, rule: str,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """The new held mask (True: inactive) after moving `n` weights: drop the n active weights of smallest |weight|,
    grow n of the weights inactive after that, by largest |grad| (rigl) or at random (set)."""
    flat_held = held.flatten()
    magnitude = weight.detach().flatten().abs().double().cpu().masked_fill(flat_held, float("inf"))
    drop = torch.argsort(magnitude, stable=True)[:n]
    after = flat_held.clone()
    after[drop] = True
    if rule == "rigl":
        score = grad.detach().flatten().abs().double().cpu().masked_fill(~after, -1.0)
        grow = torch.argsort(-score, stable=True)[:n]
    else:
        candidates = after.nonzero().flatten()
        grow = candidates[torch.randperm(len(candidates), generator=generator)[:n]]
    after[grow] = False
    return after.view(held.shape)


class Moving:
    """Each member's moving mask, where its configuration has `moving` (gstc.runtime.pruning.StepPlugin)."""

    def __init__(self, trainer: Any) -> None:
        total = trainer.epochs * trainer.batches  # the training's batches
        self.members = [(m, m.config.resolved.moving) for m in trainer.members if m.config.resolved.moving]
        self.at = {m.k: set(move_batches(spec, total)) for m, spec in self.members}
        self.end = {m.k: move_end(spec, total) for m, spec in self.members}

    def before_batch(self, trainer: Any, noise: list[torch.Generator]) -> None:
        pass

    def after_backward(self, trainer: Any) -> None:
        for m, spec in self.members:
            t = m.pruner.batch + 1  # this step's batch, 1-based
            if m.failure is None and t in self.at[m.k]:
                record = self.move_member(trainer, m, spec, t)
                if record["layers"]:  # the last moves of the cosine may move nothing
                    trainer.event(m, record)

    def move_member(self, trainer: Any, m: Any, spec: Any, t: int) -> MoveRecord:
        share = fraction(t, self.end[m.k], spec.drop)
        generator = epoch_generator(m.run.seed, t, GROW)
        layers: list[MoveLayer] = []
        for name, st in m.pruner.weights.items():
            inactive = int(st.held.sum())
            active = st.held.numel() - inactive
            n = moved(active, share) if inactive else 0
            if n == 0:
                continue
            param = st.p.conv.weight
            new = move(st.p.weight, st.p.part(param.grad), st.held, n, spec.rule, generator)
            changed = new ^ st.held
            for value in trainer.opt.state.get(param, {}).values():  # momentum, Adam's moments: afresh
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    st.p.part(value).masked_fill_(changed.to(value.device), 0)
            overlap = int((~new & ~st.held).sum())
            st.set_mask(new)
            layers.append({"layer": name, "active": active, "moved": n, "overlap": overlap / active})
        return {"epoch": trainer.epoch + 1, "batch": t, "move": True, "fraction": share, "layers": layers}

    def after_step(self, trainer: Any) -> None:
        pass

    def due(self, trainer: Any, epoch: int) -> bool:
        return False

    def epoch(self, trainer: Any, epoch: int) -> tuple[list[float], list[float]]:
        raise AssertionError("moving masks have no epoch work")
