"""The one driver: what `gstc run` runs, with every executor, and what the tests run.

`execute(plan, runs, results, executor, pack, progress)` decides, once, which of the runs
are not done; has the executor turn them into jobs and carry them out, telling `progress`
as they go; rebuilds the spec's manifest from the run folders (never from a worker's
memory); and says from those folders and the locks which runs failed, are damaged, are
held by other live workers, or did not finish. The executor comes from its options
(`build`).
"""

from __future__ import annotations

from gstc.manifest import write_manifest
from gstc.paths import ResultsDir
from gstc.runstate import run_state, run_status
from gstc.plan import Plan, PlanRun
from gstc import locks
from gstc.claims import hold
from gstc.executor_options import LocalOptions, Options, RayOptions, SlurmOptions
from gstc.runtime.executors import Executor, ExecutorError, Interrupted, Report
from gstc.runtime.progress import Progress, Quiet


def rebuild_manifest(plan: Plan, results: ResultsDir, env: dict) -> None:
    """Rebuild the spec's manifest from the run folders, under the spec's manifest lock: of two
    processes finishing together, the one that writes last has read the other's runs."""
    with hold(results.manifest_lock(plan.spec)):
        write_manifest(plan, results, env)


def execute(plan: Plan, runs: list[PlanRun], results: ResultsDir, executor: Executor, pack: int | str = 1,
            progress: Progress | None = None) -> Report:
    """Run every selected run not done yet with `executor`, rebuild the manifest, and report on every run."""
    progress = progress or Quiet()
    todo = [r for r in runs if run_status(results, r.id) != "done"]  # the one place that decides what trains
    where = executor.device if executor.name == "local" else f"{executor.name} workers ({executor.device})"
    progress.begin(plan, runs, todo, where)
    try:
        jobs = executor.jobs(plan, todo, results, pack)
        report = executor.run(plan, jobs, results, progress)
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


def build(options: Options) -> Executor:
    """The executor its options object asks for (gstc.executor_options), checked up front (ExecutorError)."""
    executor: Executor
    if isinstance(options, LocalOptions) and options.gpus:
        if options.device not in ("auto", "cuda"):
            raise ExecutorError(f"--gpus trains on CUDA devices; it cannot go with --device {options.device}")
        from gstc.runtime.executors.worker_pool import WorkerPool

        executor = WorkerPool([f"cuda:{i}" for i in options.gpus], options=options)
    elif isinstance(options, LocalOptions):
        from gstc.runtime.executors.in_process import InProcess

        try:
            executor = InProcess(options)
        except ValueError as exc:
            raise ExecutorError(str(exc)) from None
    elif isinstance(options, RayOptions):
        from gstc.runtime.executors.ray import RayExecutor

        executor = RayExecutor(options)
    elif isinstance(options, SlurmOptions):
        from gstc.runtime.executors.slurm import SlurmExecutor

        executor = SlurmExecutor(options)
    else:
        raise ExecutorError(f"no executor reads {type(options).__name__}")
    if options.track:
        from gstc.runtime import tracking

        try:
            tracking.check(list(options.track))
        except ValueError as exc:
            raise ExecutorError(str(exc)) from None
    executor.check()
    return executor
