"""The data that travels between the driver and its workers: a `Job` goes out, a `JobResult` comes back.

A job is a pack (or, with `--pack auto`, a chunk of compatible runs the worker packs by
its own device's memory) of runs the driver decided are not done; each run of it ends in
an `Outcome`. The same types whichever executor carries the job: in this process, a
worker process, a Ray task or a Slurm job (they are pickled on the way, so they hold
plain data and the plan's own models).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gstc.plan import PlanRun

Status = Literal["done", "failed", "stopped", "damaged", "busy", "blocked"]


class Job(BaseModel):
    """One unit of work for a worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(description="Its position in the driver's list of jobs; `after` refers to positions.")
    runs: tuple[str, ...] = Field(description="The ids of its runs, in plan order.")
    after: tuple[int, ...] = Field(default=(), description="The jobs that train the runs its runs start from (a "
                                   "lottery's earlier levels): it starts when they have ended.")
    results: str = Field(description="The results folder, as the workers reach it.")
    device: str = Field(description="What the worker trains on: cpu, cuda or cuda:N.")
    pack: int | Literal["auto"] = Field(description="Runs trained together as one packed model; auto: as many as "
                                        "the worker's device memory holds.")
    dtype: str = Field(default="float32", description="The torch dtype of the parameters (float64 in exactness tests).")
    threads: int | None = Field(default=None, description="torch threads in the worker (the CPUs its task or job "
                                "was given); None: torch's default.")
    track: tuple[str, ...] = Field(default=(), description="Trackers that follow the runs (gstc.runtime.tracking).")
    gpu_share: float = Field(default=1.0, description="The fraction of a GPU the task is given: what --pack auto "
                             "may plan to fill.")

    def text(self) -> str:
        """For messages: 'pack 3 (2 runs: a1b2..., c3d4...)'."""
        n = len(self.runs)
        shown = ", ".join(self.runs[:4]) + (", ..." if n > 4 else "")
        return f"pack {self.index} ({n} run{'s' * (n != 1)}: {shown})"


class Outcome(BaseModel):
    """What became of one run of a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: PlanRun = Field(description="The run.")
    status: Status = Field(description="done, failed, stopped (another worker took over its lock), damaged (a file "
                           "does not read), busy (another live worker holds it), blocked (its input is not done).")
    info: dict = Field(default_factory=dict, description="run.json (done, failed); {file, reason} (damaged); the "
                       "lock's holder (busy); {epoch, holder} (stopped); {reason} (blocked).")


class JobResult(BaseModel):
    """What a worker returns for a job: where it ran and each run's outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(description="The worker's host name.")
    pid: int = Field(description="The worker's process id.")
    device: str = Field(description="The device it trained on.")
    outcomes: tuple[Outcome, ...] = Field(default=(), description="One per run it reached, in the order they ended.")
