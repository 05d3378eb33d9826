"""What plugs into the training loop besides checkpoints: result files and flatness measurements.

`RunFiles` owns a member's run.json, epochs.jsonl and events.jsonl (paths from
`gstc.paths.ResultsDir`, written through `gstc.jsonio`: whole files atomically, JSONL
one fsynced line at a time). `Flatness` measures `measure.flatness` at its epochs into
flatness.json. Both are in the FILES phase (gstc.runtime.train), before `checkpoint.Checkpoints`, so a
checkpoint never stands ahead of the files (a kill between the two replays the epoch).
"""

from __future__ import annotations

import torch

from gstc.jsonio import append_jsonl, read_json, read_jsonl, truncate_jsonl, write_json
from gstc.paths import ResultsDir
from gstc.summary import summarize_run
from gstc.runtime.batches import normalize
from gstc.runtime.environment import environment
from gstc.runtime.flatness import measure as measure_flatness
from gstc.runtime.records import EpochRecord, EventRecord
from gstc.runtime.train import FILES, Callback, Member, Trainer

FLATNESS_SUBSET_SEED = 0  # the same test images for every run, so flatness compares across runs


class RunFiles(Callback):
    """run.json ("running", then "done" with the summary or "failed" with the reason), epochs.jsonl, events.jsonl."""

    phase = FILES

    def __init__(self, results: ResultsDir) -> None:
        self.results = results
        self.info: dict[str, dict] = {}

    def start(self, trainer: Trainer, resumed_from: int | None) -> None:
        results, env = self.results, environment(trainer.device)
        for m in trainer.members:
            rid = m.run.id
            results.run_dir(rid).mkdir(parents=True, exist_ok=True)
            if resumed_from is None:
                for path in (results.epochs_jsonl(rid), results.events_jsonl(rid)):
                    path.unlink(missing_ok=True)
            else:  # lines written after the checkpoint (a kill between the two) are replayed
                truncate_jsonl(results.epochs_jsonl(rid), lambda r: r["epoch"] <= resumed_from)
                truncate_jsonl(results.events_jsonl(rid), lambda r: r["epoch"] <= resumed_from)
            self.info[rid] = {"id": rid, "config": m.config.id, "seed": m.run.seed, "epochs": m.run.epochs,
                              "resolved": m.config.resolved.model_dump(mode="json"),
                              "environment": env, "resumed_from": resumed_from,
                              "pack": {"size": trainer.pack, "runs": [r.id for r in trainer.runs]}}
            write_json(results.run_json(rid), {**self.info[rid], "status": "running"})

    def event(self, trainer: Trainer, member: Member, record: EventRecord) -> None:
        append_jsonl(self.results.events_jsonl(member.run.id), record)

    def epoch_end(self, trainer: Trainer, epoch: int, records: dict[int, EpochRecord]) -> None:
        for m in trainer.alive:
            if m.k in records:
                append_jsonl(self.results.epochs_jsonl(m.run.id), records[m.k])

    def failed(self, trainer: Trainer, member: Member, epoch: int, reason: str) -> None:
        write_json(self.results.run_json(member.run.id), {**self.info[member.run.id], "status": "failed",
                                                          "seconds": member.seconds,
                                                          "error": {"epoch": epoch, "reason": reason}})

    def end(self, trainer: Trainer) -> None:
        for m in trainer.members:
            if trainer.finished(m):
                rid = m.run.id
                summary = summarize_run(read_jsonl(self.results.epochs_jsonl(rid)),
                                        read_jsonl(self.results.events_jsonl(rid)))
                write_json(self.results.run_json(rid), {**self.info[rid], "status": "done", "seconds": m.seconds,
                                                        "summary": summary})


class Flatness(Callback):
    """flatness.json: {"subset_seed", "subset": [...], "epochs": {"<epoch>": {...}}}; re-measuring an epoch replaces it."""

    phase = FILES

    def __init__(self, results: ResultsDir) -> None:
        self.results = results

    def epoch_end(self, trainer: Trainer, epoch: int, records: dict[int, EpochRecord]) -> None:
        for m in trainer.alive:
            if m.k in records and epoch in m.flatness_epochs:
                self.measure(trainer, m, epoch)

    def measure(self, trainer: Trainer, m: Member, epoch: int) -> None:
        data = trainer.data
        n = min(m.flatness.samples, len(data.test_y))
        subset = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(FLATNESS_SUBSET_SEED))[:n]
        idx = subset.to(trainer.device)
        x, y = normalize(data.test_x[idx], data, trainer.dtype), data.test_y[idx]
        path = self.results.flatness_json(m.run.id)
        doc = read_json(path) if path.exists() else {"subset_seed": FLATNESS_SUBSET_SEED, "subset": subset.tolist(), "epochs": {}}
        doc["epochs"][str(epoch)] = measure_flatness(trainer.alone(m), x, y, m.flatness, seed=m.run.seed)
        write_json(path, doc)
