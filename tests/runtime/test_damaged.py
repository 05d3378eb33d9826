"""Damaged result files: a clear message naming the file and what to do, the run reported as damaged and left as
it is, and every other run trained; `gstc run --restart RUN_ID` trains it again from scratch."""

from __future__ import annotations

import collections
import shutil
import textwrap

import pytest
from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.jsonio import read_json, read_jsonl, write_json
from gstc.paths import ResultsDir

torch = pytest.importorskip("torch")

SPEC = textwrap.dedent("""\
    gstc: 1
    name: dmg
    seeds: 1
    model: {arch: vgg11_bn, width: 0.125}
    data: {dataset: digits}
    train: {epochs: 1, batch_size: 64, optimizer: {name: adam, lr: 0.002}}
    prune:
      layers:
        - {select: conv8, amount: 0.5, schedule: {start: 1}}
    variants:
      baseline: {prune: null}
      pruned: {}
    """)


def gstc(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Both runs trained once (the reference); each test damages a copy."""
    root = tmp_path_factory.mktemp("finished")
    (root / "dmg.yaml").write_text(SPEC)
    result = gstc("run", str(root / "dmg.yaml"), "--out", str(root / "results"), "--device", "cpu")
    assert result.exit_code == 0, result.output
    return root / "dmg.yaml", ResultsDir(root / "results"), compile_file(str(root / "dmg.yaml"))


@pytest.fixture
def copy(finished, tmp_path):
    spec, reference, plan = finished
    shutil.copytree(reference.root, tmp_path / "results")
    damaged, other = plan.runs
    results = ResultsDir(tmp_path / "results")
    shutil.rmtree(results.run_dir(other.id))  # not trained yet: it must train whatever happens to the other
    return spec, results, reference, damaged, other


def numbers(results: ResultsDir, run_id: str):
    return ([{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(results.epochs_jsonl(run_id))],
            read_jsonl(results.events_jsonl(run_id)))


def test_a_run_json_cut_short(copy):
    spec, results, reference, damaged, other = copy
    path = results.run_json(damaged.id)
    cut = path.read_bytes()[:100]
    path.write_bytes(cut)
    run = gstc("run", str(spec), "--out", str(results.root), "--device", "cpu")
    assert run.exit_code == 1
    assert (f"run {damaged.id} (baseline, seed 0) is damaged: {path} is not valid JSON" in run.stderr
            and f"--restart {damaged.id}` trains it again from scratch" in run.stderr), run.stderr
    assert "internal error" not in run.output and "Traceback" not in run.output
    assert read_json(results.run_json(other.id))["status"] == "done"  # the other run trained
    assert path.read_bytes() == cut  # the damaged file is left as it is
    status = gstc("status", str(spec), "--out", str(results.root))
    assert status.exit_code == 0, status.output
    assert "1 damaged, 1 done of 2 runs" in status.stdout and f"run {damaged.id} is damaged: {path}" in status.stdout
    report = gstc("report", str(spec), "--out", str(results.root))
    assert report.exit_code == 0, report.output
    assert "1/1 (1 damaged)" not in report.stdout and "0/1 (1 damaged)" in report.stdout
    assert f"run {damaged.id} (baseline, seed 0) is damaged, left out: {path}" in report.stderr


@pytest.mark.parametrize("damage, reason", [
    ("cut", "is cut short: it is not a complete torch archive"),
    ("object", "holds a pickled collections.deque object, which a checkpoint never does"),
])
def test_a_damaged_checkpoint_then_restart(copy, damage, reason):
    spec, results, reference, damaged, other = copy
    info = read_json(results.run_json(damaged.id))
    write_json(results.run_json(damaged.id), {**info, "status": "running"})  # killed before it wrote "done"
    ckpt = results.checkpoint(damaged.id)
    if damage == "cut":
        ckpt.write_bytes(ckpt.read_bytes()[:5000])
    else:  # what weights_only=True rightly refuses to unpickle
        torch.save({"epoch": 1, "hook": collections.deque([print])}, ckpt)
    before = ckpt.read_bytes()
    run = gstc("run", str(spec), "--out", str(results.root), "--device", "cpu")
    assert run.exit_code == 1
    assert f"run {damaged.id} (baseline, seed 0) is damaged: {ckpt} {reason}" in run.stderr, run.stderr
    assert read_json(results.run_json(other.id))["status"] == "done"
    assert ckpt.read_bytes() == before
    assert read_json(results.damaged_json(damaged.id))["file"] == str(ckpt)
    assert "1 damaged, 1 done of 2 runs" in gstc("status", str(spec), "--out", str(results.root)).stdout
    # --restart: the files go aside, the run trains from scratch, and gives the reference's numbers
    again = gstc("run", str(spec), "--out", str(results.root), "--device", "cpu", "--restart", damaged.id)
    assert again.exit_code == 0, again.output
    (aside,) = (results.root / "restarted").iterdir()
    assert aside.name.startswith(f"{damaged.id}.") and (aside / "checkpoint.pt").read_bytes() == before
    assert f"its files are now in {aside}" in again.stderr
    info = read_json(results.run_json(damaged.id))
    assert info["status"] == "done" and info["resumed_from"] is None
    assert numbers(results, damaged.id) == numbers(reference, damaged.id)
    assert not results.damaged_json(damaged.id).exists()


def test_restart_names_runs_of_the_plan_only(copy):
    spec, results, *_ = copy
    bad = gstc("run", str(spec), "--out", str(results.root), "--restart", "0123456789ab")
    assert bad.exit_code == 1 and "no run '0123456789ab' among the runs" in bad.stderr and "gstc status" in bad.stderr


def test_epoch_records_missing_behind_the_checkpoint_are_damage(copy):
    # A checkpoint after epoch 1 but no line of epoch 1: resuming would leave a hole in epochs.jsonl.
    from gstc.runtime.worker import inspect

    spec, results, reference, damaged, other = copy
    lines = results.epochs_jsonl(damaged.id).read_text()
    results.epochs_jsonl(damaged.id).write_text("")
    start, found = inspect(results, damaged.id)
    assert start is None and found == {"file": str(results.epochs_jsonl(damaged.id)),
                                       "reason": "has no record of epoch 1, which the checkpoint (epoch 1) has trained"}
    results.epochs_jsonl(damaged.id).write_text(lines)
    assert inspect(results, damaged.id) == (1, None)


def test_restart_leaves_a_run_that_a_live_worker_trains(copy):
    from gstc.claims import claim_runs

    spec, results, reference, damaged, other = copy
    with claim_runs(results, [damaged.id]):  # a live worker holds it
        held = gstc("run", str(spec), "--out", str(results.root), "--device", "cpu", "--restart", damaged.id)
    assert held.exit_code == 1 and f"run {damaged.id} is being trained by" in held.stderr, held.output
    assert results.run_json(damaged.id).exists() and not (results.root / "restarted").exists()  # nothing moved
