"""One run of a plan: train, prune at the planned epochs, measure, checkpoint, resume.

The loop stays short; pruning and perturbation (`Pruner`), data (`runtime.data`),
evaluation and checkpointing plug into it. Every random draw comes from a generator
derived from (seed, epoch, purpose), so a run resumed from the checkpoint of epoch e
replays epoch e+1 exactly as an uninterrupted run does.
"""

from __future__ import annotations

import math
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gstc.manifest import ResultsDir, append_jsonl, read_json, read_jsonl, summarize_run, truncate_jsonl, write_json
from gstc.plan import PlanConfig, PlanRun
from runtime.data import Dataset, augment, epoch_generator, normalize
from runtime.flatness import measure as measure_flatness
from runtime.models import build_model
from runtime.prune import Pruner

FLATNESS_SUBSET_SEED = 0  # the same test images for every run, so flatness compares across runs
EVAL_BATCH = 1000  # test images per evaluation batch (BN in eval mode: the size changes no number)
# Purposes of derived generators (see runtime.data.epoch_generator).
ORDER, AUGMENT, TARGETS, NOISE = 0, 1, 2, 3


class RunFailed(Exception):
    def __init__(self, epoch: int, reason: str):
        super().__init__(f"epoch {epoch}: {reason}")
        self.epoch, self.reason = epoch, reason


def environment(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"torch": torch.__version__, "python": platform.python_version(),
            "device": f"{device.type}: {name}", "threads": torch.get_num_threads()}


def make_optimizer(params: Any, spec: dict) -> torch.optim.Optimizer:
    if spec["name"] == "adam":
        return torch.optim.Adam(params, lr=spec["lr"], betas=tuple(spec["betas"]), weight_decay=spec["weight_decay"])
    if spec["name"] == "sgd":
        return torch.optim.SGD(params, lr=spec["lr"], momentum=spec["momentum"], weight_decay=spec["weight_decay"],
                               nesterov=spec["nesterov"])
    raise ValueError(f"unknown optimizer {spec['name']!r}; known: adam, sgd")


@dataclass
class Trainer:
    """Everything one run needs; `run()` carries it out and writes its files."""

    run: PlanRun
    config: PlanConfig
    data: Dataset
    results: ResultsDir
    device: torch.device
    dtype: torch.dtype = torch.float32  # float64 for exactness tests
    on_epoch: Callable[[dict], None] | None = None
    events: dict[int, list] = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.config.resolved
        self.train_cfg, self.augment = cfg["train"], cfg["data"]["augment"]
        self.prune_eval = cfg["measure"]["prune_eval"]
        torch.manual_seed(self.run.seed)  # weight initialization
        self.model = build_model(cfg["model"]["arch"], cfg["model"]["width"], self.data.classes, self.config.layers)
        self.model.to(device=self.device, dtype=self.dtype)
        self.opt = make_optimizer(self.model.parameters(), self.train_cfg["optimizer"])
        lr = self.train_cfg["lr_schedule"]
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=lr["milestones"], gamma=lr["gamma"])
        self.pruner = Pruner(self.model, self.config, self.run.seed)
        self.events = {}
        for ev in self.run.events:
            self.events.setdefault(ev.epoch, []).append(ev)
        self.batch_size = self.train_cfg["batch_size"]
        self.batches = math.ceil(len(self.data.train_y) / self.batch_size)
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                         if self.train_cfg["precision"] == "bf16" else nullcontext())
        self.table = [(l.name, l.filters) for l in self.config.layers]
        self.flatness = cfg["measure"].get("flatness")
        at = (self.flatness or {}).get("at")
        self.flatness_epochs = set() if not self.flatness else {self.run.epochs} if at == "final" else set(at)

    def measure_flatness(self, epoch: int) -> None:
        """flatness.json: {"subset": [...], "epochs": {"<epoch>": {...}}}; re-measuring an epoch replaces it."""
        n = min(self.flatness["samples"], len(self.data.test_y))
        subset = torch.randperm(len(self.data.test_y), generator=torch.Generator().manual_seed(FLATNESS_SUBSET_SEED))[:n]
        idx = subset.to(self.device)
        x, y = normalize(self.data.test_x[idx], self.data, self.dtype), self.data.test_y[idx]
        path = self.results.flatness_json(self.run.id)
        doc = read_json(path) if path.exists() else {"subset_seed": FLATNESS_SUBSET_SEED, "subset": subset.tolist(), "epochs": {}}
        doc["epochs"][str(epoch)] = measure_flatness(self.model, x, y, self.flatness, seed=self.run.seed)
        write_json(path, doc)

    # --- the loop -----------------------------------------------------------------

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        model, data, pruner = self.model, self.data, self.pruner
        model.train()
        n = len(data.train_y)
        order = torch.randperm(n, generator=epoch_generator(self.run.seed, epoch, ORDER)).to(self.device)
        aug, noise = epoch_generator(self.run.seed, epoch, AUGMENT), epoch_generator(self.run.seed, epoch, NOISE)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            x, y = data.train_x[idx], data.train_y[idx]
            if self.augment:
                x = augment(x, aug)
            x = normalize(x, data, self.dtype)
            pruner.before_batch(noise)
            with self.autocast:
                out = model(x)
                loss = F.cross_entropy(out.float() if self.dtype == torch.float32 else out, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            pruner.after_backward()
            self.opt.step()
            pruner.after_step()
            loss_sum += loss.detach().double() * len(idx)  # summed on the device: no per-batch sync
            correct += (out.argmax(1) == y).sum()
        return loss_sum.item() / n, 100.0 * correct.item() / n

    @torch.inference_mode()
    def evaluate(self) -> tuple[float, float]:
        model, data = self.model, self.data
        model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for start in range(0, len(data.test_y), EVAL_BATCH):
            x = normalize(data.test_x[start:start + EVAL_BATCH], data, self.dtype)
            y = data.test_y[start:start + EVAL_BATCH]
            with self.autocast:
                out = model(x)
            loss_sum += F.cross_entropy(out.double(), y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
        model.train()
        n = len(data.test_y)
        return loss_sum.item() / n, 100.0 * correct.item() / n

    def prune_epoch(self, epoch: int) -> tuple[float, float]:
        """Events of `epoch`: pre-pruning evaluation, the events, post-pruning evaluation."""
        pre = self.evaluate()[1] if self.prune_eval else None
        layers = self.pruner.apply(epoch, self.events[epoch], self.batches, epoch_generator(self.run.seed, epoch, TARGETS))
        post_loss, post = self.evaluate()
        self.pruner.after_post_eval()
        record: dict[str, Any] = {"epoch": epoch, "pre_acc": pre, "post_acc": post, "instability": None, "stability": None,
                                  "layers": layers}
        if pre is not None:
            instability = 100.0 * (pre - post) / pre if pre > 0 else 0.0
            record.update(instability=instability, stability=100.0 - instability)
        append_jsonl(self.results.events_jsonl(self.run.id), record)
        return post_loss, post

    # --- checkpoints ----------------------------------------------------------------

    def save(self, epoch: int, seconds: float) -> None:
        state = {"epoch": epoch, "seconds": seconds, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                 "scheduler_epoch": self.sched.last_epoch, "pruner": self.pruner.state_dict(),
                 "rng": torch.get_rng_state()}
        path = self.results.checkpoint(self.run.id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load(self) -> tuple[int, float]:
        state = torch.load(self.results.checkpoint(self.run.id), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        # The optimizer's state already holds the decayed LR: only the scheduler's epoch count moves.
        self.sched.last_epoch = int(state["scheduler_epoch"])
        self.sched._last_lr = [g["lr"] for g in self.opt.param_groups]
        self.pruner.load_state_dict(state["pruner"])
        torch.set_rng_state(state["rng"])
        return int(state["epoch"]), float(state["seconds"])

    # --- the run --------------------------------------------------------------------

    def execute(self) -> dict:
        rid, results = self.run.id, self.results
        results.run_dir(rid).mkdir(parents=True, exist_ok=True)
        start, seconds = 0, 0.0
        if results.checkpoint(rid).exists():
            start, seconds = self.load()
            # Lines written after the checkpoint (a kill between the two) are replayed.
            truncate_jsonl(results.epochs_jsonl(rid), lambda r: r["epoch"] <= start)
            truncate_jsonl(results.events_jsonl(rid), lambda r: r["epoch"] <= start)
        else:
            for path in (results.epochs_jsonl(rid), results.events_jsonl(rid)):
                path.unlink(missing_ok=True)
        info = {"id": rid, "config": self.config.id, "seed": self.run.seed, "epochs": self.run.epochs,
                "resolved": self.config.resolved, "environment": environment(self.device), "resumed_from": start or None}
        write_json(results.run_json(rid), {**info, "status": "running"})
        epoch = start
        try:
            if start == 0 and not results.checkpoint(rid).exists() and 0 in self.events:
                t0 = time.perf_counter()
                self.prune_epoch(0)  # scratch pruning, at initialization
                seconds += time.perf_counter() - t0
                self.save(0, seconds)
            for epoch in range(start + 1, self.run.epochs + 1):
                t0 = time.perf_counter()
                lr = self.opt.param_groups[0]["lr"]
                train_loss, train_acc = self.train_epoch(epoch)
                if not math.isfinite(train_loss):
                    raise RunFailed(epoch, f"training loss is {train_loss}")
                self.sched.step()
                test_loss, test_acc = self.prune_epoch(epoch) if epoch in self.events else self.evaluate()
                record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
                          "test_acc": test_acc, "lr": lr, "kept": self.pruner.kept(self.table),
                          "params": self.model.live_params(self.pruner.removed()),
                          "seconds": time.perf_counter() - t0}
                seconds += record["seconds"]
                append_jsonl(results.epochs_jsonl(rid), record)
                if epoch in self.flatness_epochs:
                    self.measure_flatness(epoch)
                self.save(epoch, seconds)
                if self.on_epoch:
                    self.on_epoch(record)
        except (RunFailed, RuntimeError) as exc:  # RuntimeError: torch's (overflow, out of memory, ...)
            failure = (exc.epoch, exc.reason) if isinstance(exc, RunFailed) else (epoch, f"{type(exc).__name__}: {exc}")
            write_json(results.run_json(rid), {**info, "status": "failed", "seconds": seconds,
                                               "error": {"epoch": failure[0], "reason": failure[1]}})
            return read_json(results.run_json(rid))
        summary = summarize_run(read_jsonl(results.epochs_jsonl(rid)), read_jsonl(results.events_jsonl(rid)))
        write_json(results.run_json(rid), {**info, "status": "done", "seconds": seconds, "summary": summary})
        return read_json(results.run_json(rid))
