"""`--executor ray`: each job a Ray task (Ray core) asking for `num_gpus` (1 or a fraction) or one CPU.

A task that fails (an exception, or its worker process or node died) is retried up to
RETRIES times; a retry claims its runs again and resumes them from their checkpoints.
"""

from __future__ import annotations

from gstc.executor_options import RayOptions
from gstc.locks import JOB_ENV
from gstc.paths import ResultsDir
from gstc.plan import Plan
from gstc.runtime.executors import ExecutorError, POLL_SECONDS, RETRIES, Remote, Report, last_line, plan_for_workers
from gstc.runtime.jobs import Job, JobResult
from gstc.runtime.progress import Progress
from gstc.runtime.worker import permanent, work


ADDRESS_TIMEOUT = 10.0  # seconds to reach a Ray head given by --address before giving up


class Retryable(Exception):
    """A task's failure that another attempt may not meet (I/O, a lost device): the only kind Ray retries."""


def ray_work(plan_json: str, job: Job, *after: JobResult) -> JobResult:
    """The task: `work`, with its failures sorted into those worth a retry and those that would fail again.
    `after`: the results of the tasks it waits on (a lottery level's inputs, passed so that Ray orders them)."""
    import os

    import ray

    os.environ[JOB_ENV] = f"ray task {ray.get_runtime_context().get_task_id()}"  # in its locks: `gstc status`
    try:
        return work(plan_json, job)
    except Exception as exc:
        if permanent(exc):
            raise  # not in retry_exceptions: Ray reports it at once
        raise Retryable(f"{type(exc).__name__}: {exc}") from exc


def probe(address: str, timeout: float = ADDRESS_TIMEOUT) -> None:
    """Refuse a HOST:PORT where nothing answers within `timeout` s: ray.init would retry it forever."""
    import socket

    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ExecutorError(f"--address: expected auto or HOST:PORT (the head's GCS port, 6379 unless `ray start "
                            f"--port` said otherwise), found {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ExecutorError(f"--address {address}: no Ray cluster answers there ({reason} within {timeout:g} s); "
                            "check the head's address and port (`ray status` on the head prints it)") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray, which is not installed: pip install 'gstc[ray]'") from None
    return ray


class RayExecutor(Remote):
    """`address`: 'auto', 'HOST:PORT', or None to start a local Ray for the call."""

    name = "ray"

    def __init__(self, options: RayOptions, retries: int = RETRIES, init: dict | None = None) -> None:
        self.options = options
        device, address, gpus_per_task, cpus = options.device, options.address, options.gpus_per_task, options.cpus
        self.ray = _import_ray()
        self.requested, self.address, self.gpus_per_task = device, address, gpus_per_task
        self.cpus = 1 if cpus is None else cpus
        if self.cpus < 1:
            raise ExecutorError(f"--cpus-per-task: expected 1 or more, found {self.cpus}")
        self.threads = self.cpus  # Ray sets OMP_NUM_THREADS=1 in its workers; a task computes with its CPUs
        self.retries, self.init_kwargs = retries, dict(init or {})
        self.started = False
        self.logs: str | None = None
        self.device = "cpu"
        if device.startswith("cuda:"):
            raise ExecutorError(f"--device {device}: Ray assigns each task its GPU; use --device cuda (or auto)")
        if gpus_per_task is not None and not 0 < gpus_per_task <= 1:
            raise ExecutorError(f"--gpus-per-task: expected a number in (0, 1] (a pack trains on one GPU), "
                                f"found {gpus_per_task:g}")

    def check(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            if self.address not in (None, "auto"):
                probe(self.address)
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level="warning", **self.init_kwargs)
            except Exception as exc:  # ConnectionError (no cluster there), ValueError, RuntimeError
                hint = " (start one with `ray start --head`, or leave out --address for a local Ray)" if self.address else ""
                raise ExecutorError(f"cannot start or reach {where}: {last_line(exc)}{hint}") from None
            self.started = True
        try:  # where Ray keeps this session's worker logs, for the messages about failed tasks
            self.logs = f"{ray._private.worker.global_worker.node.get_session_dir_path()}/logs"
        except Exception:  # a Ray without that internal: the messages say less
            self.logs = None
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
        self.gpu_share = self.gpus_per_task or 1.0  # other tasks may share the GPU: --pack auto sizes to this share

    def run(self, plan: Plan, jobs: list[Job], results: ResultsDir, progress: Progress) -> Report:
        ray = self.ray
        report = Report()
        task = ray.remote(ray_work)
        # max_retries also covers a dead worker process or node; exceptions are retried only when Retryable
        options = {"num_cpus": self.cpus, "num_gpus": self.num_gpus, "max_retries": self.retries,
                   "retry_exceptions": [Retryable]}
        plan_ref = ray.put(plan_for_workers(plan))
        refs: list = []  # by job index; a job's "after" are earlier jobs: Ray starts it when their tasks succeeded
        for job in jobs:
            refs.append(task.options(name=f"gstc {plan.spec} pack {job.index}", **options).remote(
                plan_ref, job, *[refs[i] for i in job.after]))
        pending = dict(zip(refs, jobs))
        watch = self.watch(plan, jobs, results, progress)
        failed: set[int] = set()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_SECONDS)
            watch.poll()
            for ref in sorted(ready, key=lambda r: pending[r].index):  # a job's inputs before it
                job = pending.pop(ref)
                waited = [i for i in job.after if i in failed]
                try:
                    report.merge(ray.get(ref))
                except ray.exceptions.RayError as exc:
                    failed.add(job.index)
                    if waited:  # Ray did not start it: a task it waits on failed
                        report.stopped.update({rid: f"it starts from the runs of pack {waited[0]}, whose task failed "
                                                    "(above)" for rid in job.runs})
                        continue
                    cause = getattr(exc, "cause", None) or exc
                    if isinstance(cause, Retryable) or not isinstance(exc, ray.exceptions.RayTaskError):
                        # Retryable's text names the original exception; a dead worker's is Ray's own error
                        last = last_line(cause) if isinstance(cause, Retryable) else f"{type(cause).__name__}: {last_line(cause)}"
                        report.errors.append(f"{job.text()}: its Ray task failed {self.retries + 1} times; last: "
                                             f"{last}" + (f"; Ray's worker logs: {self.logs}" if self.logs else ""))
                    else:
                        why = f"{type(cause).__name__}: {last_line(cause)}"
                        report.errors.append(f"{job.text()}: its Ray task failed with {why} (not retried: another "
                                             "attempt would fail the same way)")
                        report.stopped.update({rid: f"pack {job.index} failed (above)" for rid in job.runs})
        watch.poll(now=True)
        return report

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False
