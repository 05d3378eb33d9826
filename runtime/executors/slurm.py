"""`--executor slurm`: a job array, one job per pack, through submitit; cluster 'slurm' (sbatch) or 'local'
(submitit's local mode: the same code path on this machine, without Slurm).

`PackJob` is a `submitit.helpers.Checkpointable`: when Slurm is about to stop a job (its
time limit, a preemption), submitit requeues it with the same arguments; the requeued
job claims the runs again (the lock of the stopped job is stale) and resumes them from
their checkpoints.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from typing import Any

import torch

from gstc.executor_options import SlurmOptions
from gstc.paths import ResultsDir
from gstc.plan import Plan
from gstc.runtime.executors import ExecutorError, POLL_SECONDS, Remote, Report, last_line, plan_for_workers
from gstc.runtime.jobs import Job, JobResult
from gstc.runtime.progress import Progress
from gstc.runtime.worker import work
from gstc.slurm_queue import end_state, live_runs, queue_states, record_submitted

try:
    from submitit.core.utils import UncompletedJobError
    from submitit.helpers import Checkpointable
except ImportError:  # without submitit, SlurmExecutor refuses up front and says how to install it
    Checkpointable = object
else:
    from gstc.runtime.train import INTERRUPTIONS

    INTERRUPTIONS.append(UncompletedJobError)  # raised in a job stopped at its time limit and not requeued

LOCAL_SLURM_TIME = 7 * 24 * 60  # minutes: --slurm-cluster local without --slurm-time


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise ExecutorError("--executor slurm needs submitit, which is not installed: pip install 'gstc[slurm]'") from None
    return submitit


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


# submitit requeues a job stopped at its time limit at most this many times; gstc requeues it for as long
# as it progresses (PackJob.checkpoint), so the count is only a backstop.
MAX_REQUEUES = 10_000


def epochs_done(job: Job) -> int:
    """Epochs recorded by the job's runs, summed: what a job attempt adds to it is its progress."""
    results = ResultsDir(job.results)
    total = 0
    for rid in job.runs:
        path = results.epochs_jsonl(rid)
        if path.exists():
            with open(path, "rb") as f:
                total += sum(1 for line in f if line.strip())
    return total


class PackJob(Checkpointable):
    """The callable a job runs: `work(plan_json, job)` in the job's process.

    At its time limit (or a preemption) Slurm signals the job and submitit calls `checkpoint`:
    the job is requeued when its runs recorded an epoch since it started (it resumes from
    the checkpoints), and not when they did not (a time limit shorter than one epoch would
    requeue forever); its runs are then unfinished, not failed, and resume on the next
    `gstc run`.
    """

    start: int | None = None

    def __call__(self, plan_json: str, job: Job) -> JobResult:
        self.start = epochs_done(job)
        return work(plan_json, job)

    def checkpoint(self, plan_json: str, job: Job):  # -> DelayedSubmission | None
        if self.start is not None and epochs_done(job) <= self.start:
            return None  # no epoch since the job started: requeuing would not help
        return super().checkpoint(plan_json, job)


class SlurmExecutor(Remote):
    name = "slurm"

    def __init__(self, options: SlurmOptions) -> None:
        self.options = o = options
        device, partition, time, gpus, cluster, cpus = o.device, o.partition, o.time, o.gpus, o.cluster, o.cpus
        mem, account, qos = o.mem, o.account, o.qos
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
        self.cpus = 1 if cpus is None else cpus
        if self.cpus < 1:
            raise ExecutorError(f"--cpus-per-task: expected 1 or more, found {self.cpus}")
        self.threads = self.cpus  # a job computes with the CPUs Slurm gives it, whatever OMP_NUM_THREADS says
        self.mem, self.account, self.qos = mem, account, qos
        self.extra = _sbatch_options(list(o.options))
        if gpus is None:  # one GPU per job, unless the runs are meant for the CPU or the partition has none
            if device == "cpu" or (self.cluster == "local" and not torch.cuda.is_available()):
                gpus = 0
            elif self.cluster == "slurm" and not partition_gpus(partition):
                if device == "cuda":
                    raise ExecutorError(f"--device cuda: {_partition_text(partition)} has no GPUs (sinfo lists no "
                                        "gres); use --device cpu, or a partition with GPUs (--slurm-partition)")
                gpus = 0  # --device auto on a CPU-only partition: the jobs train on the CPU
            else:
                gpus = 1
        if gpus < 0:
            raise ExecutorError(f"--slurm-gpus: expected 0 or more, found {gpus}")
        if device == "cpu" and gpus > 0:
            raise ExecutorError("--slurm-gpus: the jobs train on the CPU (--device cpu); leave it out or give 0")
        if device == "cuda" and gpus == 0:
            raise ExecutorError("--device cuda with --slurm-gpus 0: the jobs would have no GPU")
        self.gpus = gpus
        self.device = "cuda" if gpus > 0 else "cpu"
        self.held: dict[str, tuple[str, str]] = {}  # run id -> (job id, state) of a live job from an earlier call
        self.arrays: list[str] = []  # the job arrays this call submitted

    def jobs(self, plan: Plan, runs: list, results: ResultsDir, pack: int | str) -> list[Job]:
        """As Remote.jobs, without the runs that live jobs of an earlier `gstc run` hold, queued or running:
        they are left to those jobs (and reported), not submitted twice."""
        self.held = live_runs(results.slurm_submitted(plan.spec)) if self.cluster == "slurm" else {}
        return super().jobs(plan, [r for r in runs if r.id not in self.held], results, pack)

    def on_interrupt(self) -> str:
        if not self.arrays:
            return "no Slurm job had been submitted"
        ids = ",".join(self.arrays)
        return (f"the Slurm jobs go on (job array {ids}: `squeue -j {ids}`; `scancel {ids}` stops them); `gstc run` "
                "again leaves their runs to them and trains the rest")

    def run(self, plan: Plan, jobs: list[Job], results: ResultsDir, progress: Progress) -> Report:
        report = Report()
        report.busy.update({rid: f"Slurm job {job} ({state.lower()}), submitted by an earlier gstc run"
                            for rid, (job, state) in self.held.items()})
        if not jobs:
            return report
        folder = results.slurm_dir(plan.spec)
        executor = self.submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster,
                                              slurm_max_num_timeout=MAX_REQUEUES, local_max_num_timeout=MAX_REQUEUES)
        params: dict[str, Any] = {"name": f"gstc-{plan.spec}", "timeout_min": self.timeout_min,
                                  "gpus_per_node": self.gpus, "nodes": 1, "tasks_per_node": 1,
                                  "cpus_per_task": self.cpus}
        # submitit signals a job 90 s before its time limit by default, which is the whole of a short limit: a
        # quarter of the limit, at most 90 s, leaves an epoch time to end and write its checkpoint.
        params["slurm_signal_delay_s"] = min(90, self.timeout_min * 60 // 4) if self.cluster == "slurm" else None
        if self.cluster == "slurm":
            params.update(slurm_partition=self.partition, slurm_mem=self.mem, slurm_account=self.account,
                          slurm_qos=self.qos, slurm_additional_parameters=self.extra or None)
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        plan_json = plan_for_workers(plan)
        chained = any(job.after for job in jobs)
        # Jobs that wait on others (a lottery's levels): on Slurm each is submitted at once with
        # --dependency=afterok on the jobs it waits on (and --kill-on-invalid-dep, so that one whose input failed
        # leaves the queue instead of waiting forever); submitit's local mode has no dependencies, so the driver
        # submits such a job when those it waits on have succeeded.
        waiting = [job for job in jobs if job.after] if chained and self.cluster == "local" else []
        ids: dict[int, str] = {}  # job index -> Slurm job id
        ended: dict[int, bool] = {}  # job index -> whether it succeeded
        try:
            if not chained:
                submitted = executor.map_array(PackJob(), [plan_json] * len(jobs), jobs)
            else:
                submitted = [self._submit(executor, params, plan_json, job, ids) for job in jobs if job not in waiting]
            ids.update({job.index: sj.job_id for sj, job in zip(submitted, (j for j in jobs if j not in waiting))})
            if self.cluster == "slurm":
                record_submitted(results.slurm_submitted(plan.spec), {ids[job.index]: list(job.runs) for job in jobs})
                self.arrays = sorted({sj.job_id.split("_")[0] for sj in submitted})
        except Exception as exc:  # sbatch refused (a partition that does not exist, a time over its limit)
            why = last_line(exc)
            hint = (f" ({_partition_text(self.partition)} has no GPUs for --slurm-gpus {self.gpus}: use --device cpu "
                    "or --slurm-gpus 0)" if "gres" in why.lower() and self.gpus else "")
            raise ExecutorError(f"Slurm refused the job array: {why}{hint}") from None
        if self.cluster == "slurm" and submitted and not accounting():
            # Without accounting every sacct call fails, printing "Slurm accounting storage is disabled" and
            # submitit's "Bypassing sacct error" twice a poll: stop its calls (its jobs are then done when their
            # result file is there; squeue tells the rest).
            type(submitted[0]).watcher._make_command = lambda: None
        pending = dict(zip(submitted, (j for j in jobs if j not in waiting)))
        watch = self.watch(plan, jobs, results, progress)
        gone: dict[Any, float] = {}  # job -> when it was first seen out of the queue without a result
        polls = 0

        def end(job: Job, sj: Any, why: str) -> None:
            """A job that ended without a result: failed, or (a job it waits on did not succeed) never started."""
            ended[job.index] = False
            inputs = [i for i in job.after if ended.get(i) is False]
            if inputs:
                report.stopped.update({rid: f"it starts from the runs of Slurm job {ids[inputs[0]]}, which did not "
                                            "succeed" for rid in job.runs})
            else:
                report.errors.append(f"{job.text()}: Slurm job {sj.job_id} {why}; log: {sj.paths.stderr}")

        while pending or waiting:
            for job in [j for j in waiting if all(i in ended for i in j.after)]:
                waiting.remove(job)
                if all(ended[i] for i in job.after):
                    sj = self._submit(executor, params, plan_json, job, ids)
                    pending[sj] = job
                else:
                    end(job, None, "")
            time.sleep(POLL_SECONDS)
            watch.poll()
            polls += 1
            for sj in [j for j in pending if j.done()]:
                job = pending.pop(sj)
                gone.pop(sj, None)
                try:
                    report.merge(sj.result())
                    ended[job.index] = True
                except Exception as exc:  # FailedJobError, UncompletedJobError (killed, out of time, ...)
                    end(job, sj, _slurm_reason(sj, exc))
            if self.cluster == "slurm" and pending and polls % QUEUE_POLLS == 0:
                # Without accounting (sacct) submitit never learns that a job ended without a result (cancelled,
                # out of memory, its node lost): a job out of squeue with no result file for GONE_SECONDS has.
                queued = queue_states([sj.job_id for sj in pending])
                now = time.monotonic()
                for sj in list(pending):
                    if queued is None or sj.job_id in queued or sj.paths.result_pickle.exists():
                        gone.pop(sj, None)
                    elif now - gone.setdefault(sj, now) >= GONE_SECONDS:
                        end(pending.pop(sj), sj, f"left the queue without a result (state {end_state(sj.job_id)}: "
                                                 "cancelled, out of time or out of memory?)")
        watch.poll(now=True)
        stray = folder / "%j"  # submitit's local mode makes this empty folder
        if self.cluster == "local" and stray.is_dir() and not any(stray.iterdir()):
            stray.rmdir()
        return report


    def _submit(self, executor: Any, params: dict, plan_json: str, job: Job, ids: dict[int, str]) -> Any:
        """One job, with --dependency=afterok on the Slurm jobs of those it waits on (already submitted)."""
        extra = dict(self.extra)
        if job.after and self.cluster == "slurm":
            extra.update(dependency="afterok:" + ":".join(ids[i] for i in job.after), kill_on_invalid_dep="yes")
        if self.cluster == "slurm":
            executor.update_parameters(slurm_additional_parameters=extra)
        sj = executor.submit(PackJob(), plan_json, job)
        ids[job.index] = sj.job_id
        return sj


QUEUE_POLLS = 5  # the driver asks squeue every this many polls
GONE_SECONDS = 20.0  # a job out of squeue this long without a result file ended without one (shared storage lags)


def accounting() -> bool:
    """Whether this Slurm keeps accounting (`sacct` answers): many clusters lack or restrict it."""
    import subprocess

    try:
        proc = subprocess.run(["sacct", "-n", "-X", "-o", "JobID", "-S", "now"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _partition_text(partition: str | None) -> str:
    return f"partition {partition}" if partition else "the default partition"


def partition_gpus(partition: str | None) -> bool:
    """Whether a node of the partition (default: the default one) has a GPU, from `sinfo`'s gres column."""
    import subprocess

    cmd = ["sinfo", "-h", "-o", "%G"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return True  # cannot tell: ask for the GPU, and sbatch says if there is none
    return any("gpu" in line for line in out.splitlines())


def _sbatch_options(options: list[str]) -> dict[str, str]:
    """`--slurm-option KEY=VALUE` (or a bare flag KEY) -> submitit's slurm_additional_parameters."""
    extra = {}
    for option in options:
        key, eq, value = option.lstrip("-").partition("=")
        if not key:
            raise ExecutorError(f"--slurm-option: expected an sbatch option such as constraint=a100, found {option!r}")
        extra[key.replace("-", "_")] = value if eq else ""
    return extra


def _slurm_reason(job: Any, exc: BaseException) -> str:
    """Why a submitit job has no result: the exception it raised, or its state (killed, out of time, ...)."""
    text = str(exc)
    if "checkpoint function returned None" in text:
        return ("stopped at its time limit with no epoch finished since it started, so it was not requeued: its runs "
                "are unfinished and resume from their checkpoints on the next `gstc run` (give a --slurm-time longer "
                "than an epoch)")
    if "failed during processing" in text:  # FailedJobError: the job's traceback between two rules
        parts = [p for p in text.split("-" * 22) if p.strip()]
        trace = parts[1] if len(parts) > 1 else text
        return f"failed: {last_line(Exception(trace.strip().strip('-')))}"
    try:
        state = job.state
    except Exception:  # sacct unavailable
        state = "unknown"
    return f"ended without a result (state {state}: killed, out of time or out of memory?)"
