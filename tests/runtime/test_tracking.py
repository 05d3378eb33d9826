"""Trackers follow each run without touching it: TensorBoard's event files, read back with TensorBoard's own
EventAccumulator, hold every epoch and event once (a resumed run too), and a tracker that fails warns once."""

from __future__ import annotations

import pytest

from gstc.manifest import ResultsDir, read_json, read_jsonl

from tests.runtime.conftest import compile_text

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from gstc.runtime import tracking  # noqa: E402
from gstc.runtime.driver import execute  # noqa: E402
from gstc.runtime.executors.in_process import InProcess  # noqa: E402
from gstc.runtime.train import Trainer  # noqa: E402

SPEC = """
gstc: 1
name: tracked
seeds: 2
model: {arch: vgg11_bn, width: 0.125}
data: {dataset: digits}
train: {epochs: 3, batch_size: 256, optimizer: {name: adam, lr: 0.001}}
prune: {scoring: l1, schedule: {epochs: [2]}, layers: [{select: conv8, amount: 0.5}]}
"""


def tracked(plan, results: ResultsDir):
    executor = InProcess("cpu")
    executor.track = ["tensorboard"]
    return execute(plan, plan.runs, results, executor)


def scalars(results: ResultsDir, config: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(results.root / "tensorboard" / "tracked" / config / run_id))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_each_runs_epochs_and_events(tmp_path):
    plan = compile_text(SPEC)
    results = ResultsDir(tmp_path)
    report = tracked(plan, results)
    assert not report.failed and not report.unfinished
    for run in plan.runs:
        found = scalars(results, run.config, run.id)
        epochs = read_jsonl(results.epochs_jsonl(run.id))
        assert found["epoch/test_acc"] == [(e["epoch"], pytest.approx(e["test_acc"], rel=1e-6)) for e in epochs]
        event, = read_jsonl(results.events_jsonl(run.id))
        assert found["event/stability"] == [(2, pytest.approx(event["stability"], rel=1e-6))]
        assert found["kept/conv8"] == [(2, event["layers"][0]["kept"])]


def test_a_resumed_run_continues_its_tracked_run_without_doubled_epochs(tmp_path, monkeypatch):
    plan = compile_text(SPEC.replace("seeds: 2", "seeds: 1"))
    results = ResultsDir(tmp_path)
    original = Trainer.run_epoch

    def interrupted(self, epoch):  # killed during epoch 3, after epoch 2's records and checkpoint
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tracked(plan, results)
    monkeypatch.setattr(Trainer, "run_epoch", original)
    tracked(plan, results)
    run = plan.runs[0]
    assert read_json(results.run_json(run.id))["resumed_from"] == 2
    steps = [step for step, _ in scalars(results, run.config, run.id)["epoch/test_acc"]]
    assert steps == [1, 2, 3]


@pytest.mark.slow  # 2 s: two runs trained
def test_a_failing_tracker_warns_once_and_training_finishes(tmp_path, monkeypatch, capfd):
    plan = compile_text(SPEC)

    def down(self, run_id, step, metrics):
        raise OSError("the tracking server is down")

    monkeypatch.setattr(tracking.TensorBoard, "log", down)
    report = tracked(plan, ResultsDir(tmp_path))
    assert not report.failed and not report.unfinished
    err = capfd.readouterr().err
    assert err.count("warning: tracker tensorboard failed") == 1 and "the tracking server is down" in err


def test_unknown_and_missing_trackers_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match='unknown tracker \'tensorbord\' \\(did you mean "tensorboard"\\?\\)'):
        tracking.check(["tensorbord"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'gstc\[tensorboard\]'"):
        tracking.check(["tensorboard"])
