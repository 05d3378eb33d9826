"""Executors: carry out a plan's packs. `local` trains them one after another here.

Every executor writes the same results layout (gstc.manifest), so status, report and
diff do not care which one ran. The manifest is rebuilt from the run folders at the
end, never from this process's memory.
"""

from __future__ import annotations

import json
from typing import Iterable

import torch

from gstc.manifest import ResultsDir, run_status, write_manifest
from gstc.packs import groups, make_packs
from gstc.plan import Plan, PlanConfig, PlanRun
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

    Members already done are skipped. Members resume from their own checkpoints; those
    at different epochs (a kill between two members' checkpoint writes) train as
    separate packs, each from its own epoch. Returns the final run.json of each member
    attempted. `datasets` caches loaded data between packs of one process.
    """
    progress = progress or Progress()
    datasets = {} if datasets is None else datasets
    todo = [r for r in runs if run_status(results, r.id) != "done"]
    by_start: dict[int | None, list[PlanRun]] = {}
    for run in todo:
        by_start.setdefault(checkpoint_epoch(results, run.id), []).append(run)
    outcomes = []
    for start, members in by_start.items():
        configs = [plan.config(r.config) for r in members]
        trainer = Trainer(members, configs, _dataset(configs[0], device, datasets), results, device, dtype,
                          on_epoch=progress.epoch)
        progress.start_pack(members, start or 0)
        for outcome, run in zip(trainer.execute(), members):
            progress.end_run(run, outcome)
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
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    return max(1, min(AUTO_MAX_PACK, len(group), int(AUTO_MEMORY_FRACTION * total / max(peak, 1))))


def run_local(plan: Plan, runs: Iterable[PlanRun], results: ResultsDir, device: torch.device,
              progress: Progress | None = None, dtype: torch.dtype = torch.float32, pack: int | str = 1) -> list[dict]:
    """Train every run not already done, pack after pack, here; then rebuild the manifest."""
    by_id = {r.id: r for r in plan.runs}
    todo = [r for r in runs if run_status(results, r.id) != "done"]
    datasets: dict[str, Dataset] = {}
    packs = []
    for group in groups(plan, todo):
        size = pack
        if pack == "auto":
            data = _dataset(plan.config(group[0].config), device, datasets)
            size = auto_pack_size(plan, group, device, data)
        packs += make_packs(plan, group, int(size))
    outcomes = []
    for p in packs:
        outcomes += run_pack(plan, [by_id[i] for i in p.runs], results, device, progress, dtype, datasets)
    write_manifest(plan, results, environment(device))
    return outcomes
