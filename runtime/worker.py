"""The unit of work of every executor: `run_pack` trains one pack of runs, here, to the end.

It claims the pack's runs (gstc.locks), so that no run is trained by two workers
at once; skips those done; checks the others' files (a run whose run.json, JSONL files
or checkpoint cannot be read is reported as damaged, left as it is, and the others go
on); resumes them from their checkpoints; and trains them with the trainer's callbacks
for result files, flatness, checkpoints and progress. A run whose lock another worker
took over (its heartbeat was late) is stopped at the next epoch boundary: the worker
asks the trainer to stop there, and reports it.

`work` is the same for a worker process, a Ray task or a Slurm job: a `Job` in, a
`JobResult` (each run's `Outcome`) out (gstc.runtime.jobs). Every executor writes the
same results layout, so status, report and diff do not care which one ran.
"""

from __future__ import annotations

import gc
import os
import socket
import time
from typing import Iterable

import torch

from gstc.jsonio import DamagedFile, read_json, read_jsonl, write_json
from gstc.paths import ResultsDir
from gstc.runstate import read_run, run_status
from gstc.packs import groups, make_packs
from gstc.plan import Plan, PlanConfig, PlanRun
from gstc import locks
from gstc.claims import claim_runs, record_claim
from gstc.plugins import import_path
from gstc.runtime import stages
from gstc.runtime.callbacks import Flatness, RunFiles
from gstc.runtime.checkpoint import Checkpoints, epoch_of
from gstc.runtime.batches import pack_input
from gstc.runtime.data import Dataset, load
from gstc.runtime.jobs import Job, JobResult, Outcome
from gstc.runtime.progress import Progress, Quiet
from gstc.runtime.tracking import Tracking
from gstc.runtime.train import Callback, PackOutOfMemory, Trainer


def resolve_device(name: str) -> torch.device:
    """auto: the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA device (torch {torch.__version__}); use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "cuda":
        strict_fp32()
    return device


def strict_fp32() -> None:
    """fp32 means fp32 on CUDA: no TF32 in convolutions (cuDNN's default allows it on Ampere and later, with a
    10-bit mantissa) nor in matrix products; run.json's environment records the setting (`tf32`)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class _Epochs(Callback):
    """The trainer's epochs, to the progress display, after the files and the checkpoint are written."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def epoch_end(self, trainer: Trainer, epoch: int, records: dict[int, dict]) -> None:
        for m in trainer.alive:
            if m.k in records:
                self.progress.epoch(m.run, records[m.k])


def _dataset(config: PlanConfig, device: torch.device, cache: dict[str, Dataset]) -> Dataset:
    key = config.resolved.data.model_dump_json()
    if key not in cache:
        cache[key] = load(config.resolved.data, device)
    return cache[key]


def inspect(results: ResultsDir, run_id: str, first: int = 1) -> tuple[int | None, dict | None]:
    """(the epoch its checkpoint resumes from, None when it starts afresh; {"file", "reason"} when a file is damaged).
    `first`: the first epoch the run trains (a lottery level rewound to epoch k trains from k + 1)."""
    try:
        read_run(results, run_id)
        epochs = read_jsonl(results.epochs_jsonl(run_id))
        read_jsonl(results.events_jsonl(run_id))
        if results.flatness_json(run_id).exists():
            read_json(results.flatness_json(run_id))
        start = epoch_of(results, run_id)
    except DamagedFile as exc:
        return None, {"file": str(exc.path), "reason": exc.reason}
    missing = sorted(set(range(first, (start or 0) + 1)) - {r.get("epoch") for r in epochs})
    if missing:
        return None, {"file": str(results.epochs_jsonl(run_id)),
                      "reason": f"has no record of epoch{'s' * (len(missing) > 1)} {', '.join(map(str, missing[:5]))}"
                                f"{', ...' if len(missing) > 5 else ''}, which the checkpoint (epoch {start}) has trained"}
    return start, None


def _mark_damaged(results: ResultsDir, run: PlanRun, damage: dict, progress: Progress, outcomes: list[Outcome]) -> None:
    write_json(results.damaged_json(run.id), {**damage, "time": time.time()})
    outcomes.append(Outcome(run=run, status="damaged", info=damage))
    progress.end_run(run, outcomes[-1])


def run_pack(plan: Plan, runs: list[PlanRun], results: ResultsDir, device: torch.device,
             progress: Progress | None = None, dtype: torch.dtype = torch.float32,
             datasets: dict[str, Dataset] | None = None, track: list[str] | tuple[str, ...] = ()) -> list[Outcome]:
    """Train one pack (compatible runs, see gstc.packs) to completion; the unit of work of every executor.

    The members are claimed: a member another live worker holds is left to it and
    reported to `progress.busy`; a stale lock (its worker died) is taken over. A claimed
    member found done (by a worker before this one) is released; one whose files cannot
    be read is reported to `progress.end_run` as damaged and left as it is. The others resume from their own checkpoints;
    those at different epochs (a kill between two members' checkpoint writes) train as
    separate packs, each from its own epoch. Every claim is appended to the run's
    claims.jsonl. `datasets` caches loaded data between packs of one process; `track` names the trackers
    (gstc.runtime.tracking) that follow the runs.
    """
    progress = progress or Quiet()
    datasets = {} if datasets is None else datasets
    outcomes: list[Outcome] = []
    # import_path: own architectures and datasets (module:attribute) are looked up in the spec's folder first
    with import_path(plan.paths), claim_runs(results, [r.id for r in runs]) as claims:
        for run in runs:
            if run.id in claims.busy:
                progress.busy(run, claims.busy[run.id])
                outcomes.append(Outcome(run=run, status="busy", info=claims.busy[run.id]))
        by_start: dict[int | None, list[PlanRun]] = {}
        for run in runs:
            if run.id not in claims.held:
                continue
            # Done since the driver decided to train it (by a worker before this one, or a retried job's own
            # earlier attempt): the claim makes this reading final.
            if run_status(results, run.id) == "done":
                claims.release(run.id)
                continue
            waiting = stages.blocked(plan, results, run)
            if waiting is not None:  # a lottery level whose input is not done: it waits (the driver says why)
                outcomes.append(Outcome(run=run, status="blocked", info={"reason": waiting}))
                claims.release(run.id)
                continue
            start, damage = inspect(results, run.id, first=run.stage.start + 1 if run.stage else 1)
            if damage is not None:
                _mark_damaged(results, run, damage, progress, outcomes)
                claims.release(run.id)
                continue
            broken = stages.damaged_input(results, run) if start is None else None
            if broken is not None:  # a file of the run it starts from: that run's results stand, this one waits
                source = broken["run"]
                reason = (f"it starts from run {source}, whose {broken['file']} {broken['reason']} "
                          f"(`gstc run --restart {source}` trains that run again)")
                outcomes.append(Outcome(run=run, status="blocked", info={"reason": reason}))
                claims.release(run.id)
                continue
            results.damaged_json(run.id).unlink(missing_ok=True)  # readable now (a file was put back)
            record_claim(results, run.id, claims.locks[run.id].owner, start or 0)
            by_start.setdefault(start, []).append(run)
        queue = list(by_start.values())
        while queue:
            members = queue.pop(0)
            configs = [plan.config(r.config) for r in members]
            ids = {r.id for r in members}
            checkpoints = Checkpoints(results)
            trainer = Trainer(members, configs, _dataset(configs[0], device, datasets), device, dtype,
                              callbacks=[RunFiles(results), Flatness(results), stages.RewindPoints(results),
                                         checkpoints, _Epochs(progress)]
                              + ([Tracking(results, plan.spec, list(track))] if track else []),
                              stop=lambda ids=ids: bool(claims.lost & ids))
            if members[0].stage is not None and members[0].stage.level > 0:  # a lottery level (alone): its start
                trainer.plugins.append(stages.Stage(trainer, results))
            try:
                resumed = checkpoints.restore(trainer)
            except (DamagedFile, RuntimeError, KeyError, ValueError) as exc:
                if len(members) > 1:  # find the member whose checkpoint does not load: each alone
                    queue[:0] = [[r] for r in members]
                    continue
                path = getattr(exc, "path", results.checkpoint(members[0].id))
                reason = getattr(exc, "reason", f"does not load into this run's model ({type(exc).__name__}: {exc})")
                _mark_damaged(results, members[0], {"file": str(path), "reason": reason}, progress, outcomes)
                claims.release(members[0].id)
                continue
            progress.start_pack(members, resumed or 0)
            try:
                trainer.execute(resumed)
            except PackOutOfMemory:  # --pack too large for this device (or for what other tasks left of it)
                del trainer
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                half = len(members) // 2
                queue[:0] = [members[:half], members[half:]]  # each half resumes from its checkpoints
                continue
            for m in trainer.members:
                claims.release(m.run.id)
                if trainer.finished(m) or m.failure is not None:
                    outcome = Outcome(run=m.run, status="done" if m.failure is None else "failed",
                                      info=read_run(results, m.run.id) or {})
                else:  # its lock was taken over: the new holder resumes it from the last checkpoint
                    holder = locks.describe(locks.read_lock(results.lock(m.run.id)))
                    outcome = Outcome(run=m.run, status="stopped", info={"epoch": trainer.epoch, "holder": holder})
                progress.end_run(m.run, outcome)
                outcomes.append(outcome)
            del trainer
    return outcomes


AUTO_MAX_PACK = 32  # --pack auto never packs more runs than this
AUTO_MEMORY_FRACTION = 0.6  # of the GPU's memory a pack may plan to use (the rest: allocator slack, evaluation)


def auto_pack_size(plan: Plan, group: list[PlanRun], device: torch.device, data: Dataset, share: float = 1.0) -> int:
    """--pack auto: on CUDA, as many runs as fit in AUTO_MEMORY_FRACTION of the GPU's memory this task may use (the
    smaller of the memory free now, which other processes' use leaves, and `share` of the total, what Ray's
    --gpus-per-task gives the task), from the peak memory of one training step of a single run; on the CPU, 1: memory says
    nothing there, and packs pay only for narrow models (benchmarks/RESULTS.md: ResNet20/56
    at width 0.25 gain 1.6-2.4x with packs of 2-4; VGG11 and ResNet18 lose), so a pack size
    on the CPU is the user's explicit --pack K.
    """
    if device.type != "cuda" or len(group) == 1:
        return 1
    config = plan.config(group[0].config)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    probe = Trainer([group[0]], [config], data, device)
    batch = data.train_x[: probe.batch_size].permute(0, 2, 3, 1)[None]
    with probe.autocast:
        out = probe.model(pack_input(batch, data, probe.dtype, probe.channels_last))
    out.float().sum().backward()
    probe.opt.step()
    peak = torch.cuda.max_memory_allocated(device) - base
    del probe, out
    gc.collect()  # the Trainer holds reference cycles (pruners' recorders): free its memory now, not at some later gc
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(_index(device))
    usable = min(free, share * total - base)  # base: this process's data, already on the device
    return max(1, min(AUTO_MAX_PACK, len(group), int(AUTO_MEMORY_FRACTION * usable / max(peak, 1))))


def _index(device: torch.device) -> int:
    """A CUDA device's index (torch.cuda.mem_get_info takes an int on every torch gstc supports)."""
    return device.index if device.index is not None else torch.cuda.current_device()


def local_packs(plan: Plan, runs: Iterable[PlanRun], device: torch.device, pack: int | str = 1,
                datasets: dict[str, Dataset] | None = None, share: float = 1.0) -> list[list[PlanRun]]:
    """The runs in packs: of `pack` runs, or with 'auto', sized by this device's memory."""
    by_id = {r.id: r for r in plan.runs}
    todo = list(runs)
    datasets = {} if datasets is None else datasets
    packs = []
    with import_path(plan.paths):  # own architectures and datasets: the spec's folder first
        for group in groups(plan, todo):
            size = pack
            if pack == "auto":
                data = _dataset(plan.config(group[0].config), device, datasets)
                size = auto_pack_size(plan, group, device, data, share)
            packs += make_packs(plan, group, int(size))
    return [[by_id[i] for i in p.runs] for p in packs]


# Failures that would fail again: bad input (a dataset that is not there, a model that does not match its
# layer table, a module that does not import), not the machine. Everything else (I/O, a lost device, a
# killed process) is worth another attempt, which resumes from the checkpoints.
PERMANENT = (ValueError, TypeError, KeyError, AttributeError, ImportError, NotImplementedError, FileNotFoundError,
             PermissionError, IsADirectoryError, NotADirectoryError)


def permanent(exc: BaseException) -> bool:
    """Whether another attempt of the job would fail the same way (then it is not retried)."""
    from gstc.runtime.data import DataError

    return isinstance(exc, PERMANENT + (DataError,))


def work(plan_json: str, job: Job) -> JobResult:
    """Carry out one job in a worker; raises on failure (the executor reports it, Ray retries it)."""
    plan = Plan.model_validate_json(plan_json)
    results = ResultsDir(job.results)
    if job.threads:
        # The executor decides, from the CPUs the task or job was given: Ray sets OMP_NUM_THREADS=1 in its
        # workers and Slurm may bind fewer CPUs than the node has; the count is recorded in each run.json.
        torch.set_num_threads(job.threads)
    device = resolve_device(job.device)
    dtype = getattr(torch, job.dtype)
    by_id = {r.id: r for r in plan.runs}
    datasets: dict = {}
    outcomes: list[Outcome] = []
    for members in local_packs(plan, [by_id[i] for i in job.runs], device, job.pack, datasets, job.gpu_share):
        outcomes += run_pack(plan, members, results, device, None, dtype, datasets, job.track)
    return JobResult(host=socket.gethostname(), pid=os.getpid(), device=str(device), outcomes=tuple(outcomes))
