"""Executors: where a plan's packs train. One module each; `gstc.runtime.driver` is the one driver.

- `in_process.InProcess`: `--executor local` on one device, in this process (the default).
- `worker_pool.WorkerPool`: `--executor local --gpus 0,1`: one worker process per device.
- `ray.RayExecutor`: each job a Ray task; failed tasks are retried and resume from checkpoints.
- `slurm.SlurmExecutor`: a Slurm job array through submitit (`cluster="local"`: submitit's
  local mode, the same code path without Slurm).

An executor (`Executor`) says up front what cannot work (`check`), turns the runs not
done into jobs (`jobs`; a job's "after" lists the jobs whose runs its runs start from: a
lottery's levels, which each executor starts in that order), carries them out (`run`, which returns a `Report` of what the
run folders do not say: failed jobs, runs left to other workers, damaged runs, lost
locks) and cleans up (`close`). Every job ends in `gstc.runtime.worker.work` or
`run_pack`, so locks, skipping, damage checks and resuming are the same whichever
executor ran it. Ray and submitit are optional and imported only by their modules, only
when chosen.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch

from gstc.manifest import ResultsDir, run_status
from gstc.packs import groups, make_packs
from gstc.plan import Plan, PlanRun
from gstc.runtime.worker import AUTO_MAX_PACK, Progress

RETRIES = 3  # a job that fails (an exception, or its worker died) is run again this many times (Ray, worker pool)
POLL_SECONDS = 1.0  # how often the driver looks at remote work (and refreshes the progress display)


class ExecutorError(Exception):
    """Something an executor cannot do, said up front: the CLI prints it and exits 1."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while the executor ran: the message says what became of the work under way (still a
    KeyboardInterrupt, for whatever catches one)."""


@dataclass
class Report:
    """What became of the runs: `lost` and `errors` come from the workers, the rest `gstc.runtime.driver.execute`
    reads from the run folders and the locks once every job has ended."""

    errors: list[str] = field(default_factory=list)  # jobs whose worker failed
    busy: dict[str, str] = field(default_factory=dict)  # run id -> the live worker holding it
    damaged: dict[str, dict] = field(default_factory=dict)  # run id -> {"file", "reason"}
    lost: dict[str, dict] = field(default_factory=dict)  # run id -> {"epoch", "holder"}: stopped, its lock taken over
    failed: list[PlanRun] = field(default_factory=list)  # run.json says failed
    unfinished: list[PlanRun] = field(default_factory=list)  # neither done nor failed nor damaged nor held elsewhere
    stopped: dict[str, str] = field(default_factory=dict)  # run id -> the error that a rerun would meet again

    def merge(self, result: dict) -> None:
        """A worker's summary (gstc.runtime.worker.summary)."""
        self.lost.update(result.get("lost", {}))
        self.stopped.update(result.get("blocked", {}))


Tick = Callable[[], None]  # called every POLL_SECONDS while remote jobs run (the display follows the run folders)


class Executor(Protocol):
    name: str  # for messages: local, ray, slurm
    device: str  # what workers train on: 'cpu', 'cuda' or 'cuda:N'

    def check(self) -> None:
        """Raise ExecutorError for what cannot work, before any run starts."""

    def jobs(self, plan: Plan, runs: list[PlanRun], results: ResultsDir, pack: int | str) -> list[dict]:
        """The runs not done yet, as jobs."""

    def run(self, plan: Plan, jobs: list[dict], results: ResultsDir, progress: Progress, tick: Tick) -> Report:
        """Carry out the jobs; the report of what the run folders do not say."""

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
    track: list[str] = []  # trackers that follow the runs (gstc.runtime.tracking), set by make_executor

    def check(self) -> None:
        pass

    def jobs(self, plan: Plan, runs: list[PlanRun], results: ResultsDir, pack: int | str) -> list[dict]:
        """Packs of `pack` runs; with 'auto', each group of compatible runs in chunks of at most AUTO_MAX_PACK,
        which the worker packs by its own device's memory."""
        todo = [r for r in runs if run_status(results, r.id) != "done"]
        if pack == "auto":
            chunks = [g[i:i + AUTO_MAX_PACK] for g in groups(plan, todo) for i in range(0, len(g), AUTO_MAX_PACK)]
            ids = [[r.id for r in c] for c in chunks]
        else:
            ids = [p.runs for p in make_packs(plan, todo, int(pack))]
        return ordered(plan, [{"index": i, "runs": r, "results": str(results.root), "device": self.device,
                               "pack": pack, "dtype": "float32", "threads": self.threads, "track": self.track,
                               "gpu_share": self.gpu_share}
                              for i, r in enumerate(ids)])

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


def ordered(plan: Plan, jobs: list[dict]) -> list[dict]:
    """Each job with "after": the indices of the jobs that train the runs its runs start from (a lottery level
    waits on the levels before it). Jobs come in plan order, so every such job is an earlier one."""
    where = {rid: job["index"] for job in jobs for rid in job["runs"]}
    by_id = {r.id: r for r in plan.runs}
    for job in jobs:
        job["after"] = sorted({where[need] for rid in job["runs"] for need in by_id[rid].needs if need in where})
    return jobs


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


def job_text(job: dict) -> str:
    n = len(job["runs"])
    return f"pack {job['index']} ({n} run{'s' * (n != 1)}: {', '.join(job['runs'][:4])}{', ...' if n > 4 else ''})"


def last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
