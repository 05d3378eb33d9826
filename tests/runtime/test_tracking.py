"""Trackers follow each run without touching it: TensorBoard's event files, read back with TensorBoard's own
EventAccumulator, hold every epoch and event once (a resumed run too), and a tracker that fails warns once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request

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


def tracked(plan, results: ResultsDir, names: tuple[str, ...] = ("tensorboard",)):
    """What `gstc run --track NAME...` runs, here."""
    executor = InProcess("cpu")
    executor.track = list(names)
    return execute(plan, plan.runs, results, executor)


def scalars(results: ResultsDir, config: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(results.root / "tensorboard" / "tracked" / config / run_id))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow  # trains runs: with the slow tests (the default run stays under 4 minutes)
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


@pytest.mark.slow  # trains runs: with the slow tests (the default run stays under 4 minutes)
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


# --- MLflow, against a real `mlflow server` on 127.0.0.1 ------------------------------------------------------


def start_mlflow(folder) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
                             "--artifacts-destination", str(folder / "artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
                            start_new_session=True)  # its own process group: the server and its workers die together
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                return uri, proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise AssertionError("mlflow server did not answer within 90 s")


def stop(server) -> None:
    """SIGKILL the mlflow server and every worker it started."""
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait()


@pytest.mark.slow  # 30 s: an mlflow server, and a spec trained twice (interrupted, then resumed)
def test_mlflow_server_holds_each_run_once_with_every_epoch_after_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri, server = start_mlflow(tmp_path)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        plan = compile_text(SPEC)
        results = ResultsDir(tmp_path / "results")
        original = Trainer.run_epoch

        def interrupted(self, epoch):  # the second run killed during epoch 3, after epoch 2's checkpoint
            if epoch == 3 and self.runs[0].id == plan.runs[1].id:
                raise KeyboardInterrupt
            return original(self, epoch)

        monkeypatch.setattr(Trainer, "run_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            tracked(plan, results, ("mlflow",))
        monkeypatch.setattr(Trainer, "run_epoch", original)
        report = tracked(plan, results, ("mlflow",))
        assert not report.failed and not report.unfinished
        client = MlflowClient(uri)
        found = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
        assert sorted(r.info.run_name for r in found) == sorted(r.id for r in plan.runs)  # one tracked run each
        for one in found:
            run_id = one.info.run_name
            assert one.info.status == "FINISHED" and one.data.tags["gstc.config"] == "default"
            history = client.get_metric_history(one.info.run_id, "epoch/test_acc")
            epochs = read_jsonl(results.epochs_jsonl(run_id))
            assert [(m.step, m.value) for m in history] == [(e["epoch"], pytest.approx(e["test_acc"])) for e in epochs]
            assert one.data.params["train.optimizer.lr"] == "0.001"
            assert {a.path for a in client.list_artifacts(one.info.run_id)} == {"run.json", "epochs.jsonl"}
        assert read_json(results.run_json(plan.runs[1].id))["resumed_from"] == 2
    finally:
        stop(server)


@pytest.mark.slow  # 20 s: an mlflow server killed while a spec trains
def test_a_tracking_server_killed_mid_run_costs_one_warning_and_no_run(tmp_path, monkeypatch, capfd):
    pytest.importorskip("mlflow")
    uri, server = start_mlflow(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    plan = compile_text(SPEC)
    original = Trainer.run_epoch

    def kill_server(self, epoch):
        if epoch == 2 and server.poll() is None:
            stop(server)
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", kill_server)
    report = tracked(plan, ResultsDir(tmp_path / "results"), ("mlflow",))
    assert not report.failed and not report.unfinished
    err = capfd.readouterr().err
    assert err.count("warning: tracker mlflow failed") == 1, err
    stop(server)


@pytest.mark.slow  # 10 s: two runs trained
def test_without_a_tracking_uri_mlflow_keeps_the_runs_in_its_default_local_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's default store is in the current folder
    plan = compile_text(SPEC)
    tracked(plan, ResultsDir(tmp_path / "results"), ("mlflow",))
    client = MlflowClient()
    found = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert sorted(r.info.run_name for r in found) == sorted(r.id for r in plan.runs)
    assert all(len(client.get_metric_history(r.info.run_id, "epoch/test_acc")) == 3 for r in found)
