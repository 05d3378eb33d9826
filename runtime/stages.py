"""Lottery levels at run time: a stage's start from earlier runs' files, and level 0's rewind points.

A stage (gstc.plan.PlanStage) trains alone. At its start (`Stage`, a step plug-in of the
loop, due at the stage's start epoch) it loads the ticket it follows (`after`: that run's
final checkpoint, its weights and mask), measures the test accuracy, prunes the planned
count (`Pruner.apply`, as any event: the plan's scoring, target and scope), measures
again (the level's stability, recorded in events.jsonl with `"start": true`), and then
sets the surviving weights to where the level starts:

- init: this seed's initialization (the model as the trainer built it);
- rewind: level 0's weights after epoch k (`rewind-<k>.pt`, kept by `RewindPoints`), with
  the LR schedule stepped k times: the level trains epochs k+1..epochs;
- trained: the ticket's own trained weights (learning-rate rewinding);
- reinit: a fresh initialization (the reinit control), drawn from (seed, level).

The random_mask control then moves each layer's pruned positions to random ones (as many
per layer, drawn from (seed, level)). Pruned weights are zero from the first step on; the
optimizer starts afresh (the trainer's, never stepped). A stage resumed from its own
checkpoint skips all this: its checkpoint after the start epoch holds the result.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from gstc import atomic
from gstc.jsonio import DamagedFile
from gstc.paths import ResultsDir
from gstc.runstate import run_status
from gstc.plan import Plan, PlanRun
from gstc.runtime.rng import REINIT, SHUFFLE, TARGETS, epoch_generator
from gstc.runtime.checkpoint import load
from gstc.runtime.models import build_model, member_state
from gstc.runtime.pruning import event_record
from gstc.runtime.records import EpochRecord
from gstc.runtime.train import FILES, Callback, Trainer


def load_state(path: Any, device: torch.device | str = "cpu", weights: bool = False, **kwargs: Any) -> dict:
    """A run's checkpoint, or (`weights`) a rewind point; DamagedFile when it is missing or cannot be read."""
    try:
        return load(path, weights=weights, map_location=device, **kwargs)
    except FileNotFoundError:
        raise DamagedFile(path, "is missing") from None


class RewindPoints(Callback):
    """Level 0 keeps its weights after the epochs later levels rewind to (`stage.keep`), before its checkpoint."""

    phase = FILES

    def __init__(self, results: ResultsDir) -> None:
        self.results = results

    def epoch_end(self, trainer: Trainer, epoch: int, records: dict[int, EpochRecord]) -> None:
        for m in trainer.alive:
            stage = m.run.stage
            if stage is not None and epoch in stage.keep:
                state = member_state(trainer.model.state_dict(), m.k, trainer.pack)
                with atomic.replace(self.results.rewind_point(m.run.id, epoch)) as fh:
                    torch.save(state, fh)


class Stage:
    """A lottery level's start, as a step plug-in of the loop (gstc.runtime.pruning.StepPlugin)."""

    def __init__(self, trainer: Trainer, results: ResultsDir) -> None:
        self.results = results
        self.member = trainer.members[0]
        self.stage = self.member.run.stage
        # This seed's initialization, as the trainer built it: the level's weights when it rewinds to init.
        self.init = ({k: v.clone() for k, v in trainer.model.state_dict().items()} if self.stage.weights == "init"
                     else None)

    def before_batch(self, trainer: Any, noise: list[torch.Generator]) -> None:
        pass

    def after_backward(self, trainer: Any) -> None:
        pass

    def after_step(self, trainer: Any) -> None:
        pass

    def due(self, trainer: Trainer, epoch: int) -> bool:
        return epoch == self.stage.start

    def epoch(self, trainer: Trainer, epoch: int) -> tuple[list[float], list[float]]:
        m, stage = self.member, self.stage
        ticket = load_state(self.results.checkpoint(stage.after), trainer.device)
        trainer.model.load_state_dict(ticket["model"])
        m.pruner.load_state_dict({"batch": 0, "layers": ticket["pruner"]["layers"]})
        measured = m.config.resolved.measure.prune_eval
        pre = trainer.evaluate()[1][0] if measured else None
        layers = m.pruner.apply(epoch, stage.events, trainer.batches, epoch_generator(m.run.seed, epoch, TARGETS))
        post = trainer.evaluate()[1][0]
        trainer.event(m, event_record(epoch, pre, post, layers, start=True, level=stage.level))
        if stage.kind == "random_mask":
            self.shuffle(m.pruner, m.run.seed)
        weights = {"init": lambda: self.init, "trained": lambda: None, "reinit": lambda: self.fresh(trainer),
                   "rewind": lambda: load_state(self.results.rewind_point(stage.rewind_from, stage.start),
                                                trainer.device, weights=True)}[stage.weights]()
        if weights is not None:
            trainer.model.load_state_dict(weights)
        with torch.no_grad():
            for st in m.pruner.weights.values():
                st.p.weight.masked_fill_(st.held.to(st.device), 0)
                st.changed = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": on purpose here
            for _ in range(stage.start):
                trainer.sched.step()
        m.pruner.batch = stage.start * trainer.batches
        return trainer.evaluate()

    def fresh(self, trainer: Trainer) -> dict:
        """A fresh initialization for the reinit control, from (seed, level): not the seed's own."""
        seed = int(torch.randint(2**62, (1,), generator=epoch_generator(self.member.run.seed, self.stage.level, REINIT)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(**trainer.arch, layers=self.member.config.layers)
        return model.to(device=trainer.device, dtype=trainer.dtype).state_dict()

    def shuffle(self, pruner: Any, seed: int) -> None:
        """The random_mask control: each layer keeps as many weights as the ticket's mask, at random positions."""
        g = epoch_generator(seed, self.stage.level, SHUFFLE)
        for st in pruner.weights.values():
            n = int(st.held.sum())
            held = torch.zeros(st.held.numel(), dtype=torch.bool)
            held[torch.randperm(st.held.numel(), generator=g)[:n]] = True
            st.set_mask(held.view(st.held.shape))


def blocked(plan: Plan, results: ResultsDir, run: PlanRun) -> str | None:
    """Why a stage cannot start yet (an input not done: failed, damaged, or not trained), or None."""
    for need in run.needs:
        status = run_status(results, need)
        if status != "done":
            r = next(r for r in plan.runs if r.id == need)
            return f"it starts from level {r.stage.level} ({r.config}, seed {r.seed}), run {need}, which is {status}"
    return None


def damaged_input(results: ResultsDir, run: PlanRun) -> dict | None:
    """{"file", "reason", "run"} when a file this stage starts from cannot be read (and the run that wrote it).
    Only the archives' indexes are read (mmap), as for the run's own checkpoint: a file cut short fails there."""
    stage = run.stage
    if stage is None or stage.level == 0:
        return None
    files = [(stage.after, results.checkpoint(stage.after), False)]
    if stage.weights == "rewind":
        files.append((stage.rewind_from, results.rewind_point(stage.rewind_from, stage.start), True))
    for rid, path, weights in files:
        try:
            load_state(path, weights=weights, mmap=True)
        except DamagedFile as exc:
            return {"file": str(exc.path), "reason": exc.reason, "run": rid}
    return None
