"""Checkpoints: each member's state after every epoch, for resuming (and the damage check before it).

A member's checkpoint.pt holds its own state in the layout of a model built alone, so it
resumes in any pack or alone: {"epoch", "seconds", "model", "optimizer", "scheduler",
"pruner", "rng"}. It is written through `gstc.atomic.replace` (temporary file, fsync,
rename, fsync of the folder) and loads with `weights_only=True`: tensors, numbers,
strings and plain containers only, never a pickled object.

The LR scheduler is saved with its `state_dict()`. Checkpoints of gstc 0.1.0 saved only
the scheduler's epoch count ("scheduler_epoch"); they resume by stepping a fresh
scheduler that many times, which gives the same state (tests/runtime/test_worker.py).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from typing import Any

import torch

from gstc import atomic
from gstc.jsonio import DamagedFile
from gstc.paths import ResultsDir
from gstc.runtime.models import member, member_state, pack_states
from gstc.runtime.records import EpochRecord
from gstc.runtime.train import CHECKPOINT, Callback, Trainer

_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
KEYS = ("epoch", "seconds", "model", "optimizer", "pruner", "rng")  # besides "scheduler" (or "scheduler_epoch")


def optimizer_member(state: dict, k: int, pack: int) -> dict:
    """Member k's optimizer state_dict from a pack's (per-parameter tensors are stacked like the parameters)."""
    def part(v: Any) -> Any:
        return (member(v, k, pack) if v.dim() else v).clone() if isinstance(v, torch.Tensor) else v

    return {"state": {i: {key: part(v) for key, v in st.items()} for i, st in state["state"].items()},
            "param_groups": state["param_groups"]}


def optimizer_pack(states: list[dict]) -> dict:
    """A pack's optimizer state_dict from its members' (the inverse of `optimizer_member`)."""
    def join(values: list[Any]) -> Any:
        v = values[0]
        return torch.cat(values) if isinstance(v, torch.Tensor) and v.dim() else v

    return {"state": {i: {key: join([s["state"][i][key] for s in states]) for key in st}
                      for i, st in states[0]["state"].items()},
            "param_groups": states[0]["param_groups"]}


def load(path: Any, weights: bool = False, **kwargs: Any) -> dict:
    """torch.load with weights_only; DamagedFile for a file that is cut short, not a checkpoint (`weights`: not a
    model's state_dict, as a lottery's rewind point is), or holds objects."""
    try:
        state = torch.load(path, weights_only=True, **kwargs)
    except FileNotFoundError:
        raise
    except Exception as exc:  # RuntimeError (zip archive cut short), UnpicklingError (an object), EOFError, ...
        raise DamagedFile(path, _why(exc, path)) from None
    if weights:
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise DamagedFile(path, "is not a model's weights (a state_dict of tensors)")
    elif not isinstance(state, dict) or not all(key in state for key in KEYS) or not (
            "scheduler" in state or "scheduler_epoch" in state):
        raise DamagedFile(path, "is not a gstc checkpoint (keys missing)")
    return state


def _why(exc: Exception, path: Any) -> str:
    """torch.load's failure in a few words (its messages run to several lines of advice)."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (f"holds a pickled {refused.group(1)} object, which a checkpoint never does "
                "(loading it with weights_only=True, as gstc does, refuses it)")
    if not zipfile.is_zipfile(path):  # a torch archive is a zip file, whose index is at its very end
        return "is cut short: it is not a complete torch archive (a copy or a disk that filled up?)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "no detail")
    first = _ESCAPES.sub("", first)[:200]  # torch colours its messages
    return f"cannot be loaded ({type(exc).__name__}: {first})"


def epoch_of(results: ResultsDir, run_id: str) -> int | None:
    """The epoch of a run's checkpoint (None: none yet); mmap reads the archive's index, not the tensors.
    DamagedFile when it cannot be loaded."""
    path = results.checkpoint(run_id)
    if not path.exists():
        return None
    return int(load(path, map_location="cpu", mmap=True)["epoch"])


class Checkpoints(Callback):
    """Saves every member still training after each epoch; `restore` loads them before the loop."""

    phase = CHECKPOINT

    def __init__(self, results: ResultsDir) -> None:
        self.results = results

    def epoch_end(self, trainer: Trainer, epoch: int, records: dict[int, EpochRecord]) -> None:
        model, opt = trainer.model.state_dict(), trainer.opt.state_dict()
        scheduler = trainer.sched.state_dict()
        for m in trainer.alive:
            state = {"epoch": epoch, "seconds": m.seconds, "model": member_state(model, m.k, trainer.pack),
                     "optimizer": optimizer_member(opt, m.k, trainer.pack), "scheduler": scheduler,
                     "pruner": m.pruner.state_dict(), "rng": torch.get_rng_state()}
            with atomic.replace(self.results.checkpoint(m.run.id)) as fh:
                torch.save(state, fh)

    def restore(self, trainer: Trainer) -> int | None:
        """Every member from its checkpoint (all at the same epoch: the worker packs them so); returns that
        epoch, or None when no member has one (a fresh start)."""
        paths = [self.results.checkpoint(m.run.id) for m in trainer.members]
        if not any(p.exists() for p in paths):
            return None
        states = [load(p, map_location=trainer.device) for p in paths]
        epochs = {int(s["epoch"]) for s in states}
        if len(epochs) != 1:
            raise ValueError(f"members of a pack must resume from the same epoch, found {sorted(epochs)}")
        trainer.model.load_state_dict(pack_states([s["model"] for s in states]))
        first = states[0]
        if "scheduler" in first:
            trainer.sched.load_state_dict(first["scheduler"])
        else:  # a gstc 0.1.0 checkpoint: replay the scheduler's steps (the optimizer's LR is loaded next)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": on purpose here
                for _ in range(int(first["scheduler_epoch"])):
                    trainer.sched.step()
        trainer.opt.load_state_dict(optimizer_pack([s["optimizer"] for s in states]))
        for m, s in zip(trainer.members, states):
            m.pruner.load_state_dict(s["pruner"])
            m.seconds = float(s["seconds"])
        torch.set_rng_state(first["rng"].cpu())
        return epochs.pop()
