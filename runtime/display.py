"""`gstc run`'s terminal display: a progress sink (gstc.runtime.progress) drawn with rich.

Two bars: the runs ended out of those to train, and the epochs recorded out of theirs,
with the last epoch's accuracies and an ETA; failed and damaged runs are said as they end.
Every executor feeds it the same way, so it looks the same here and on a cluster.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gstc.locks import describe
from gstc.paths import ResultsDir
from gstc.plan import Plan, PlanRun
from gstc.runtime.jobs import Outcome
from gstc.runtime.progress import Progress as Sink


class Display(Sink):
    """Use as a context manager around `gstc.runtime.driver.execute`."""

    def __init__(self, results: ResultsDir, console: Console | None = None) -> None:
        self.results = results
        self.console = console or Console(stderr=True)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        self.p = Progress(*columns, console=self.console, transient=False)
        self.runs = self.epochs = None

    def __enter__(self) -> "Display":
        self.p.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.p.__exit__(*exc)

    def begin(self, plan: Plan, runs: list[PlanRun], todo: list[PlanRun], where: str) -> None:
        self.p.console.print(escape(f"{plan.spec}: {len(runs)} runs, {len(runs) - len(todo)} already done, "
                                    f"{len(todo)} to train on {where}; results in {self.results.root}"))
        self.runs = self.p.add_task("runs", total=len(todo), info="")
        self.epochs = self.p.add_task("epochs", total=sum(r.epochs for r in todo), info="")

    def start_pack(self, runs: list[PlanRun], done_epochs: int) -> None:
        first = runs[0]
        more = f" + {len(runs) - 1} packed" if len(runs) > 1 else ""
        self.p.update(self.epochs, advance=done_epochs * len(runs),
                      description=escape(f"{first.config} seed {first.seed}{more}"))

    def epoch(self, run: PlanRun, record: dict) -> None:
        self.p.update(self.epochs, advance=1,
                      info=f"test {record['test_acc']:.2f}%  train {record['train_acc']:.2f}%")

    def end_run(self, run: PlanRun, outcome: Outcome) -> None:
        if outcome.status not in ("done", "failed", "damaged"):
            return  # stopped: its new holder goes on with it
        self.p.advance(self.runs)
        if outcome.status == "failed":
            reason = (outcome.info.get("error") or {}).get("reason", "")
            self.p.console.print(f"[red]run {run.id} failed[/]: {escape(str(reason))}")
        elif outcome.status == "damaged":
            self.p.console.print(f"[red]run {run.id} is damaged[/]: {escape(str(outcome.info.get('file')))} "
                                 f"{escape(str(outcome.info.get('reason')))}")

    def busy(self, run: PlanRun, holder: dict) -> None:
        self.p.advance(self.runs)
        self.p.console.print(f"run {run.id} ({escape(run.config)}, seed {run.seed}) is being trained by "
                             f"{escape(describe(holder))}: left to it")
