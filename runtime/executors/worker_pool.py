"""`--executor local --gpus 0,1`: one spawned worker process per device, each taking the next job when free."""

from __future__ import annotations

import multiprocessing
import os
import queue as queues
from collections import deque
from typing import Any

import torch

from gstc.executor_options import LocalOptions
from gstc.paths import ResultsDir
from gstc.plan import Plan
from gstc.runtime.executors import ExecutorError, POLL_SECONDS, RETRIES, Remote, Report, last_line, plan_for_workers
from gstc.runtime.jobs import Job
from gstc.runtime.progress import Progress
from gstc.runtime.worker import work


def _pool_worker(device: str, plan_json: str, inbox: Any, outbox: Any) -> None:
    """A worker process: carries out the jobs the driver sends it until it gets None."""
    me = os.getpid()
    while (job := inbox.get()) is not None:
        try:
            result = work(plan_json, job.model_copy(update={"device": device}))
        except Exception as exc:
            outbox.put(("error", me, job.index, f"{type(exc).__name__}: {last_line(exc)}"))
        else:
            outbox.put(("done", me, job.index, result))


class WorkerPool(Remote):
    """One worker process per device, pulling jobs from the pool's queue. A job whose worker raised, or died, is
    queued again (up to `retries` times, like a Ray task) and resumes from its checkpoints; a dead worker is
    replaced, and the others go on undisturbed."""

    name = "local"  # --executor local, with --gpus

    def __init__(self, devices: list[str], retries: int = RETRIES, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        if not devices:
            raise ExecutorError("--gpus: no device given")
        self.devices, self.retries = devices, retries
        # Each worker computes with its share of the cores (torch's default is every core, in every worker).
        self.threads = max(1, (os.cpu_count() or 1) // len(devices))
        self.device = devices[0].split(":")[0]

    def check(self) -> None:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        missing = [d for d in self.devices if d.startswith("cuda") and int(d.partition(":")[2] or 0) >= count]
        if missing:
            have = f"CUDA devices 0 to {count - 1}" if count else "no CUDA device"
            raise ExecutorError(f"--gpus: this machine has {have}, not {', '.join(missing)}; "
                                f"leave out --gpus to train here on one device")

    def run(self, plan: Plan, jobs: list[Job], results: ResultsDir, progress: Progress) -> Report:
        report = Report()
        if not jobs:
            return report
        watch = self.watch(plan, jobs, results, progress)
        ctx = multiprocessing.get_context("spawn")
        outbox = ctx.Queue()
        plan_json = plan_for_workers(plan)
        workers: dict[int, tuple[str, Any, Any]] = {}  # pid -> (device, process, inbox)
        idle: list[int] = []
        assigned: dict[int, int] = {}  # worker pid -> index of the job it carries out
        pending = deque(job.index for job in jobs)
        failures = {job.index: 0 for job in jobs}
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
                report.errors.append(f"{jobs[index].text()}: failed {failures[index]} times; last: {why}")
            else:
                pending.append(index)

        for device in self.devices:
            start(device)
        try:
            while len(resolved) < len(jobs):
                # A job whose "after" jobs are not all ended waits (a lottery level, for the level it starts from).
                while idle and (index := next((i for i in pending if set(jobs[i].after) <= resolved), None)) is not None:
                    pending.remove(index)
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
                        report.merge(payload)
                    elif kind == "error":
                        retry(index, payload)
                watch.poll()
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
            watch.poll(now=True)
        finally:
            for _, proc, inbox in workers.values():
                inbox.put(None)
            for _, proc, _ in workers.values():
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
        return report
