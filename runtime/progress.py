"""`gstc run`'s terminal display: overall runs, the current run's epochs, ETA, last accuracy.

In-process runs report each epoch through callbacks; runs trained by workers elsewhere
(`--gpus`, Ray, Slurm) are followed by reading their run folders every few seconds.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gstc.manifest import ResultsDir, run_status
from gstc.plan import Plan, PlanRun
from gstc.runtime.driver import execute
from gstc.runtime.executors import Executor, Report
from gstc.runtime.executors.in_process import InProcess
from gstc.locks import describe
from gstc.runtime.worker import Outcome, Progress as WorkerProgress, Quiet


class _Display(WorkerProgress):
    def __init__(self, progress: Progress, total: int):
        self.p = progress
        self.overall = progress.add_task("runs", total=total, info="")
        self.current = progress.add_task("", total=1, info="", visible=False)
        self.shown = ""

    def start_pack(self, runs: list[PlanRun], done_epochs: int) -> None:
        first = runs[0]
        more = f" + {len(runs) - 1} packed" if len(runs) > 1 else ""
        self.shown = first.id  # the bar follows the pack's first member; the others advance with it
        self.p.reset(self.current, total=first.epochs, completed=done_epochs, visible=True,
                     description=escape(f"{first.config} seed {first.seed}{more}"), info="")

    def epoch(self, run: PlanRun, record: dict) -> None:
        if run.id == self.shown:
            self.p.update(self.current, completed=record["epoch"],
                          info=f"test {record['test_acc']:.2f}%  train {record['train_acc']:.2f}%")

    def end_run(self, run: PlanRun, outcome: Outcome) -> None:
        self.p.advance(self.overall)
        if outcome.status == "failed":
            self.p.console.print(f"[red]run {run.id} failed[/]: {escape(outcome.info['error']['reason'])}")

    def busy(self, run: PlanRun, holder: dict) -> None:
        self.p.advance(self.overall)
        self.p.console.print(f"run {run.id} ({escape(run.config)}, seed {run.seed}) is being trained by "
                             f"{escape(describe(holder))}: left to it")

    def damaged(self, run: PlanRun, damage: dict) -> None:
        self.p.advance(self.overall)
        self.p.console.print(f"[red]run {run.id} is damaged[/]: {escape(damage['file'])} {escape(damage['reason'])}")


class _Poller:
    """For workers elsewhere (processes, Ray, Slurm): runs finished and epochs written, read from the run folders."""

    def __init__(self, progress: Progress, runs: list[PlanRun], results: ResultsDir, every: float = 5.0) -> None:
        self.p, self.results, self.every = progress, results, every
        self.open = {r.id: r for r in runs}
        self.epochs: dict[str, int] = {}
        self.overall = progress.add_task("runs", total=len(runs), info="")
        self.current = progress.add_task("epochs", total=sum(r.epochs for r in runs), info="")
        self.last = 0.0

    def tick(self) -> None:
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        for rid in list(self.open):
            try:
                self.epochs[rid] = self.results.epochs_jsonl(rid).read_bytes().count(b"\n")
                status = run_status(self.results, rid)
            except (OSError, ValueError):  # mid-write on shared storage: next time
                continue
            if status in ("done", "failed", "damaged"):
                del self.open[rid]
                self.p.advance(self.overall)
                if status in ("failed", "damaged"):
                    self.p.console.print(f"[red]run {rid} {status}[/]")
        self.p.update(self.current, completed=sum(self.epochs.values()))


def run_with_progress(plan: Plan, runs: list[PlanRun], results: ResultsDir, executor: Executor,
                      pack: int | str = 1) -> Report:
    """Run with a live display; returns the executor's report (failed, unfinished and busy runs, worker errors)."""
    console = Console(stderr=True)
    todo = [r for r in runs if run_status(results, r.id) != "done"]
    where = executor.device if executor.name == "local" else f"{executor.name} workers ({executor.device})"
    console.print(f"{plan.spec}: {len(runs)} runs, {len(runs) - len(todo)} already done, {len(todo)} to train on {where}; "
                  f"results in {results.root}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        if isinstance(executor, InProcess):
            display, tick = _Display(progress, len(todo)), (lambda: None)
        else:
            display, poller = Quiet(), _Poller(progress, todo, results)
            tick = poller.tick
        report = execute(plan, todo, results, executor, pack, display, tick)
        if not isinstance(executor, InProcess):
            poller.last = 0.0
            poller.tick()
    console.print(f"manifest: {results.manifest_json(plan.spec)}")
    return report
