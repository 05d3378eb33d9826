"""Trackers follow each run without touching it: TensorBoard's event files, read back with TensorBoard's own
EventAccumulator, an MLflow server, and W&B's offline run files, read back record by record, hold every epoch and
event once (a resumed run too), and a tracker that fails warns once."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.request
import zlib
from pathlib import Path

import pytest

from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir

from tests.runtime.conftest import compile_text

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from gstc.runtime import tracking, wandb_tracker  # noqa: E402
from gstc.runtime.driver import execute  # noqa: E402
from gstc.runtime.executors.in_process import InProcess  # noqa: E402
from gstc.executor_options import LocalOptions  # noqa: E402
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
    return execute(plan, plan.runs, results, InProcess(LocalOptions(device="cpu", track=names)))


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


@pytest.mark.slow  # 2 s: two runs trained (wandb: 3 s)
@pytest.mark.parametrize("name", ["tensorboard", "wandb"])
def test_a_failing_tracker_warns_once_and_training_finishes(name, tmp_path, monkeypatch, capfd, request):
    if name == "wandb":
        request.getfixturevalue("wandb_offline")
    plan = compile_text(SPEC)

    def down(self, run_id, step, metrics):
        raise OSError("the tracking server is down")

    monkeypatch.setattr(tracking.BUILT_IN[name], "log", down)
    report = tracked(plan, ResultsDir(tmp_path), (name,))
    assert not report.failed and not report.unfinished
    err = capfd.readouterr().err
    assert err.count(f"warning: tracker {name} failed") == 1 and "the tracking server is down" in err


def test_unknown_and_missing_trackers_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match='unknown tracker \'tensorbord\' \\(did you mean "tensorboard"\\?\\)'):
        tracking.check(["tensorbord"])
    with pytest.raises(ValueError, match='unknown tracker \'wandbb\' \\(did you mean "wandb"\\?\\)'):
        tracking.check(["wandbb"])
    import importlib.util

    real = importlib.util.find_spec
    hidden = {"tensorboard", "wandb"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'gstc\[tensorboard\]'"):
        tracking.check(["tensorboard"])
    with pytest.raises(ValueError, match=r"wandb needs wandb, which is not installed: pip install 'gstc\[wandb\]'"):
        tracking.check(["wandb"])


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


# --- Weights & Biases, offline: no account, no network --------------------------------------------------------


BLOCK = 32768  # W&B's .wandb files: a leveldb log of 32 KiB blocks, each record in checksummed chunks


def wandb_records(path: Path):
    """The records of a .wandb file, each parsed by W&B's own protobuf message (wandb 0.31 has no Python reader of
    the framing any more: it is read here, each chunk's checksum checked)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:6] == struct.pack("<4sH", b":W&B", 0xBEE1)
    pos, payload = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a chunk header: zeros
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0:  # the zeros after a block's last chunk
            pos += BLOCK - pos % BLOCK
            continue
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc
        pos += 7 + length
        payload = chunk if kind in (1, 2) else payload + chunk  # full, first; middle, last
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(payload)
            yield record


def wandb_folders(results: ResultsDir, run_id: str) -> list[Path]:
    """The offline folders of a W&B run, one per training call."""
    found = (results.root / "wandb" / "wandb").glob("offline-run-*")
    return sorted(folder for folder in found if (folder / f"run-{run_id}.wandb").exists())


def wandb_rows(folders: list[Path]) -> list[tuple[int, dict[str, float]]]:
    """Every history row of these folders: (step, {metric: value}), W&B's own keys (_step, _runtime...) left out."""
    rows = []
    for folder in folders:
        for record in wandb_records(next(folder.glob("*.wandb"))):
            if record.HasField("history"):
                items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item}
                rows.append((record.history.step.num, {k: v for k, v in items.items() if not k.startswith("_")}))
    return rows


def series(rows: list[tuple[int, dict[str, float]]], metric: str) -> list[tuple[int, float]]:
    return sorted((step, row[metric]) for step, row in rows if metric in row)


def test_wandb_commits_an_epochs_row_at_its_end_so_a_resumed_run_logs_each_epoch_once(tmp_path, wandb_offline):
    results = ResultsDir(tmp_path / "results")
    params = {"train": {"optimizer": {"lr": 0.001}}}
    first = wandb_tracker.WandB(results, "tracked")
    first.open("run1", "default", params, None)
    first.log("run1", 0, {"event/stability": 1.0})  # pruning at initialization
    first.log("run1", 0, {})  # epoch 0 ends (checkpointed) without a record
    first.log("run1", 1, {"epoch/test_acc": 10.0})
    first.log("run1", 2, {"event/stability": 0.5})
    first.log("run1", 2, {"epoch/test_acc": 20.0})
    first.log("run1", 3, {"event/stability": 0.25})  # killed here, in epoch 3 after its event: never closed
    second = wandb_tracker.WandB(results, "tracked")  # the same process trains it again, from epoch 2's checkpoint
    second.open("run1", "default", params, 2)
    second.log("run1", 3, {"event/stability": 0.25})
    second.log("run1", 3, {"epoch/test_acc": 30.0})
    second.close("run1", "done")
    first_folder, second_folder = folders = wandb_folders(results, "run1")
    assert wandb_rows([first_folder]) == [(0, {"event/stability": 1.0}), (1, {"epoch/test_acc": 10.0}),
                                          (2, {"event/stability": 0.5, "epoch/test_acc": 20.0})]
    assert wandb_rows([second_folder]) == [(3, {"event/stability": 0.25, "epoch/test_acc": 30.0})]
    exits = [r.exit.exit_code for f in folders for r in wandb_records(next(f.glob("*.wandb"))) if r.HasField("exit")]
    assert exits == [1, 0]  # the interrupted call's run finished when the next call opened it again


@pytest.mark.slow  # 4 s: two runs trained, each a W&B run
def test_wandb_offline_runs_hold_each_runs_config_epochs_events_and_files(tmp_path, wandb_offline, capfd):
    plan = compile_text(SPEC)
    results = ResultsDir(tmp_path / "results")
    report = tracked(plan, results, ("wandb",))
    assert not report.failed and not report.unfinished
    for run in plan.runs:
        folder, = wandb_folders(results, run.id)
        assert folder.name.startswith("offline-run-") and folder.name.endswith(run.id)
        records = list(wandb_records(folder / f"run-{run.id}.wandb"))
        meta, = [r.run for r in records if r.HasField("run")]
        assert (meta.run_id, meta.display_name, meta.project, meta.run_group) == (run.id, run.id, "tracked", "default")
        config = {item.key: json.loads(item.value_json) for item in meta.config.update}
        assert config["train"]["optimizer"]["lr"] == 0.001
        rows = wandb_rows([folder])
        epochs = read_jsonl(results.epochs_jsonl(run.id))
        assert series(rows, "epoch/test_acc") == [(e["epoch"], pytest.approx(e["test_acc"])) for e in epochs]
        event, = read_jsonl(results.events_jsonl(run.id))
        assert series(rows, "event/stability") == [(2, pytest.approx(event["stability"]))]
        assert series(rows, "kept/conv8") == [(2, event["layers"][0]["kept"])]
        saved = {f.path for r in records if r.HasField("files") for f in r.files.files}
        assert {"run.json", "epochs.jsonl"} <= saved
        assert (folder / "files" / "run.json").read_bytes() == results.run_json(run.id).read_bytes()
        assert (folder / "files" / "epochs.jsonl").read_bytes() == results.epochs_jsonl(run.id).read_bytes()
        exit_code, = [r.exit.exit_code for r in records if r.HasField("exit")]
        assert exit_code == 0
    out, err = capfd.readouterr()
    assert "wandb" not in out and "wandb" not in err  # no banner, no login prompt, no warning


@pytest.mark.slow  # 3 s: a run trained twice (killed after epoch 3's pruning event, then resumed)
def test_a_resumed_run_continues_its_wandb_run_with_each_epoch_once(tmp_path, wandb_offline, monkeypatch):
    plan = compile_text(SPEC.replace("seeds: 2", "seeds: 1").replace("epochs: [2]", "epochs: [2, 3]"))
    results = ResultsDir(tmp_path / "results")
    original = Trainer.event

    def killed(self, member, record):  # epoch 3's pruning event reaches the trackers, then the job is killed
        original(self, member, record)
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "event", killed)
    with pytest.raises(KeyboardInterrupt):
        tracked(plan, results, ("wandb",))
    monkeypatch.setattr(Trainer, "event", original)
    report = tracked(plan, results, ("wandb",))
    assert not report.failed and not report.unfinished
    run = plan.runs[0]
    assert read_json(results.run_json(run.id))["resumed_from"] == 2
    folders = wandb_folders(results, run.id)
    assert len(folders) == 2  # one per call, the same W&B run id: `wandb sync` replays them in order
    rows = wandb_rows(folders)
    epochs = read_jsonl(results.epochs_jsonl(run.id))
    assert series(rows, "epoch/test_acc") == [(e["epoch"], pytest.approx(e["test_acc"])) for e in epochs]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    events = read_jsonl(results.events_jsonl(run.id))
    assert series(rows, "event/stability") == [(e["epoch"], pytest.approx(e["stability"])) for e in events]
    assert [e["epoch"] for e in events] == [2, 3]
