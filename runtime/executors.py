"""Executors: carry out a plan's packs. `local` trains them one after another here.

Every executor writes the same results layout (gstc.manifest), so status, report and
diff do not care which one ran. The manifest is rebuilt from the run folders at the
end, never from this process's memory.
"""

from __future__ import annotations

import json
from typing import Iterable

import torch

from gstc.manifest import ResultsDir, read_jsonl, run_status, write_manifest
from gstc.packs import make_packs
from gstc.plan import Plan, PlanRun
from runtime.data import Dataset, load
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

    def start_run(self, run: PlanRun, done_epochs: int) -> None: ...

    def epoch(self, run: PlanRun, record: dict) -> None: ...

    def end_run(self, run: PlanRun, status: dict) -> None: ...


def run_pack(plan: Plan, runs: list[PlanRun], results: ResultsDir, device: torch.device,
             progress: Progress | None = None, dtype: torch.dtype = torch.float32,
             datasets: dict[str, Dataset] | None = None) -> list[dict]:
    """Train one pack (compatible runs, see gstc.packs) to completion; the unit of work of every executor.

    Members already done are skipped. Returns the final run.json of each member attempted.
    `datasets` caches loaded data between packs of one process.
    """
    progress = progress or Progress()
    datasets = {} if datasets is None else datasets
    outcomes = []
    for run in runs:
        if run_status(results, run.id) == "done":
            continue  # computed before, by this spec or another with the same run
        config = plan.config(run.config)
        data_key = json.dumps(config.resolved["data"], sort_keys=True)
        if data_key not in datasets:
            datasets[data_key] = load(config.resolved["data"], device)
        trainer = Trainer(run, config, datasets[data_key], results, device, dtype,
                          on_epoch=lambda record, run=run: progress.epoch(run, record))
        progress.start_run(run, len(read_jsonl(results.epochs_jsonl(run.id))) if results.epochs_jsonl(run.id).exists() else 0)
        outcome = trainer.execute()
        progress.end_run(run, outcome)
        outcomes.append(outcome)
    return outcomes


def run_local(plan: Plan, runs: Iterable[PlanRun], results: ResultsDir, device: torch.device,
              progress: Progress | None = None, dtype: torch.dtype = torch.float32, pack: int = 1) -> list[dict]:
    """Train every run not already done, pack after pack, here; then rebuild the manifest."""
    by_id = {r.id: r for r in plan.runs}
    todo = [r for r in runs if run_status(results, r.id) != "done"]
    datasets: dict[str, Dataset] = {}
    outcomes = []
    for p in make_packs(plan, todo, pack):
        outcomes += run_pack(plan, [by_id[i] for i in p.runs], results, device, progress, dtype, datasets)
    write_manifest(plan, results, environment(device))
    return outcomes
