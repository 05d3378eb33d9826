"""`--executor local` on one device: packs one after another in this process, with per-epoch progress."""

from __future__ import annotations

import torch

from gstc.manifest import ResultsDir
from gstc.plan import Plan, PlanRun
from gstc.runtime.environment import environment
from gstc.runtime.executors import Report, Tick
from gstc.runtime.worker import Progress, local_packs, resolve_device, run_pack, summary


class InProcess:
    """Trains here, on `device` ('auto': the first CUDA device, else the CPU); `dtype` float64 for exactness tests."""

    name = "local"

    def __init__(self, device: str = "auto", dtype: torch.dtype = torch.float32) -> None:
        self.torch_device = resolve_device(device)  # ValueError: a device this machine lacks
        self.device = str(self.torch_device)
        self.dtype = dtype
        self._datasets: dict = {}  # data loaded once, for every pack of this process
        self.track: list[str] = []  # trackers that follow the runs (gstc.runtime.tracking), set by make_executor

    def check(self) -> None:
        pass

    def jobs(self, plan: Plan, runs: list[PlanRun], results: ResultsDir, pack: int | str) -> list[dict]:
        packs = local_packs(plan, runs, results, self.torch_device, pack, self._datasets)
        return [{"index": i, "runs": [r.id for r in p]} for i, p in enumerate(packs)]

    def run(self, plan: Plan, jobs: list[dict], results: ResultsDir, progress: Progress, tick: Tick) -> Report:
        report = Report()
        by_id = {r.id: r for r in plan.runs}
        for job in jobs:
            outcomes = run_pack(plan, [by_id[i] for i in job["runs"]], results, self.torch_device, progress,
                                self.dtype, self._datasets, self.track)
            report.merge(summary(outcomes))
        return report

    def environment(self) -> dict:
        return environment(self.torch_device)

    def close(self) -> None:
        pass

    def on_interrupt(self) -> str:
        return "training stopped; its runs resume from their last checkpoints (at most an epoch lost) on the next `gstc run`"
