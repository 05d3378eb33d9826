"""The one driver: what `gstc run` runs, with every executor, and what the tests run.

`execute(plan, runs, results, executor, pack)` turns the runs not done into the
executor's jobs, has them carried out, rebuilds the spec's manifest from the run folders
(never from a worker's memory), and says from those folders and the locks which runs
failed, are damaged, are held by other live workers, or did not finish.
`make_executor` builds and checks the executor `gstc run --executor ...` asks for.
"""

from __future__ import annotations

import torch

from gstc.manifest import ResultsDir, run_state, write_manifest
from gstc.plan import Plan, PlanRun
from gstc import locks
from gstc.runtime.executors import Executor, ExecutorError, Interrupted, Report, Tick
from gstc.runtime.worker import Progress, Quiet


def rebuild_manifest(plan: Plan, results: ResultsDir, env: dict) -> None:
    """Rebuild the spec's manifest from the run folders, under the spec's manifest lock: of two
    processes finishing together, the one that writes last has read the other's runs."""
    with locks.hold(results.manifest_lock(plan.spec)):
        write_manifest(plan, results, env)


def execute(plan: Plan, runs: list[PlanRun], results: ResultsDir, executor: Executor, pack: int | str = 1,
            progress: Progress | None = None, tick: Tick = lambda: None) -> Report:
    """Run every selected run not done yet with `executor`, rebuild the manifest, and report on every run."""
    progress = progress or Quiet()
    try:
        jobs = executor.jobs(plan, runs, results, pack)
        report = executor.run(plan, jobs, results, progress, tick)
    except KeyboardInterrupt:
        raise Interrupted(executor.on_interrupt()) from None
    finally:
        executor.close()
    rebuild_manifest(plan, results, executor.environment())
    for run in runs:
        status, _, found = run_state(results, run.id)
        if status == "failed":
            report.failed.append(run)
        elif status == "damaged":
            report.damaged[run.id] = found
        elif status != "done" and run.id not in report.busy:  # busy already: left to a live job of an earlier call
            holder = locks.read_lock(results.lock(run.id))
            if holder is not None and locks.Lock(results.lock(run.id)).judge(holder) != locks.STALE:
                report.busy[run.id] = locks.describe(holder)
            elif run.id not in report.lost:
                report.unfinished.append(run)
    return report


def make_executor(kind: str, device: str = "auto", gpus: list[int] | None = None, address: str | None = None,
                  gpus_per_task: float | None = None, slurm_partition: str | None = None,
                  slurm_time: str | None = None, slurm_gpus: int | None = None,
                  slurm_cluster: str | None = None, dtype: torch.dtype = torch.float32, cpus: int | None = None,
                  slurm: dict | None = None, track: list[str] | None = None) -> Executor:
    """The executor `gstc run --executor KIND` asks for, checked up front (ExecutorError); `track`: the trackers
    its workers feed (gstc.runtime.tracking)."""
    executor: Executor
    if kind == "local":
        if gpus:
            if device not in ("auto", "cuda"):
                raise ExecutorError(f"--gpus trains on CUDA devices; it cannot go with --device {device}")
            from gstc.runtime.executors.worker_pool import WorkerPool

            executor = WorkerPool([f"cuda:{i}" for i in gpus])
        else:
            from gstc.runtime.executors.in_process import InProcess

            try:
                executor = InProcess(device, dtype)
            except ValueError as exc:
                raise ExecutorError(str(exc)) from None
    elif kind == "ray":
        from gstc.runtime.executors.ray import RayExecutor

        executor = RayExecutor(device, address, gpus_per_task, cpus=cpus)
    elif kind == "slurm":
        from gstc.runtime.executors.slurm import SlurmExecutor

        executor = SlurmExecutor(device, slurm_partition, slurm_time, slurm_gpus, slurm_cluster, cpus=cpus,
                                 **(slurm or {}))
    else:
        raise ExecutorError(f"--executor: expected local, ray or slurm, found {kind!r}")
    if track:
        from gstc.runtime import tracking

        try:
            tracking.check(track)
        except ValueError as exc:
            raise ExecutorError(str(exc)) from None
        executor.track = list(track)
    executor.check()
    return executor


__all__ = ["ExecutorError", "Interrupted", "Report", "execute", "make_executor", "rebuild_manifest"]
