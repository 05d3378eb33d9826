"""Executors: where a plan's jobs train. One module each; `gstc.runtime.driver` is the one driver.

- `in_process.InProcess`: `--executor local` on one device, in this process (the default).
- `worker_pool.WorkerPool`: `--executor local --gpus 0,1`: one worker process per device.
- `ray.RayExecutor`: each job a Ray task; failed tasks are retried and resume from checkpoints.
- `slurm.SlurmExecutor`: a Slurm job array through submitit (`cluster="local"`: submitit's
  local mode, the same code path without Slurm).

Each is built from its options object (gstc.executor_options) by `gstc.runtime.driver.build`. An executor
(`Executor`) says up front what cannot work (`check`), turns the runs the driver decided
to train into `Job`s (`jobs`; a job's `after` lists the jobs whose runs its runs start
from: a lottery's levels, which each executor starts in that order), carries them out
(`run`, feeding the one progress sink and returning a `Report` of what the run folders do
not say) and cleans up (`close`). Every job ends in `gstc.runtime.worker.work` or
`run_pack`, so locks, damage checks and resuming are the same whichever executor ran it.
Ray and submitit are optional and imported only by their modules, only when chosen.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from gstc.executor_options import Options
from gstc.paths import ResultsDir
from gstc.packs import groups, make_packs
from gstc.plan import Plan, PlanRun
from gstc.runtime.jobs import Job, JobResult, Outcome
from gstc.runtime.progress import FolderWatch, Progress
from gstc.runtime.worker import AUTO_MAX_PACK

RETRIES = 3  # a job that fails (an exception, or its worker died) is run again this many times (Ray, worker pool)
POLL_SECONDS = 1.0  # how often the driver looks at remote work (and the watch at the run folders, at most every 5 s)


class ExecutorError(Exception):
    """Something an executor cannot do, said up front: the CLI prints it and exits 1."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while the executor ran: the message says what became of the work under way (still a
    KeyboardInterrupt, for whatever catches one)."""


@dataclass
class Report:
    """What became of the runs: `outcomes`, `errors` and `stopped` come from the executor and its workers, the rest
    `gstc.runtime.driver.execute` reads from the run folders and the locks once every job has ended."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)  # run id -> its last outcome, as its worker said
    errors: list[str] = field(default_factory=list)  # jobs whose worker failed
    busy: dict[str, str] = field(default_factory=dict)  # run id -> the live worker holding it
    damaged: dict[str, dict] = field(default_factory=dict)  # run id -> {"file", "reason"}
    failed: list[PlanRun] = field(default_factory=list)  # run.json says failed
    unfinished: list[PlanRun] = field(default_factory=list)  # neither done nor failed nor damaged nor held elsewhere
    stopped: dict[str, str] = field(default_factory=dict)  # run id -> the error that a rerun would meet again

    def merge(self, result: JobResult) -> None:
        """A worker's result: each run's outcome; a lottery level that waited on an input not done is stopped."""
        for outcome in result.outcomes:
            self.outcomes[outcome.run.id] = outcome
            if outcome.status == "blocked":
                self.stopped[outcome.run.id] = outcome.info["reason"]

    @property
    def lost(self) -> dict[str, dict]:
        """Run id -> {"epoch", "holder"}: runs a worker stopped because another worker took over their lock."""
        return {rid: o.info for rid, o in self.outcomes.items() if o.status == "stopped"}


class Executor(Protocol):
    name: str  # for messages: local, ray, slurm
    device: str  # what workers train on: 'cpu', 'cuda' or 'cuda:N'

    def check(self) -> None:
        """Raise ExecutorError for what cannot work, before any run starts."""

    def jobs(self, plan: Plan, runs: list[PlanRun], results: ResultsDir, pack: int | str) -> list[Job]:
        """The runs the driver decided to train (none done), as jobs."""

    def run(self, plan: Plan, jobs: list[Job], results: ResultsDir, progress: Progress) -> Report:
        """Carry out the jobs, telling `progress` as the runs go; the report of what the run folders do not say."""

    def environment(self) -> dict:
        """The manifest's environment: where the driver ran the plan."""

    def close(self) -> None:
        """Release what `check` or `run` started."""

    def on_interrupt(self) -> str:
        """What becomes of the work under way when `gstc run` is stopped (Ctrl-C)."""


class Remote:
    """What the executors whose workers run elsewhere (processes, Ray, Slurm) share: `gstc.runtime.worker.work`
    in each worker, jobs that name the results folder, and the driver's environment in the manifest."""

    name = "remote"
    device = "cpu"
    threads: int | None = None  # torch threads per worker: the CPUs a task or job is given (None: torch's default)
    gpu_share = 1.0  # of a GPU each task is given (Ray's --gpus-per-task): what --pack auto may plan to fill
    options: Options  # what the command line asked for

    def check(self) -> None:
        pass

    def jobs(self, plan: Plan, runs: list[PlanRun], results: ResultsDir, pack: int | str) -> list[Job]:
        """Packs of `pack` runs; with 'auto', each group of compatible runs in chunks of at most AUTO_MAX_PACK,
        which the worker packs by its own device's memory."""
        if pack == "auto":
            chunks = [g[i:i + AUTO_MAX_PACK] for g in groups(plan, runs) for i in range(0, len(g), AUTO_MAX_PACK)]
            ids = [[r.id for r in c] for c in chunks]
        else:
            ids = [p.runs for p in make_packs(plan, runs, int(pack))]
        common = {"results": str(results.root), "device": self.device, "pack": pack, "dtype": self.options.dtype,
                  "threads": self.threads, "track": self.options.track, "gpu_share": self.gpu_share}
        return [Job(index=i, runs=tuple(r), after=after, **common) for i, (r, after) in enumerate(ordered(plan, ids))]

    def watch(self, plan: Plan, jobs: list[Job], results: ResultsDir, progress: Progress) -> FolderWatch:
        """What tells `progress` of the jobs' runs: their folders, which the workers write."""
        by_id = {r.id: r for r in plan.runs}
        return FolderWatch(results, [by_id[i] for job in jobs for i in job.runs], progress)

    def environment(self) -> dict:
        """The driver's; each run.json has its worker's."""
        from gstc.provenance import environment as code_environment

        return {**code_environment(), "executor": self.name, "torch": torch.__version__,
                "python": platform.python_version(),
                "device": f"{self.device} on {self.name} workers (each run.json names its worker's)"}

    def close(self) -> None:
        pass

    def on_interrupt(self) -> str:
        return (f"its {self.name} workers stop with it; their runs resume from their last checkpoints (at most an "
                "epoch lost) on the next `gstc run`")


def ordered(plan: Plan, packs: list[list[str]]) -> list[tuple[list[str], tuple[int, ...]]]:
    """Each pack with the indices of the packs that train the runs its runs start from (a lottery level waits on
    the levels before it). Packs come in plan order, so every such pack is an earlier one."""
    where = {rid: i for i, runs in enumerate(packs) for rid in runs}
    by_id = {r.id: r for r in plan.runs}
    return [(runs, tuple(sorted({where[need] for rid in runs for need in by_id[rid].needs if need in where})))
            for runs in packs]


def plan_for_workers(plan: Plan, base: Path | None = None) -> str:
    """The plan's JSON as workers get it: every relative `data.root` made absolute against the driver's
    folder (`base`, default the current one), where `gstc run` found it; a Ray worker's folder is where
    `ray start` ran and a Slurm job's where it was submitted, and neither need be the driver's."""
    base = Path.cwd() if base is None else base
    configs = []
    for c in plan.configs:
        data = c.resolved.data
        if not Path(data.root).is_absolute():
            data = data.model_copy(update={"root": str((base / data.root).resolve())})
            c = c.model_copy(update={"resolved": c.resolved.model_copy(update={"data": data})})
        configs.append(c)
    return plan.model_copy(update={"configs": configs}).model_dump_json()


def last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
