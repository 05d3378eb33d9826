"""`--executor local` on one device: packs one after another in this process, with per-epoch progress."""

from __future__ import annotations

import os
import socket

import torch

from gstc.executor_options import LocalOptions
from gstc.paths import ResultsDir
from gstc.plan import Plan, PlanRun
from gstc.runtime.environment import environment
from gstc.runtime.executors import Report
from gstc.runtime.jobs import Job, JobResult
from gstc.runtime.progress import Progress
from gstc.runtime.worker import local_packs, resolve_device, run_pack


class InProcess:
    """Trains here, on the options' device ('auto': the first CUDA device, else the CPU)."""

    name = "local"

    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        self.torch_device = resolve_device(self.options.device)  # ValueError: a device this machine lacks
        self.device = str(self.torch_device)
        self.dtype = getattr(torch, self.options.dtype)
        self._datasets: dict = {}  # data loaded once, for every pack of this process

    def check(self) -> None:
        pass

    def jobs(self, plan: Plan, runs: list[PlanRun], results: ResultsDir, pack: int | str) -> list[Job]:
        packs = local_packs(plan, runs, self.torch_device, pack, self._datasets)
        return [Job(index=i, runs=tuple(r.id for r in p), results=str(results.root), device=self.device, pack=len(p),
                    dtype=self.options.dtype, track=self.options.track) for i, p in enumerate(packs)]

    def run(self, plan: Plan, jobs: list[Job], results: ResultsDir, progress: Progress) -> Report:
        report = Report()
        by_id = {r.id: r for r in plan.runs}
        for job in jobs:
            outcomes = run_pack(plan, [by_id[i] for i in job.runs], results, self.torch_device, progress,
                                self.dtype, self._datasets, job.track)
            report.merge(JobResult(host=socket.gethostname(), pid=os.getpid(), device=self.device, outcomes=tuple(outcomes)))
        return report

    def environment(self) -> dict:
        return environment(self.torch_device)

    def close(self) -> None:
        pass

    def on_interrupt(self) -> str:
        return "training stopped; its runs resume from their last checkpoints (at most an epoch lost) on the next `gstc run`"
