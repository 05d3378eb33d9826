"""`gstc run SPEC --track NAME` as a user runs it, killed with SIGKILL in the middle of a run and run again: each
tracker holds one tracked run per gstc run, and every epoch of it exactly once, read back with the tracker's reader."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir
from tests.conftest import REPO, write

pytestmark = pytest.mark.slow  # 20-40 s each: gstc run started twice, a tracker's reader (and an mlflow server)

SPEC = """\
gstc: 1
name: tracked-cli
seeds: 2
model: {arch: vgg11_bn, width: 0.125}
data: {dataset: digits}
train: {epochs: 4, batch_size: 256, optimizer: {name: adam, lr: 0.001}}
prune: {scoring: l1, schedule: {epochs: [2]}, layers: [{select: conv8, amount: 0.5}]}
"""


def gstc_run(spec, results: ResultsDir, name: str, env: dict, kill_at: tuple[str, int] | None = None):
    """`gstc run SPEC --track NAME`; with kill_at=(run id, n), SIGKILL once that run has n epochs on record."""
    proc = subprocess.Popen([sys.executable, "-m", "gstc", "run", str(spec), "--out", str(results.root),
                             "--device", "cpu", "--track", name], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_at is not None:
        run_id, epochs = kill_at
        path = results.epochs_jsonl(run_id)
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            if path.exists() and len(path.read_text().splitlines()) >= epochs:
                proc.kill()  # SIGKILL: no handler runs, no tracked run is closed
                break
            time.sleep(0.05)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def killed_and_rerun(tmp_path, name: str, env: dict):
    from gstc.compile import compile_file

    spec = write(tmp_path, SPEC, "tracked-cli.yaml")
    plan = compile_file(str(spec))
    results = ResultsDir(tmp_path / "results")
    second = plan.runs[1].id
    rc, err = gstc_run(spec, results, name, env, kill_at=(second, 2))
    assert rc == -9, err
    rc, err = gstc_run(spec, results, name, env)
    assert rc == 0 and "warning" not in err, err
    assert read_json(results.run_json(second))["resumed_from"] >= 1  # killed mid-run, resumed from a checkpoint
    return plan, results


def expected(results: ResultsDir, run_id: str) -> list[tuple[int, float]]:
    return [(e["epoch"], pytest.approx(e["test_acc"], rel=1e-6)) for e in read_jsonl(results.epochs_jsonl(run_id))]


def test_tensorboard_after_a_kill(tmp_path):
    import os

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plan, results = killed_and_rerun(tmp_path, "tensorboard", dict(os.environ))
    folders = sorted((results.root / "tensorboard" / "tracked-cli").glob("*/*"))
    assert sorted(f.name for f in folders) == sorted(r.id for r in plan.runs)
    for folder in folders:
        acc = EventAccumulator(str(folder))
        acc.Reload()
        assert [(e.step, e.value) for e in acc.Scalars("epoch/test_acc")] == expected(results, folder.name)


def test_mlflow_server_after_a_kill(tmp_path):
    import os

    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from tests.runtime.test_tracking import start_mlflow, stop

    uri, server = start_mlflow(tmp_path)
    try:
        plan, results = killed_and_rerun(tmp_path, "mlflow", {**os.environ, "MLFLOW_TRACKING_URI": uri})
        client = MlflowClient(uri)
        found = client.search_runs([client.get_experiment_by_name("tracked-cli").experiment_id])
        assert sorted(r.info.run_name for r in found) == sorted(r.id for r in plan.runs)  # no duplicate
        for one in found:
            assert one.info.status == "FINISHED"
            history = client.get_metric_history(one.info.run_id, "epoch/test_acc")
            assert sorted((m.step, m.value) for m in history) == expected(results, one.info.run_name)
    finally:
        stop(server)


def test_wandb_offline_after_a_kill(tmp_path, wandb_offline):
    import os

    from tests.runtime.test_tracking import series, wandb_folders, wandb_rows

    plan, results = killed_and_rerun(tmp_path, "wandb", dict(os.environ))
    for run in plan.runs:
        folders = wandb_folders(results, run.id)
        assert len(folders) == (2 if run == plan.runs[1] else 1)  # the killed run: a folder per call, one run id
        assert series(wandb_rows(folders), "epoch/test_acc") == expected(results, run.id)

