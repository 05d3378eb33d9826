"""`gstc run`'s terminal display: overall runs, the current run's epochs, ETA, last accuracy."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gstc.manifest import ResultsDir
from gstc.plan import Plan, PlanRun
from runtime import executors


class _Display(executors.Progress):
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

    def end_run(self, run: PlanRun, status: dict) -> None:
        self.p.advance(self.overall)
        if status["status"] == "failed":
            self.p.console.print(f"[red]run {run.id} failed[/]: {escape(status['error']['reason'])}")


def run_with_progress(plan: Plan, runs: list[PlanRun], results: ResultsDir, device_name: str,
                      pack: int | str = 1) -> list[dict]:
    """Run with a live display; returns the run.json of every run that failed."""
    device = executors.resolve_device(device_name)
    console = Console(stderr=True)
    todo = [r for r in runs if executors.run_status(results, r.id) != "done"]
    console.print(f"{plan.spec}: {len(runs)} runs, {len(runs) - len(todo)} already done, {len(todo)} to train on {device}; "
                  f"results in {results.root}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        outcomes = executors.run_local(plan, todo, results, device, _Display(progress, len(todo)), pack=pack)
    console.print(f"manifest: {results.manifest_json(plan.spec)}")
    return [o for o in outcomes if o["status"] == "failed"]
