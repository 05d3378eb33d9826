"""Executors: carry out a plan's packs. `run_local` trains them one after another here;
runtime.cluster runs them in worker processes, on Ray or on Slurm.

`run_pack` is the unit of work of every executor: it claims the pack's runs
(runtime.locks), so that no run is trained by two workers at once, skips those done,
resumes the others from their checkpoints. Every executor writes the same results
layout (gstc.manifest), so status, report and diff do not care which one ran. The
manifest is rebuilt from the run folders at the end, never from a worker's memory.
"""

from __future__ import annotations

import gc
import json
from typing import Iterable

import torch

from gstc.manifest import ResultsDir, run_status, write_manifest
from gstc.packs import groups, make_packs
from gstc.plan import Plan, PlanConfig, PlanRun
from runtime import locks
from runtime.data import Dataset, load, pack_input
from runtime.train import Trainer, environment


def resolve_device(name: str) -> torch.device:
    """auto: the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA device (torch {torch.__version__}); use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


class Progress:
    """Callbacks the CLI's progress display implements; the default does nothing."""

    def start_pack(self, runs: list[PlanRun], done_epochs: int) -> None: ...

    def epoch(self, run: PlanRun, record: dict) -> None: ...

    def end_run(self, run: PlanRun, status: dict) -> None: ...

    def busy(self, run: PlanRun, holder: dict) -> None:
        """Another live worker holds the run's lock (holder: the lock's content): it is left to that worker."""


class _Guard(Progress):
    """Forwards to the caller's progress; stops the pack at an epoch boundary when a lock was lost."""

    def __init__(self, inner: Progress, claims: locks.Claims) -> None:
        self.inner, self.claims = inner, claims

    def start_pack(self, runs: list[PlanRun], done_epochs: int) -> None:
        self.inner.start_pack(runs, done_epochs)

    def epoch(self, run: PlanRun, record: dict) -> None:
        self.inner.epoch(run, record)
        self.claims.check()

    def end_run(self, run: PlanRun, status: dict) -> None:
        self.inner.end_run(run, status)


def _dataset(config: PlanConfig, device: torch.device, cache: dict[str, Dataset]) -> Dataset:
    key = json.dumps(config.resolved["data"], sort_keys=True)
    if key not in cache:
        cache[key] = load(config.resolved["data"], device)
    return cache[key]


def checkpoint_epoch(results: ResultsDir, run_id: str) -> int | None:
    """The epoch of a run's checkpoint (None: none yet); mmap reads the header, not the tensors."""
    path = results.checkpoint(run_id)
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])


def run_pack(plan: Plan, runs: list[PlanRun], results: ResultsDir, device: torch.device,
             progress: Progress | None = None, dtype: torch.dtype = torch.float32,
             datasets: dict[str, Dataset] | None = None) -> list[dict]:
    """Train one pack (compatible runs, see gstc.packs) to completion; the unit of work of every executor.

    Members already done are skipped. The others are claimed (runtime.locks): a member
    another live worker holds is left to it and reported to `progress.busy`; a stale lock
    (its worker died) is taken over. Claimed members resume from their own checkpoints;
    those at different epochs (a kill between two members' checkpoint writes) train as
    separate packs, each from its own epoch. Every claim is appended to the run's
    claims.jsonl. Returns the final run.json of each member trained. `datasets` caches
    loaded data between packs of one process. Raises locks.LockLost, at an epoch
    boundary, if another worker took over a lock of this pack (its heartbeat was late).
    """
    progress = progress or Progress()
    datasets = {} if datasets is None else datasets
    todo = [r for r in runs if run_status(results, r.id) != "done"]
    outcomes = []
    with locks.claim_runs(results, [r.id for r in todo]) as claims:
        for run in todo:
            if run.id in claims.busy:
                progress.busy(run, claims.busy[run.id])
        mine = []
        for run in todo:
            if run.id not in claims.held:
                continue
            if run_status(results, run.id) == "done":  # finished by its previous holder before we claimed it
                claims.release(run.id)
                continue
            mine.append(run)
        by_start: dict[int | None, list[PlanRun]] = {}
        for run in mine:
            start = checkpoint_epoch(results, run.id)
            locks.record_claim(results, run.id, claims.locks[run.id].owner, start or 0)
            by_start.setdefault(start, []).append(run)
        guard = _Guard(progress, claims)
        for start, members in by_start.items():
            configs = [plan.config(r.config) for r in members]
            trainer = Trainer(members, configs, _dataset(configs[0], device, datasets), results, device, dtype,
                              on_epoch=guard.epoch)
            guard.start_pack(members, start or 0)
            for outcome, run in zip(trainer.execute(), members):
                claims.release(run.id)
                guard.end_run(run, outcome)
                outcomes.append(outcome)
    return outcomes


AUTO_MAX_PACK = 32  # --pack auto never packs more runs than this
AUTO_MEMORY_FRACTION = 0.6  # of the GPU's memory a pack may plan to use (the rest: allocator slack, evaluation)


def auto_pack_size(plan: Plan, group: list[PlanRun], device: torch.device, data: Dataset) -> int:
    """--pack auto: on CUDA, as many runs as fit in AUTO_MEMORY_FRACTION of the GPU's memory,
    from the peak memory of one training step of a single run; on the CPU, 1: memory says
    nothing there, and packs pay only for narrow models (benchmarks/RESULTS.md: ResNet20/56
    at width 0.25 gain 1.6-2.4x with packs of 2-4; VGG11 and ResNet18 lose), so a pack size
    on the CPU is the user's explicit --pack K.
    """
    if device.type != "cuda" or len(group) == 1:
        return 1
    config = plan.config(group[0].config)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    probe = Trainer([group[0]], [config], data, ResultsDir("/nonexistent"), device)
    batch = data.train_x[: probe.batch_size].permute(0, 2, 3, 1)[None]
    with probe.autocast:
        out = probe.model(pack_input(batch, data, probe.dtype, probe.channels_last))
    out.float().sum().backward()
    probe.opt.step()
    peak = torch.cuda.max_memory_allocated(device) - base
    del probe, out
    gc.collect()  # the Trainer holds reference cycles (pruners' recorders): free its memory now, not at some later gc
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    return max(1, min(AUTO_MAX_PACK, len(group), int(AUTO_MEMORY_FRACTION * total / max(peak, 1))))


def rebuild_manifest(plan: Plan, results: ResultsDir, env: dict) -> None:
    """Rebuild the spec's manifest from the run folders, under the spec's manifest lock: of two
    processes finishing together, the one that writes last has read the other's runs."""
    with locks.hold(results.manifest_lock(plan.spec)):
        write_manifest(plan, results, env)


def local_packs(plan: Plan, runs: Iterable[PlanRun], results: ResultsDir, device: torch.device,
                pack: int | str = 1, datasets: dict[str, Dataset] | None = None) -> list[list[PlanRun]]:
    """The runs not done yet, in packs: of `pack` runs, or with 'auto', sized by this device's memory."""
    by_id = {r.id: r for r in plan.runs}
    todo = [r for r in runs if run_status(results, r.id) != "done"]
    datasets = {} if datasets is None else datasets
    packs = []
    for group in groups(plan, todo):
        size = pack
        if pack == "auto":
            data = _dataset(plan.config(group[0].config), device, datasets)
            size = auto_pack_size(plan, group, device, data)
        packs += make_packs(plan, group, int(size))
    return [[by_id[i] for i in p.runs] for p in packs]


def run_local(plan: Plan, runs: Iterable[PlanRun], results: ResultsDir, device: torch.device,
              progress: Progress | None = None, dtype: torch.dtype = torch.float32, pack: int | str = 1) -> list[dict]:
    """Train every run not already done, pack after pack, here; then rebuild the manifest."""
    datasets: dict[str, Dataset] = {}
    outcomes = []
    for members in local_packs(plan, runs, results, device, pack, datasets):
        outcomes += run_pack(plan, members, results, device, progress, dtype, datasets)
    rebuild_manifest(plan, results, environment(device))
    return outcomes
