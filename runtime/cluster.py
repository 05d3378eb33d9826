"""Executors behind `gstc run --executor local|ray|slurm`: where a plan's packs train.

The interface (`Executor`): `check()` refuses up front what cannot work (a missing
package, a Ray cluster without GPUs for GPU tasks, no Slurm), `run()` carries out jobs
and returns the errors of those whose worker failed, `close()`. A job is one pack (or
with `--pack auto` on workers, a chunk of compatible runs the worker packs by its own
device's memory); every worker runs it with `work()`, which calls
`runtime.executors.run_pack`: the locks, the skipping of done runs and the resuming from
checkpoints are the same whichever executor ran it, and so is the results layout.

- `InProcess`: the default, `--executor local` on one device, in this process.
- `WorkerPool`: `--executor local --gpus 0,1`: one worker process per device (spawned),
  pulling jobs from the pool's queue.
- `RayExecutor`: each job a Ray task (Ray core) asking for `num_gpus` (1 or a fraction)
  or one CPU; failed tasks are retried, and a retry resumes from the checkpoints.
- `SlurmExecutor`: a job array of jobs through submitit; `cluster="local"` is submitit's
  local mode, the same code path without Slurm.

Workers receive the plan as JSON (never YAML), their runs' ids and the results folder;
the driver rebuilds the manifest from the run folders once every job has ended
(`execute`). Ray and submitit are optional and imported only here, only when chosen.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from gstc.manifest import ResultsDir, run_status
from gstc.packs import groups, make_packs
from gstc.plan import Plan, PlanRun
from runtime import locks
from runtime.executors import (AUTO_MAX_PACK, Progress, local_packs, rebuild_manifest, resolve_device, run_pack)
from runtime.train import environment

RAY_RETRIES = 3  # a Ray task that fails (an exception, or its worker died) is run again this many times
POLL_SECONDS = 1.0  # how often the driver looks at remote work (and refreshes the progress display)
LOCAL_SLURM_TIME = 7 * 24 * 60  # minutes: --slurm-cluster local without --slurm-time


class ExecutorError(Exception):
    """Something an executor cannot do, said up front: the CLI prints it and exits 1."""


# --- the worker's side -----------------------------------------------------------------


class _Collect(Progress):
    """A worker's progress: records the runs it left to other workers (their locks' holders)."""

    def __init__(self) -> None:
        self.held_elsewhere: dict[str, str] = {}

    def busy(self, run: PlanRun, holder: dict) -> None:
        self.held_elsewhere[run.id] = locks.describe(holder)


def work(plan_json: str, job: dict) -> dict:
    """Carry out one job in a worker: {"runs": [ids], "results": folder, "device": name, "pack": K | "auto",
    "dtype": "float32"}. Returns {"host", "pid", "busy": {run id: holder}, "errors": [...]}; raises on failure
    (the executor reports it, Ray retries it)."""
    plan = Plan.model_validate_json(plan_json)
    results = ResultsDir(job["results"])
    device = resolve_device(job["device"])
    dtype = getattr(torch, job.get("dtype", "float32"))
    by_id = {r.id: r for r in plan.runs}
    runs = [by_id[i] for i in job["runs"]]
    collect = _Collect()
    errors = []
    datasets: dict = {}
    for members in local_packs(plan, runs, results, device, job["pack"], datasets):
        try:
            run_pack(plan, members, results, device, collect, dtype, datasets)
        except locks.LockLost as exc:  # another worker has the run now: not a failure to retry
            errors.append(str(exc))
    return {"host": socket.gethostname(), "pid": os.getpid(), "device": str(device),
            "busy": collect.held_elsewhere, "errors": errors}


# --- the driver's side -----------------------------------------------------------------


@dataclass
class Report:
    """What `execute` says beyond the run folders: jobs whose worker failed, runs left to other workers."""

    errors: list[str] = field(default_factory=list)
    busy: dict[str, str] = field(default_factory=dict)  # run id -> holder
    failed: list[PlanRun] = field(default_factory=list)  # run.json says failed
    unfinished: list[PlanRun] = field(default_factory=list)  # neither done nor failed nor held by a live worker


Tick = Callable[[], None]


class Executor:
    """Interface: `check()` up front, `jobs()`, `run()`, `close()`; `name` for messages."""

    name = "local"
    device = "cpu"  # what workers train on: 'cpu', 'cuda' or 'cuda:N'

    def check(self) -> None:
        """Raise ExecutorError for what cannot work, before any run starts."""

    def jobs(self, plan: Plan, runs: list[PlanRun], results: ResultsDir, pack: int | str) -> list[dict]:
        """The runs not done yet as jobs: packs of `pack` runs; with 'auto', each group of compatible runs in
        chunks of at most AUTO_MAX_PACK, which the worker packs by its own device's memory."""
        todo = [r for r in runs if run_status(results, r.id) != "done"]
        if pack == "auto":
            chunks = [g[i:i + AUTO_MAX_PACK] for g in groups(plan, todo) for i in range(0, len(g), AUTO_MAX_PACK)]
            ids = [[r.id for r in c] for c in chunks]
        else:
            ids = [p.runs for p in make_packs(plan, todo, int(pack))]
        return [{"index": i, "runs": r, "results": str(results.root), "device": self.device, "pack": pack,
                 "dtype": "float32"} for i, r in enumerate(ids)]

    def run(self, plan: Plan, jobs: list[dict], results: ResultsDir, progress: Progress, tick: Tick) -> Report:
        raise NotImplementedError

    def environment(self) -> dict:
        """The manifest's environment: this driver's; each run.json has its worker's."""
        return {"executor": self.name, "torch": torch.__version__, "python": platform.python_version(),
                "device": f"{self.device} on {self.name} workers (each run.json names its worker's)"}

    def close(self) -> None:
        pass


def _merge(report: Report, result: dict) -> None:
    report.busy.update(result.get("busy", {}))
    report.errors.extend(result.get("errors", []))


def _job_text(job: dict) -> str:
    n = len(job["runs"])
    return f"pack {job['index']} ({n} run{'s' * (n != 1)}: {', '.join(job['runs'][:4])}{', ...' if n > 4 else ''})"


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class InProcess(Executor):
    """`--executor local` on one device: packs one after another in this process, with per-epoch progress."""

    def __init__(self, device: str = "auto", dtype: torch.dtype = torch.float32) -> None:
        self.torch_device = resolve_device(device)  # ValueError: a device this machine lacks
        self.device = str(self.torch_device)
        self.dtype = dtype
        self._datasets: dict = {}  # data loaded once, for every pack of this process

    def jobs(self, plan: Plan, runs: list[PlanRun], results: ResultsDir, pack: int | str) -> list[dict]:
        packs = local_packs(plan, runs, results, self.torch_device, pack, self._datasets)
        return [{"index": i, "runs": [r.id for r in p]} for i, p in enumerate(packs)]

    def run(self, plan: Plan, jobs: list[dict], results: ResultsDir, progress: Progress, tick: Tick) -> Report:
        report = Report()
        by_id = {r.id: r for r in plan.runs}
        collect = _Forward(progress, report)
        for job in jobs:
            try:
                run_pack(plan, [by_id[i] for i in job["runs"]], results, self.torch_device, collect, self.dtype,
                         self._datasets)
            except locks.LockLost as exc:
                report.errors.append(str(exc))
        return report

    def environment(self) -> dict:
        return environment(self.torch_device)


class _Forward(Progress):
    """The display's callbacks, plus a record of runs left to other workers."""

    def __init__(self, inner: Progress, report: Report) -> None:
        self.inner, self.report = inner, report

    def start_pack(self, runs, done_epochs):
        self.inner.start_pack(runs, done_epochs)

    def epoch(self, run, record):
        self.inner.epoch(run, record)

    def end_run(self, run, status):
        self.inner.end_run(run, status)

    def busy(self, run, holder):
        self.report.busy[run.id] = locks.describe(holder)
        self.inner.busy(run, holder)


# --- local worker processes, one per device ----------------------------------------------

def _pool_worker(device: str, plan_json: str, inbox: Any, outbox: Any) -> None:
    """A worker process of `WorkerPool`: carries out the jobs the driver sends it until it gets None."""
    me = os.getpid()
    while (job := inbox.get()) is not None:
        try:
            outcome = work(plan_json, {**job, "device": device})
        except Exception as exc:
            outbox.put(("error", me, job["index"], f"{type(exc).__name__}: {_last_line(exc)}"))
        else:
            outbox.put(("done", me, job["index"], outcome))


class WorkerPool(Executor):
    """`--executor local --gpus 0,1`: one spawned worker process per device, each taking the next job from a
    shared queue when free. A job whose worker raised, or died, is queued again (up to `retries` times, like a
    Ray task) and resumes from its checkpoints; a dead worker is replaced, and the others go on undisturbed."""

    def __init__(self, devices: list[str], retries: int = RAY_RETRIES) -> None:
        if not devices:
            raise ExecutorError("--gpus: no device given")
        self.devices, self.retries = devices, retries
        self.device = devices[0].split(":")[0]

    def check(self) -> None:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        missing = [d for d in self.devices if d.startswith("cuda") and int(d.partition(":")[2] or 0) >= count]
        if missing:
            have = f"CUDA devices 0 to {count - 1}" if count else "no CUDA device"
            raise ExecutorError(f"--gpus: this machine has {have}, not {', '.join(missing)}; "
                                f"leave out --gpus to train here on one device")

    def run(self, plan: Plan, jobs: list[dict], results: ResultsDir, progress: Progress, tick: Tick) -> Report:
        import multiprocessing
        import queue as queues
        from collections import deque

        report = Report()
        if not jobs:
            return report
        ctx = multiprocessing.get_context("spawn")
        outbox = ctx.Queue()
        plan_json = plan.model_dump_json()
        workers: dict[int, tuple[str, Any, Any]] = {}  # pid -> (device, process, inbox)
        idle: list[int] = []
        assigned: dict[int, int] = {}  # worker pid -> index of the job it carries out
        pending = deque(job["index"] for job in jobs)
        failures = {job["index"]: 0 for job in jobs}
        resolved: set[int] = set()

        def start(device: str) -> None:
            inbox = ctx.Queue()
            proc = ctx.Process(target=_pool_worker, args=(device, plan_json, inbox, outbox), daemon=True)
            proc.start()
            workers[proc.pid] = (device, proc, inbox)
            idle.append(proc.pid)

        def retry(index: int, why: str) -> None:
            if index in resolved:
                return
            failures[index] += 1
            if failures[index] > self.retries:
                resolved.add(index)
                report.errors.append(f"{_job_text(jobs[index])}: failed {failures[index]} times; last: {why}")
            else:
                pending.append(index)

        for device in self.devices:
            start(device)
        try:
            while len(resolved) < len(jobs):
                while idle and pending:
                    index = pending.popleft()
                    if index not in resolved:
                        pid = idle.pop()
                        assigned[pid] = index
                        workers[pid][2].put(jobs[index])
                try:
                    kind, pid, index, payload = outbox.get(timeout=POLL_SECONDS)
                except queues.Empty:
                    pass
                else:
                    if assigned.get(pid) == index:
                        del assigned[pid]
                        idle.append(pid)
                    if kind == "done" and index not in resolved:
                        resolved.add(index)
                        _merge(report, payload)
                    elif kind == "error":
                        retry(index, payload)
                tick()
                for pid, (device, proc, _) in list(workers.items()):
                    if proc.is_alive():
                        continue
                    del workers[pid]
                    if pid in idle:
                        idle.remove(pid)
                    index = assigned.pop(pid, None)
                    if index is not None:
                        retry(index, f"its worker process on {device} died (exit code {proc.exitcode})")
                    if len(resolved) < len(jobs):
                        start(device)  # a replacement: the pool keeps one worker per device
        finally:
            for _, proc, inbox in workers.values():
                inbox.put(None)
            for _, proc, _ in workers.values():
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
        return report


# --- Ray ---------------------------------------------------------------------------------


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray, which is not installed: pip install 'gstc[ray]'") from None
    return ray


class RayExecutor(Executor):
    """Each job a Ray task; `address`: 'auto', 'HOST:PORT', or None to start a local Ray for the call."""

    name = "ray"

    def __init__(self, device: str = "auto", address: str | None = None, gpus_per_task: float | None = None,
                 retries: int = RAY_RETRIES, init: dict | None = None) -> None:
        self.ray = _import_ray()
        self.requested, self.address, self.gpus_per_task = device, address, gpus_per_task
        self.retries, self.init_kwargs = retries, dict(init or {})
        self.started = False
        if device.startswith("cuda:"):
            raise ExecutorError(f"--device {device}: Ray assigns each task its GPU; use --device cuda (or auto)")
        if gpus_per_task is not None and not 0 < gpus_per_task <= 1:
            raise ExecutorError(f"--gpus-per-task: expected a number in (0, 1] (a pack trains on one GPU), "
                                f"found {gpus_per_task:g}")

    def check(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level="warning", **self.init_kwargs)
            except Exception as exc:  # ConnectionError (no cluster there), ValueError, RuntimeError
                hint = " (start one with `ray start --head`, or leave out --address for a local Ray)" if self.address else ""
                raise ExecutorError(f"cannot start or reach {where}: {_last_line(exc)}{hint}") from None
            self.started = True
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0)
        wants_gpu = self.requested == "cuda" or (self.requested == "auto" and gpus > 0)
        if wants_gpu and gpus == 0:
            self.close()
            raise ExecutorError(f"--device {self.requested}: the Ray cluster has no GPUs (its resources: "
                                f"{resources.get('CPU', 0):g} CPUs, 0 GPUs), so GPU tasks would wait forever; "
                                f"add GPU nodes, or use --device cpu")
        if not wants_gpu and self.gpus_per_task is not None:
            self.close()
            raise ExecutorError("--gpus-per-task: the tasks train on the CPU (--device cpu, or a cluster without "
                                "GPUs); leave it out")
        self.device = "cuda" if wants_gpu else "cpu"
        self.num_gpus = (self.gpus_per_task or 1.0) if wants_gpu else 0

    def run(self, plan: Plan, jobs: list[dict], results: ResultsDir, progress: Progress, tick: Tick) -> Report:
        ray = self.ray
        report = Report()
        task = ray.remote(work)
        options = {"num_cpus": 1, "num_gpus": self.num_gpus, "max_retries": self.retries, "retry_exceptions": True}
        plan_ref = ray.put(plan.model_dump_json())
        pending = {task.options(name=f"gstc {plan.spec} pack {job['index']}", **options).remote(plan_ref, job): job
                   for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
            tick()
            for ref in ready:
                job = pending.pop(ref)
                try:
                    _merge(report, ray.get(ref))
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    report.errors.append(f"{_job_text(job)}: its Ray task failed {self.retries + 1} times; last: "
                                         f"{type(cause).__name__}: {_last_line(cause)}")
        return report

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False


# --- Slurm, through submitit ----------------------------------------------------------


def parse_slurm_time(text: str) -> int:
    """Slurm's time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) as whole minutes, rounded up."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ExecutorError(f"--slurm-time: expected Slurm's format (minutes, H:M:S or D-H:M:S), found {text!r}")
    days, a, b, c = m.groups()
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # H:M:S
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # M:S
        seconds = int(a) * 60 + int(b)
    else:  # M
        seconds = int(a) * 60
    if seconds <= 0:
        raise ExecutorError(f"--slurm-time: expected a positive time limit, found {text!r}")
    return math.ceil(seconds / 60)


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise ExecutorError("--executor slurm needs submitit, which is not installed: pip install 'gstc[slurm]'") from None
    return submitit


class SlurmExecutor(Executor):
    """A job array, one job per pack, through submitit; cluster 'slurm' (sbatch) or 'local' (submitit's local mode)."""

    name = "slurm"

    def __init__(self, device: str = "auto", partition: str | None = None, time: str | None = None,
                 gpus: int | None = None, cluster: str | None = None) -> None:
        self.submitit = _import_submitit()
        if cluster not in (None, "slurm", "local"):
            raise ExecutorError(f"--slurm-cluster: expected 'local' (submitit's local mode) or 'slurm', found {cluster!r}")
        self.cluster = cluster or "slurm"
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ExecutorError("--executor slurm: no Slurm here (`sbatch` is not on PATH). Run gstc on a Slurm login "
                                "node, or try the same code path on this machine with --slurm-cluster local")
        if self.cluster == "slurm" and time is None:
            raise ExecutorError("--executor slurm needs --slurm-time, the jobs' time limit (e.g. 12:00:00); jobs "
                                "cut off by it are requeued and resume from their checkpoints")
        self.partition = partition
        self.timeout_min = parse_slurm_time(time) if time is not None else LOCAL_SLURM_TIME
        if device.startswith("cuda:"):
            raise ExecutorError(f"--device {device}: Slurm assigns each job its GPUs; use --device cuda (or auto)")
        if gpus is None:  # one GPU per job, unless the runs are meant for the CPU
            gpus = 0 if device == "cpu" or (self.cluster == "local" and not torch.cuda.is_available()) else 1
        if gpus < 0:
            raise ExecutorError(f"--slurm-gpus: expected 0 or more, found {gpus}")
        if device == "cpu" and gpus > 0:
            raise ExecutorError("--slurm-gpus: the jobs train on the CPU (--device cpu); leave it out or give 0")
        if device == "cuda" and gpus == 0:
            raise ExecutorError("--device cuda with --slurm-gpus 0: the jobs would have no GPU")
        self.gpus = gpus
        self.device = "cuda" if gpus > 0 else "cpu"

    def run(self, plan: Plan, jobs: list[dict], results: ResultsDir, progress: Progress, tick: Tick) -> Report:
        from runtime.slurm_job import PackJob

        report = Report()
        if not jobs:
            return report
        folder = results.slurm_dir(plan.spec)
        executor = self.submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        params: dict[str, Any] = {"name": f"gstc-{plan.spec}", "timeout_min": self.timeout_min,
                                  "gpus_per_node": self.gpus, "nodes": 1, "tasks_per_node": 1}
        if self.cluster == "slurm":
            params["slurm_partition"] = self.partition
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        plan_json = plan.model_dump_json()
        try:
            submitted = executor.map_array(PackJob(), [plan_json] * len(jobs), jobs)
        except Exception as exc:  # sbatch refused (a partition that does not exist, a time over its limit)
            raise ExecutorError(f"Slurm refused the job array: {_last_line(exc)}") from None
        pending = dict(zip(submitted, jobs))
        while pending:
            time.sleep(POLL_SECONDS)
            tick()
            for sj in [j for j in pending if j.done()]:
                job = pending.pop(sj)
                try:
                    _merge(report, sj.result())
                except Exception as exc:  # FailedJobError, UncompletedJobError (killed, out of time, ...)
                    report.errors.append(f"{_job_text(job)}: Slurm job {sj.job_id} {_slurm_reason(sj, exc)}; "
                                         f"log: {sj.paths.stderr}")
        stray = folder / "%j"  # submitit's local mode makes this empty folder
        if self.cluster == "local" and stray.is_dir() and not any(stray.iterdir()):
            stray.rmdir()
        return report


def _slurm_reason(job: Any, exc: BaseException) -> str:
    """Why a submitit job has no result: the exception it raised, or its state (killed, out of time, ...)."""
    text = str(exc)
    if "failed during processing" in text:  # FailedJobError: the job's traceback between two rules
        parts = [p for p in text.split("-" * 22) if p.strip()]
        trace = parts[1] if len(parts) > 1 else text
        return f"failed: {_last_line(Exception(trace.strip().strip('-')))}"
    try:
        state = job.state
    except Exception:  # sacct unavailable
        state = "unknown"
    return f"ended without a result (state {state}: killed, out of time or out of memory?)"


# --- the driver ------------------------------------------------------------------------


def execute(plan: Plan, runs: list[PlanRun], results: ResultsDir, executor: Executor, pack: int | str = 1,
            progress: Progress | None = None, tick: Tick = lambda: None) -> Report:
    """Run every selected run not done yet with `executor`, rebuild the manifest from the run folders, and say
    from those folders (and the locks) which runs failed, which other workers hold, and which did not finish."""
    progress = progress or Progress()
    try:
        jobs = executor.jobs(plan, runs, results, pack)
        report = executor.run(plan, jobs, results, progress, tick)
    finally:
        executor.close()
    rebuild_manifest(plan, results, executor.environment())
    report.busy = {}
    for run in runs:
        status = run_status(results, run.id)
        if status == "failed":
            report.failed.append(run)
        elif status != "done":
            holder = locks.read_lock(results.lock(run.id))
            if holder is not None and locks.Lock(results.lock(run.id)).judge(holder) != locks.STALE:
                report.busy[run.id] = locks.describe(holder)
            else:
                report.unfinished.append(run)
    return report


def make_executor(kind: str, device: str = "auto", gpus: list[int] | None = None, address: str | None = None,
                  gpus_per_task: float | None = None, slurm_partition: str | None = None,
                  slurm_time: str | None = None, slurm_gpus: int | None = None,
                  slurm_cluster: str | None = None) -> Executor:
    """The executor `gstc run --executor KIND` asks for, checked up front (ExecutorError)."""
    if kind == "local":
        if gpus:
            if device not in ("auto", "cuda"):
                raise ExecutorError(f"--gpus trains on CUDA devices; it cannot go with --device {device}")
            executor: Executor = WorkerPool([f"cuda:{i}" for i in gpus])
        else:
            try:
                executor = InProcess(device)
            except ValueError as exc:
                raise ExecutorError(str(exc)) from None
    elif kind == "ray":
        executor = RayExecutor(device, address, gpus_per_task)
    elif kind == "slurm":
        executor = SlurmExecutor(device, slurm_partition, slurm_time, slurm_gpus, slurm_cluster)
    else:
        raise ExecutorError(f"--executor: expected local, ray or slurm, found {kind!r}")
    executor.check()
    return executor


__all__ = ["Executor", "ExecutorError", "InProcess", "RayExecutor", "Report", "SlurmExecutor", "WorkerPool",
           "execute", "make_executor", "parse_slurm_time", "work"]
