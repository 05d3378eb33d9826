"""Pruning as a plug-in of the training loop: each member's pruner, the per-step hooks, and the events of an
epoch with the stability measurement around them.

The trainer (gstc.runtime.train) trains, evaluates and steps epochs. It calls its step plug-ins
(`StepPlugin`) around every training step, and at the end of an epoch asks each whether it has
work there (`due`); one that has runs it (`epoch`) and hands back the evaluation it made, which
the trainer then need not repeat. `Pruning` is that plug-in: it builds each member's `Pruner`
(`member.pruner`, which checkpoints and counts read), holds the pack's `StepHooks`, and at an
event epoch evaluates before, applies the events, evaluates after, and sends each member's
event record (pre/post accuracy, stability, per-layer counts) to the trainer's callbacks.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from gstc.runtime.rng import TARGETS, epoch_generator
from gstc.runtime.probes import probe
from gstc.runtime.records import LayerEvent, PruneEvent
from gstc.runtime.prune import PluginFailed, Pruner
from gstc.runtime.step_hooks import StepHooks


class StepPlugin(Protocol):
    """What plugs into every training step and epoch of the loop (the trainer is passed to each hook)."""

    def before_batch(self, trainer: Any, noise: list[torch.Generator]) -> None:
        """Before a training batch's forward pass; `noise`: each member's generator for this epoch's noise."""

    def after_backward(self, trainer: Any) -> None:
        """Between the backward pass and the optimizer step."""

    def after_step(self, trainer: Any) -> None:
        """After the optimizer step."""

    def due(self, trainer: Any, epoch: int) -> bool:
        """Whether `epoch` (0: at initialization) has work for this plug-in after its training."""

    def epoch(self, trainer: Any, epoch: int) -> tuple[list[float], list[float]]:
        """That work; returns the members' test loss and accuracy of the model as it leaves it."""


class Pruning:
    """The members' pruning events and perturbation windows (gstc.runtime.prune), plugged into the loop."""

    def __init__(self, trainer: Any):
        for m in trainer.members:
            member_probe = lambda batches, kind, m=m: probe(trainer, m, batches, kind)  # noqa: E731
            m.pruner = Pruner(trainer.model, m.config, m.run.seed, member=m.k, probe=member_probe)
        self.hooks = StepHooks([m.pruner for m in trainer.members])
        self.epoch_now = 0  # the epoch whose events are being applied (a probe's draws come from it)

    # --- every training step ------------------------------------------------------

    def before_batch(self, trainer: Any, noise: list[torch.Generator]) -> None:
        self.hooks.before_batch(noise)

    def after_backward(self, trainer: Any) -> None:
        self.hooks.after_backward()

    def after_step(self, trainer: Any) -> None:
        self.hooks.after_step()

    # --- event epochs ---------------------------------------------------------------

    def due(self, trainer: Any, epoch: int) -> bool:
        return any(epoch in m.events for m in trainer.alive)

    def epoch(self, trainer: Any, epoch: int) -> tuple[list[float], list[float]]:
        """Events of `epoch` (of the members that have some): pre-pruning evaluation, events, post-pruning evaluation.

        One evaluation of the pack serves every member: a member without events is
        unchanged by the others', so the post-pruning evaluation is its plain one.
        """
        pruning = [m for m in trainer.alive if epoch in m.events]
        self.epoch_now = epoch
        pre = trainer.evaluate()[1] if any(m.config.resolved.measure.prune_eval for m in pruning) else None
        layers = {}
        for m in pruning:
            try:
                layers[m.k] = m.pruner.apply(epoch, m.events[epoch], trainer.batches,
                                             epoch_generator(m.run.seed, epoch, TARGETS))
            except PluginFailed as exc:  # this run's plugin raised: it fails alone
                trainer.fail(m, epoch, str(exc))
        pruning = [m for m in pruning if m.k in layers]
        post_loss, post = trainer.evaluate()
        for m in pruning:
            m.pruner.after_post_eval()
            before = pre[m.k] if pre is not None and m.config.resolved.measure.prune_eval else None
            trainer.event(m, event_record(epoch, before, post[m.k], layers[m.k]))
        return post_loss, post


def event_record(epoch: int, pre: float | None, post: float, layers: list[LayerEvent], **extra: Any) -> PruneEvent:
    """An events.jsonl record: test accuracy before (None: not measured) and after, the stability, per-layer counts;
    `extra`: a lottery level's start and level, written after the epoch."""
    record: PruneEvent = {"epoch": epoch, **extra, "pre_acc": pre, "post_acc": post, "instability": None,
                              "stability": None, "layers": layers}
    if pre is not None:
        instability = 100.0 * (pre - post) / pre if pre > 0 else 0.0
        record.update(instability=instability, stability=100.0 - instability)
    return record
