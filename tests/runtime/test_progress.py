"""One progress sink: the driver tells it what it decided, and workers elsewhere reach it through the run folders,
with the same records the in-process trainer tells it."""

from __future__ import annotations

import pytest

from gstc.jsonio import append_jsonl, write_json
from gstc.paths import ResultsDir
from tests.runtime.conftest import compile_text, run_plan, spec_text

pytest.importorskip("torch")

from gstc.runtime.progress import FolderWatch, Progress  # noqa: E402


class Recorder(Progress):
    def __init__(self) -> None:
        self.told: list[tuple] = []

    def begin(self, plan, runs, todo, where):
        self.told.append(("begin", len(runs), [r.id for r in todo], where))

    def epoch(self, run, record):
        self.told.append(("epoch", run.id, record["epoch"]))

    def end_run(self, run, outcome):
        self.told.append(("end", run.id, outcome.status))


def test_the_watch_tells_each_epoch_once_and_each_run_once_it_ends(tmp_path):
    plan = compile_text(spec_text(epochs=3).replace("seeds: 1", "seeds: 2"))
    a, b = plan.runs
    results, sink = ResultsDir(tmp_path), Recorder()
    watch = FolderWatch(results, [a, b], sink, every=3600.0)  # s: only forced polls after the first
    write_json(results.run_json(a.id), {"id": a.id, "status": "running"})
    append_jsonl(results.epochs_jsonl(a.id), {"epoch": 1, "test_acc": 50.0, "train_acc": 60.0})
    watch.poll()
    watch.poll()  # within `every`: nothing read, nothing told twice
    append_jsonl(results.epochs_jsonl(a.id), {"epoch": 2, "test_acc": 51.0, "train_acc": 61.0})
    write_json(results.run_json(a.id), {"id": a.id, "status": "failed", "error": {"reason": "x", "epoch": 2}})
    write_json(results.run_json(b.id), {"id": b.id, "status": "done"})
    watch.poll(now=True)
    watch.poll(now=True)
    assert sink.told == [("epoch", a.id, 1), ("epoch", a.id, 2), ("end", a.id, "failed"), ("end", b.id, "done")]


def test_the_driver_decides_once_what_trains_and_tells_the_sink(tmp_path):
    plan = compile_text(spec_text(epochs=1).replace("seeds: 1", "seeds: 2"))
    results = ResultsDir(tmp_path)
    run_plan(plan, results, runs=plan.runs[:1])
    sink = Recorder()
    report, _ = run_plan(plan, results, progress=sink)
    first, second = plan.runs
    assert sink.told == [("begin", 2, [second.id], "cpu"), ("epoch", second.id, 1), ("end", second.id, "done")]
    assert set(report.outcomes) == {second.id} and report.outcomes[second.id].status == "done"
