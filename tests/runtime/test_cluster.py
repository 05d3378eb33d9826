"""Executors on the CPU: every executor gives the local executor's numbers, retries and kills
resume from checkpoints, concurrent `gstc run`s train each run once, and clear errors.

The tests that start Ray, submitit jobs or worker processes take 10-35 s each (Ray's start
alone about 20 s): they are marked slow (`python -m pytest -m slow`); the errors, the status
display and the lazy imports stay in the default run.

Every process trains with one thread (OMP_NUM_THREADS=1), so numbers are bit-identical
across processes; a Ray session is shared by the module (start-up costs seconds).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gstc.compile import compile_file
from gstc.jsonio import read_json, read_jsonl
from gstc.paths import ResultsDir
from tests.conftest import REPO

torch = pytest.importorskip("torch")

from gstc.executor_options import RayOptions, SlurmOptions  # noqa: E402
from gstc.runtime.driver import build, execute  # noqa: E402
from gstc.runtime.executors import ExecutorError  # noqa: E402
from gstc.runtime.executors.slurm import parse_slurm_time  # noqa: E402
from gstc.runtime.executors.worker_pool import WorkerPool  # noqa: E402

EPOCHS = 3
SPEC = textwrap.dedent(f"""\
    gstc: 1
    name: spread
    seeds: 2
    model: {{arch: vgg11_bn, width: 0.125}}
    data: {{dataset: digits}}
    train:
      epochs: {EPOCHS}
      batch_size: 64
      optimizer: {{name: adam, lr: 0.002}}
    prune:
      schedule: {{start: 1, end: 2, every: 1}}
      layers:
        - {{select: conv8, amount: 0.5}}
    variants:
      baseline: {{prune: null}}
      pruned: {{}}
    """)


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)


def gstc(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gstc", *args], capture_output=True, text=True, env=env(), cwd=REPO,
                          **kw)


def numbers(results: ResultsDir, run_id: str) -> tuple[list[dict], list[dict]]:
    """epochs.jsonl without timings, and events.jsonl: what every executor must agree on."""
    epochs = [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(results.epochs_jsonl(run_id))]
    return epochs, read_jsonl(results.events_jsonl(run_id))


def claims(results: ResultsDir, run_id: str) -> list[dict]:
    return read_jsonl(results.claims_jsonl(run_id))


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "spread.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def plan(spec):
    return compile_file(str(spec))


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory) -> ResultsDir:
    """The spec run by the default local executor, in one process."""
    root = tmp_path_factory.mktemp("local") / "results"
    proc = gstc("run", str(spec), "--out", str(root), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return ResultsDir(root)


def assert_same_numbers(plan, results: ResultsDir, reference: ResultsDir) -> None:
    for run in plan.runs:
        assert read_json(results.run_json(run.id))["status"] == "done"
        epochs, events = numbers(results, run.id)
        assert len(epochs) == EPOCHS
        assert (epochs, events) == numbers(reference, run.id), f"{run.config} seed {run.seed}"
    manifest = json.loads(results.manifest_json(plan.spec).read_text())
    assert [r["summary"] for r in manifest["runs"]] == [
        r["summary"] for r in json.loads(reference.manifest_json(plan.spec).read_text())["runs"]]
    assert not list(results.runs_dir.glob("*/lock.json"))  # every lock released


@pytest.fixture
def single_threaded(monkeypatch):
    """Worker processes started from this one (pool, submitit) train with one thread, like the reference."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))


# --- Ray -----------------------------------------------------------------------------------




@pytest.mark.slow
def test_ray_gives_the_local_numbers(ray_session, plan, reference, tmp_path):
    results = ResultsDir(tmp_path / "ray")
    executor = build(RayOptions(device="cpu"))
    assert executor.num_gpus == 0 and executor.device == "cpu"
    report = execute(plan, plan.runs, results, executor)
    assert report.errors == [] and report.failed == report.unfinished == [] and report.busy == {}
    assert_same_numbers(plan, results, reference)
    for run in plan.runs:
        info = read_json(results.run_json(run.id))
        assert info["resumed_from"] is None and len(claims(results, run.id)) == 1
        assert info["environment"]["threads"] == 1


@pytest.mark.slow
def test_a_ray_task_that_fails_once_is_retried_and_resumes(ray_session, plan, reference, tmp_path):
    ray, marker = ray_session
    marker.touch()  # the first training of epoch 2, in whichever worker, raises OSError
    results = ResultsDir(tmp_path / "ray")
    report = execute(plan, plan.runs, results, build(RayOptions(device="cpu")))
    assert not marker.exists(), "the failure was not injected"
    assert report.errors == [] and report.failed == report.unfinished == []
    assert_same_numbers(plan, results, reference)
    retried = [r for r in plan.runs if len(claims(results, r.id)) == 2]
    assert len(retried) == 1  # one pack (of one run) failed once; the retry claimed it again...
    (run,) = retried
    assert [c["from_epoch"] for c in claims(results, run.id)] == [0, 1]  # ...and resumed after epoch 1
    assert read_json(results.run_json(run.id))["resumed_from"] == 1
    assert all(len(claims(results, r.id)) == 1 for r in plan.runs if r is not run)


@pytest.mark.slow
def test_killing_a_ray_worker_mid_run_loses_at_most_the_current_epoch(ray_session, plan, reference, tmp_path):
    # the Ray worker training the last run is killed; Ray retries its task
    execute_killing_one_worker(plan, ResultsDir(tmp_path / "ray"), build(RayOptions(device="cpu")), reference,
                               timeout=180)


@pytest.mark.slow
@pytest.mark.parametrize("pack, tasks, size", [(2, 2, 2), ("auto", 1, 1)])
def test_packs_on_ray_workers(ray_session, plan, tmp_path, pack, tasks, size):
    # --pack K: the driver's packs, one task each. --pack auto: one task per chunk of compatible runs,
    # which the worker packs by its own device (a CPU: one run at a time).
    results = ResultsDir(tmp_path / "ray")
    executor = build(RayOptions(device="cpu"))
    assert [len(j.runs) for j in executor.jobs(plan, plan.runs, results, pack)] == [len(plan.runs) // tasks] * tasks
    report = execute(plan, plan.runs, results, executor, pack)
    assert report.errors == [] and report.unfinished == []
    for run in plan.runs:
        info = read_json(results.run_json(run.id))
        assert info["status"] == "done" and info["pack"]["size"] == size and run.id in info["pack"]["runs"]
        assert len(read_jsonl(results.epochs_jsonl(run.id))) == EPOCHS


@pytest.mark.slow
def test_ray_refuses_gpu_tasks_on_a_cluster_without_gpus(ray_session):
    with pytest.raises(ExecutorError, match="has no GPUs.*would wait forever"):
        build(RayOptions(device="cuda"))
    with pytest.raises(ExecutorError, match="--gpus-per-task"):
        build(RayOptions(device="cpu", gpus_per_task=0.5))
    with pytest.raises(ExecutorError, match="Ray assigns each task its GPU"):
        build(RayOptions(device="cuda:1"))


# --- Slurm through submitit's local mode ---------------------------------------------------------


@pytest.mark.slow
def test_submitit_local_gives_the_local_numbers_and_reports_a_failed_job(single_threaded, plan, reference, tmp_path):
    pytest.importorskip("submitit")
    results = ResultsDir(tmp_path / "slurm")
    broken = plan.runs[1]
    results.epochs_jsonl(broken.id).mkdir(parents=True)  # its job fails: epochs.jsonl is a folder
    executor = build(SlurmOptions(device="cpu", cluster="local"))
    assert executor.gpus == 0
    report = execute(plan, plan.runs, results, executor)
    assert report.unfinished == [broken] and len(report.errors) == 1
    assert f"1 run: {broken.id}" in report.errors[0] and "failed: IsADirectoryError" in report.errors[0]
    log = Path(report.errors[0].rpartition("log: ")[2])
    assert log.is_file() and log.is_relative_to(results.slurm_dir(plan.spec))
    assert "IsADirectoryError" in log.read_text()
    assert all(read_json(results.run_json(r.id))["status"] == "done" for r in plan.runs if r is not broken)
    results.epochs_jsonl(broken.id).rmdir()
    report = execute(plan, plan.runs, results, build(SlurmOptions(device="cpu", cluster="local")))
    assert report.errors == [] and report.unfinished == []
    assert_same_numbers(plan, results, reference)
    # The second call trained only what was not done: the broken run, from scratch. (The failed job stopped
    # while checking the run's files, before it claimed the run for training: one claim.)
    assert [c["from_epoch"] for c in claims(results, broken.id)] == [0]
    assert all(len(claims(results, r.id)) == 1 for r in plan.runs if r is not broken)


# --- local worker processes ----------------------------------------------------------------


def kill_mid_run(results: ResultsDir, run_id: str) -> tuple[dict, int]:
    """SIGKILL the worker process that trains `run_id`, once its first epoch is written; returns its lock
    and the number of epochs written by then."""
    deadline = time.time() + 120
    while time.time() < deadline and len(read_jsonl(results.epochs_jsonl(run_id))) < 1:
        time.sleep(0.01)
    written = len(read_jsonl(results.epochs_jsonl(run_id)))
    holder = json.loads(results.lock(run_id).read_text())
    os.kill(holder["pid"], signal.SIGKILL)
    return holder, written


def execute_killing_one_worker(plan, results, executor, reference, timeout: float) -> None:
    """Runs the plan, SIGKILLs the worker training its last run mid-run, and checks the outcome: every
    number as the local executor's, the victim claimed twice and resumed, losing at most the epoch it was in."""
    victim = plan.runs[-1]
    out = {}
    thread = threading.Thread(target=lambda: out.update(report=execute(plan, plan.runs, results, executor)))
    thread.start()
    holder, written = kill_mid_run(results, victim.id)
    thread.join(timeout=timeout)  # seconds
    report = out["report"]
    assert report.errors == [] and report.failed == report.unfinished == []
    assert_same_numbers(plan, results, reference)
    attempts = claims(results, victim.id)
    assert len(attempts) == 2 and attempts[0]["owner"] == holder["owner"] != attempts[1]["owner"]
    assert attempts[1]["from_epoch"] >= written - 1  # at most the epoch in progress was lost
    assert all(len(claims(results, r.id)) == 1 for r in plan.runs if r is not victim)


@pytest.mark.slow
def test_a_pool_of_worker_processes_gives_the_local_numbers_and_replaces_a_killed_worker(
        single_threaded, plan, reference, tmp_path):
    results = ResultsDir(tmp_path / "pool")
    execute_killing_one_worker(plan, results, WorkerPool(["cpu", "cpu"]), reference, timeout=240)
    first = {claims(results, r.id)[0]["owner"].split(":")[1] for r in plan.runs}
    assert len(first) == 2  # both workers trained


@pytest.mark.slow
def test_two_concurrent_gstc_runs_train_every_run_once(spec, plan, reference, tmp_path):
    out = tmp_path / "both"
    args = [sys.executable, "-m", "gstc", "run", str(spec), "--out", str(out), "--device", "cpu"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outputs]
    results = ResultsDir(out)
    assert_same_numbers(plan, results, reference)
    for run in plan.runs:
        (claim,) = claims(results, run.id)  # claimed once, from scratch, never resumed: trained once
        assert claim["from_epoch"] == 0 and read_json(results.run_json(run.id))["resumed_from"] is None
    pids = {p.pid for p in procs}
    trainers = {int(claims(results, r.id)[0]["owner"].split(":")[1]) for r in plan.runs}
    assert trainers <= pids


def cli(*args: str, command: str = "run"):
    from typer.testing import CliRunner

    from gstc.cli import app

    return CliRunner().invoke(app, [command, *args], env={"COLUMNS": "200"})


def cli_status(*args: str):
    return cli(*args, command="status")


def test_status_names_the_worker_of_a_running_run_and_spots_interrupted_ones(spec, plan, tmp_path):
    from gstc import locks
    from gstc.claims import claim_runs
    from gstc.jsonio import write_json

    results = ResultsDir(tmp_path)
    held, dead = plan.runs[0], plan.runs[1]
    for run in (held, dead):
        write_json(results.run_json(run.id), {"id": run.id, "status": "running"})
    results.lock(dead.id).write_text(json.dumps({**locks.machine(), "pid": 2**22 + 1, "token": "x", "owner": "gone",
                                                 "heartbeat": time.time()}))
    with claim_runs(results, [held.id]) as claims:
        result = cli_status(str(spec), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    ids = {r.id for r in plan.runs}
    rows = {word: line for line in result.output.splitlines() for word in line.split() if word in ids}
    info = claims.locks[held.id].info
    assert "running" in rows[held.id] and f"{info['host']} pid {info['pid']}" in rows[held.id]
    assert "interrupted" in rows[dead.id] and "pending" in rows[plan.runs[2].id]
    assert "1 interrupted, 2 pending, 1 running of 4 runs" in result.output


# --- errors ----------------------------------------------------------------------------------


def test_executor_ray_without_ray_says_how_to_install_it(spec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = cli(str(spec), "--out", str(tmp_path), "--executor", "ray")
    assert result.exit_code == 1
    assert "pip install 'gstc[ray]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_executor_slurm_without_submitit_says_how_to_install_it(spec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    result = cli(str(spec), "--out", str(tmp_path), "--executor", "slurm", "--slurm-cluster", "local")
    assert result.exit_code == 1 and "pip install 'gstc[slurm]'" in result.stderr


def test_slurm_without_sbatch_is_a_clear_error(spec, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = cli(str(spec), "--out", str(tmp_path), "--executor", "slurm", "--slurm-time", "1:00:00")
    assert result.exit_code == 1
    assert "no Slurm here" in result.stderr and "--slurm-cluster local" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--address", "auto"], "--address goes with --executor ray, not --executor local"),
    (["--executor", "slurm", "--slurm-cluster", "local", "--gpus-per-task", "0.5"], "--gpus-per-task goes with --executor ray"),
    (["--executor", "ray", "--slurm-time", "1:00"], "--slurm-time goes with --executor slurm"),
    (["--gpus", "0,0"], "expected distinct CUDA device numbers"),
    (["--gpus", "0", "--device", "cpu"], "--gpus trains on CUDA devices"),
    (["--executor", "slurm", "--slurm-cluster", "local", "--slurm-time", "soon"], "--slurm-time: expected Slurm's format"),
    (["--executor", "slurm", "--slurm-cluster", "moon"], "--slurm-cluster: expected 'local'"),
    (["--executor", "slurm", "--slurm-cluster", "local", "--device", "cpu", "--slurm-gpus", "1"], "the jobs train on the CPU"),
])
def test_bad_executor_options_are_clear_errors(spec, tmp_path, args, message):
    if "slurm" in args:
        pytest.importorskip("submitit")
    result = cli(str(spec), "--out", str(tmp_path), *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpus_on_a_machine_without_them_is_a_clear_error(spec, tmp_path):
    result = cli(str(spec), "--out", str(tmp_path), "--gpus", "0,1")
    assert result.exit_code == 1
    assert "--gpus: this machine has no CUDA device, not cuda:0, cuda:1" in result.stderr


@pytest.mark.parametrize("text, minutes", [("90", 90), ("1:30", 2), ("12:00:00", 720), ("1-0", 1440),
                                           ("2-03:04", 3064), ("0-00:00:30", 1)])
def test_slurm_time_formats(text, minutes):
    assert parse_slurm_time(text) == minutes


def test_optional_packages_are_imported_only_when_chosen():
    code = ("import sys, gstc.cli, gstc.runtime.driver, gstc.runtime.executors, gstc.runtime.progress\n"
            "print(sorted(m for m in ('ray', 'submitit') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- what the executors decide before and after a worker runs (no cluster needed) -------------


def test_workers_get_absolute_data_roots_and_the_same_run_ids(tmp_path):
    """A relative data.root is resolved where `gstc run` runs: a Ray worker starts where `ray start` ran."""
    from gstc.plan import Plan
    from gstc.runtime.executors import plan_for_workers

    path = tmp_path / "s.yaml"
    path.write_text(SPEC.replace("data: {dataset: digits}", "data: {dataset: cifar10, root: some/data}"))
    plan = compile_file(str(path))
    sent = Plan.model_validate_json(plan_for_workers(plan, base=tmp_path))
    assert [r.id for r in sent.runs] == [r.id for r in plan.runs]
    assert {c.resolved.data.root for c in sent.configs} == {str((tmp_path / "some" / "data").resolve())}
    absolute = str(tmp_path / "elsewhere")
    path.write_text(SPEC.replace("data: {dataset: digits}", f"data: {{dataset: cifar10, root: {absolute}}}"))
    sent = Plan.model_validate_json(plan_for_workers(compile_file(str(path)), base=tmp_path / "x"))
    assert {c.resolved.data.root for c in sent.configs} == {absolute}  # an absolute root stays as it is


def test_only_failures_another_attempt_may_not_meet_are_retried():
    from gstc.runtime.data import DataError
    from gstc.runtime.models import LayerMismatch
    from gstc.runtime.worker import permanent

    for exc in (DataError("no archive"), LayerMismatch("m", [("a", 1)], [("b", 1)]), FileNotFoundError("x"), ImportError("m"), ValueError()):
        assert permanent(exc), exc
    for exc in (OSError("stale file handle"), RuntimeError("CUDA error: unspecified launch failure"), ConnectionError()):
        assert not permanent(exc), exc


def test_a_job_at_its_time_limit_is_requeued_only_when_it_progressed(tmp_path):
    pytest.importorskip("submitit")
    from gstc.jsonio import append_jsonl
    from gstc.runtime.executors.slurm import PackJob
    from gstc.runtime.jobs import Job

    results = ResultsDir(tmp_path / "r")
    job = Job(index=0, runs=("aaaaaaaaaaaa",), results=str(results.root), device="cpu", pack=1)
    pack = PackJob()
    pack.start = 0
    assert pack.checkpoint("{}", job) is None  # no epoch since the start: not requeued, its runs unfinished
    append_jsonl(results.epochs_jsonl("aaaaaaaaaaaa"), {"epoch": 1})
    assert pack.checkpoint("{}", job) is not None  # an epoch more: requeued with the same arguments


def test_sbatch_options_and_the_worker_named_in_locks(monkeypatch):
    pytest.importorskip("submitit")
    from gstc.runtime.executors.slurm import _sbatch_options
    from gstc.locks import worker_job, worker_text

    assert _sbatch_options(["constraint=a100", "--exclusive", "mail-type=END"]) == {
        "constraint": "a100", "exclusive": "", "mail_type": "END"}
    with pytest.raises(ExecutorError, match="--slurm-option"):
        _sbatch_options(["=x"])
    for var in ("GSTC_WORKER_JOB", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    assert worker_job() is None
    monkeypatch.setenv("SLURM_JOB_ID", "43")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "42")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert worker_job() == "slurm job 42_3"
    assert worker_text({"host": "node7", "pid": 12, "job": "slurm job 42_3"}) == "node7 pid 12, slurm job 42_3"


def test_squeue_answers_are_read_as_the_live_jobs(tmp_path, monkeypatch):
    """A fake squeue on PATH: its answers, an unknown job id, and no squeue at all."""
    from gstc.slurm_queue import live_runs, queue_states, record_submitted

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "squeue").write_text("#!/bin/sh\nprintf '42_0 RUNNING\\n42_1 PENDING\\n'\n")
    (bin_ / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    assert queue_states(["42_0", "42_1", "42_2"]) == {"42_0": "RUNNING", "42_1": "PENDING"}
    path = tmp_path / "submitted.json"
    record_submitted(path, {"42_0": ["a"], "42_1": ["b"], "42_2": ["c"]})
    assert live_runs(path) == {"a": ("42_0", "RUNNING"), "b": ("42_1", "PENDING")}  # 42_2 ended: not held
    (bin_ / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n")
    assert queue_states(["42_0"]) == {}
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert queue_states(["42_0"]) is None and live_runs(path) == {}
