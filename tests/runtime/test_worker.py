"""The unit of work: a worker that loses a run's lock stops training it at the next epoch boundary, and a
checkpoint written by gstc 0.1.0 (the scheduler's epoch count, no state_dict) still resumes exactly."""

from __future__ import annotations

import os
import time

import pytest

from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir
from tests.runtime.conftest import compile_text, run_plan, spec_text
from tests.runtime.test_locks import lock_content

torch = pytest.importorskip("torch")

from gstc import locks  # noqa: E402
from gstc.runtime import worker  # noqa: E402
from gstc.runtime.progress import Progress  # noqa: E402


def numbers(results: ResultsDir, run_id: str):
    return ([{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(results.epochs_jsonl(run_id))],
            read_jsonl(results.events_jsonl(run_id)))


def test_a_run_whose_lock_is_taken_over_stops_at_the_next_epoch_boundary(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.HEARTBEAT_ENV, "0.05")  # seconds: the heartbeat notices the take-over at once
    plan = compile_text(spec_text("vgg11_bn", 0.125, "", epochs=3))
    (run,) = plan.runs
    results = ResultsDir(tmp_path)

    class Thief(Progress):
        """After epoch 1, another live worker (this test's parent process) takes the lock over."""

        def epoch(self, r, record):
            if record["epoch"] == 1:
                lock_content(results.lock(r.id), pid=os.getppid(), owner="thief")
                time.sleep(2.0)  # s: room for the heartbeat thread to notice, even on a loaded machine

    report, (info,) = run_plan(plan, results, progress=Thief())
    assert list(report.lost) == [run.id] and report.lost[run.id]["epoch"] == 1
    assert report.lost[run.id]["holder"].startswith("thief")
    assert info["status"] == "running"  # left to the new holder, which resumes it from epoch 1's checkpoint
    assert [r["epoch"] for r in read_jsonl(results.epochs_jsonl(run.id))] == [1]
    assert int(torch.load(results.checkpoint(run.id), weights_only=True)["epoch"]) == 1
    assert report.busy == {run.id: report.busy[run.id]} and report.unfinished == []
    assert locks.read_lock(results.lock(run.id))["owner"] == "thief"  # its lock is not released by the loser


def test_a_checkpoint_of_gstc_0_1_0_resumes_with_the_same_numbers(tmp_path):
    # Milestones 1 and 3: resumed after epoch 1, the run needs the decayed LR (the optimizer's, in the
    # checkpoint) and the scheduler's count, to decay again after epoch 3, not 2; 0.1.0 checkpoints held that
    # count as "scheduler_epoch" only.
    text = spec_text("vgg11_bn", 0.125, "prune:\n  layers:\n    - {select: conv8, amount: 0.5, schedule: {start: 1}}\n",
                     epochs=4).replace("lr: 0.001}", "lr: 0.002}, lr_schedule: {milestones: [1, 3]}")
    plan = compile_text(text)
    (run,) = plan.runs
    whole, resumed = ResultsDir(tmp_path / "whole"), ResultsDir(tmp_path / "resumed")
    run_plan(plan, whole)

    class Stop(Exception):
        pass

    class StopAfter1(Progress):
        def epoch(self, r, record):
            if record["epoch"] == 1:
                raise Stop

    with pytest.raises(Stop):
        run_plan(plan, resumed, progress=StopAfter1())
    state = torch.load(resumed.checkpoint(run.id), weights_only=True)
    assert state["scheduler"]["last_epoch"] == 1 and state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-4)
    legacy = {k: v for k, v in state.items() if k != "scheduler"} | {"scheduler_epoch": state["scheduler"]["last_epoch"]}
    torch.save(legacy, resumed.checkpoint(run.id))  # as gstc 0.1.0 wrote it
    report, (info,) = run_plan(plan, resumed)
    assert info["status"] == "done" and info["resumed_from"] == 1
    assert numbers(resumed, run.id) == numbers(whole, run.id)
    assert [r["lr"] for r in read_jsonl(resumed.epochs_jsonl(run.id))] == pytest.approx([2e-3, 2e-4, 2e-4, 2e-5])
    assert "scheduler" in torch.load(resumed.checkpoint(run.id), weights_only=True)  # rewritten in today's form
    assert read_json(resumed.run_json(run.id))["environment"]["gstc"]


@pytest.mark.slow  # 40 s: 3 runs of 3 epochs in float64, alone and as a pack split twice
def test_a_pack_out_of_memory_is_trained_again_in_halves_with_the_numbers_of_runs_alone(tmp_path, monkeypatch):
    """A pack that runs out of device memory (here: raised in its second epoch, as CUDA raises it) is not a failure of
    its runs: the worker trains it again in halves, each member from its last checkpoint, down to runs alone."""
    from gstc.runtime.train import Trainer

    text = spec_text("vgg11_bn", 0.125, "", epochs=3).replace("seeds: 1", "seeds: 3")
    plan = compile_text(text)
    alone = ResultsDir(tmp_path / "alone")
    run_plan(plan, alone, dtype=torch.float64)  # float64: a pack computes what its runs alone do up to rounding
    original = Trainer.run_epoch
    sizes = []

    def oom(self, epoch):
        sizes.append(len(self.members))
        if len(self.alive) > 1 and epoch == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", oom)
    packed = ResultsDir(tmp_path / "packed")
    report, infos = run_plan(plan, packed, dtype=torch.float64, pack=3)
    assert not report.failed and not report.unfinished and all(i["status"] == "done" for i in infos)
    assert sizes[:2] == [3, 3] and 2 in sizes and max(sizes[2:]) < 3  # 3, then 1 + 2, then the 2 as 1 + 1
    for run in plan.runs:
        assert read_json(packed.run_json(run.id))["resumed_from"] == 1  # from the checkpoint after epoch 1
        (got, _), (want, _) = numbers(packed, run.id), numbers(alone, run.id)
        assert [r["epoch"] for r in got] == [1, 2, 3]
        for a, b in zip(got, want):
            assert {k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for k, v in a.items()} == b


def test_fp32_on_cuda_is_fp32_and_run_json_says_so(monkeypatch):
    """cuDNN lets convolutions round to TF32 by default on Ampere and later: a CUDA device turns that off, for
    convolutions and matrix products, and the environment records it."""
    from gstc.runtime.environment import environment

    assert "tf32" not in environment(torch.device("cpu"))  # a CPU run's environment is as before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    # The two flags are properties of torch's backend modules, not entries of their __dict__: pytest 9.2's
    # monkeypatch would restore them by deleting the attribute, which those modules refuse. Plain assignment.
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        assert worker.resolve_device("cuda").type == "cuda"
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
