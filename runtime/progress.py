"""The one progress sink: what every executor tells as the runs go, and the watch that tells it for workers elsewhere.

The driver hands each executor a `Progress`. The in-process executor feeds it from the
trainer's callbacks; the executors whose workers run elsewhere (worker processes, Ray,
Slurm) feed it through a `FolderWatch`, which reads the run folders every few seconds
(the folders, not the workers' memory, are what a run has done). `gstc run`'s display
(gstc.runtime.display) is one such sink; `Quiet` is the sink that says nothing.
"""

from __future__ import annotations

import time
from typing import Protocol

from gstc.jsonio import read_jsonl
from gstc.paths import ResultsDir
from gstc.runstate import run_state
from gstc.plan import Plan, PlanRun
from gstc.runtime.jobs import Outcome


class Progress(Protocol):
    """What the runs tell as they go; subclass for the no-op defaults."""

    def begin(self, plan: Plan, runs: list[PlanRun], todo: list[PlanRun], where: str) -> None:
        """The driver's decision: of `runs`, `todo` are not done and train on `where`."""

    def start_pack(self, runs: list[PlanRun], done_epochs: int) -> None:
        """A pack starts training here, from epoch `done_epochs` (in-process only)."""

    def epoch(self, run: PlanRun, record: dict) -> None:
        """A run finished an epoch (its epochs.jsonl record), after its files and checkpoint were written."""

    def end_run(self, run: PlanRun, outcome: Outcome) -> None:
        """A run ended: done, failed, damaged, or stopped (another worker took over its lock)."""

    def busy(self, run: PlanRun, holder: dict) -> None:
        """Another live worker holds the run's lock (holder: the lock's content): it is left to that worker."""


class Quiet(Progress):
    """Says nothing."""


class FolderWatch:
    """For workers elsewhere: the epochs recorded and the runs ended, read from the run folders and told to
    `progress`, at most every `every` seconds (shared storage is not free to read)."""

    def __init__(self, results: ResultsDir, runs: list[PlanRun], progress: Progress, every: float = 5.0) -> None:
        self.results, self.progress, self.every = results, progress, every
        self.open = {r.id: r for r in runs}
        self.seen: dict[str, int] = {}  # run id -> epoch records already told
        self.last = float("-inf")

    def poll(self, now: bool = False) -> None:
        """Tell what changed since the last poll; `now`: whatever the time since it (the last poll of a run)."""
        if not now and time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        for rid, run in list(self.open.items()):
            try:
                records = read_jsonl(self.results.epochs_jsonl(rid))
                status, info, damage = run_state(self.results, rid)
            except (OSError, ValueError):  # mid-write on shared storage: next time
                continue
            for record in records[self.seen.get(rid, 0):]:
                self.progress.epoch(run, record)
            self.seen[rid] = len(records)
            if status in ("done", "failed", "damaged"):
                del self.open[rid]
                self.progress.end_run(run, Outcome(run=run, status=status, info=damage or info or {}))
