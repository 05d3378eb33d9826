"""A pack of runs (one run is a pack of 1): train, prune at the planned epochs, measure,
checkpoint, resume.

The K members of a pack train as one packed model (runtime.models): grouped
convolutions, BN over K x C channels, a batched dense layer. Each member keeps its own
data order, augmentation, pruner (masks, events, windows), measurements, checkpoint and
files, and its numbers are those it would have alone (tests/runtime/test_pack.py).

The loop stays short; pruning and perturbation (`Pruner`), data (`runtime.data`),
evaluation and checkpointing plug into it. Every random draw comes from a generator
derived from (seed, epoch, purpose), so a run resumed from the checkpoint of epoch e
replays epoch e+1 exactly as an uninterrupted run does. A member's checkpoint holds its
own state in the layout of a model built alone, so it resumes in any pack or alone.
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
from gstc.plan import PlanEvent
from runtime.data import Dataset, crop_flip, crop_flip_draws, epoch_generator, normalize, pack_input
from runtime.flatness import measure as measure_flatness
from runtime.models import build_model, member, member_state, pack_states
from runtime.prune import Pruner, StepHooks

FLATNESS_SUBSET_SEED = 0  # the same test images for every run, so flatness compares across runs
EVAL_BATCH = 1000  # test images per evaluation batch (BN in eval mode: the size changes no number)
# Purposes of derived generators (see runtime.data.epoch_generator).
ORDER, AUGMENT, TARGETS, NOISE = 0, 1, 2, 3


def environment(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"torch": torch.__version__, "python": platform.python_version(),
            "device": f"{device.type}: {name}", "threads": torch.get_num_threads()}


def make_optimizer(params: Any, spec: dict, fused: bool = False) -> torch.optim.Optimizer:
    """Adam or SGD; `fused`: one kernel for all parameters (CUDA and CPU). Both act element by element."""
    fast = {"fused": True} if fused else {}
    if spec["name"] == "adam":
        return torch.optim.Adam(params, lr=spec["lr"], betas=tuple(spec["betas"]), weight_decay=spec["weight_decay"],
                                **fast)
    if spec["name"] == "sgd":
        return torch.optim.SGD(params, lr=spec["lr"], momentum=spec["momentum"], weight_decay=spec["weight_decay"],
                               nesterov=spec["nesterov"], **fast)
    raise ValueError(f"unknown optimizer {spec['name']!r}; known: adam, sgd")


def optimizer_member(state: dict, k: int, pack: int) -> dict:
    """Member k's optimizer state_dict from a pack's (per-parameter tensors are stacked like the parameters)."""
    def part(v: Any) -> Any:
        return (member(v, k, pack) if v.dim() else v).clone() if isinstance(v, torch.Tensor) else v

    return {"state": {i: {key: part(v) for key, v in st.items()} for i, st in state["state"].items()},
            "param_groups": state["param_groups"]}


def optimizer_pack(states: list[dict]) -> dict:
    """A pack's optimizer state_dict from its members' (the inverse of `optimizer_member`)."""
    def join(values: list[Any]) -> Any:
        v = values[0]
        return torch.cat(values) if isinstance(v, torch.Tensor) and v.dim() else v

    return {"state": {i: {key: join([s["state"][i][key] for s in states]) for key in st}
                      for i, st in states[0]["state"].items()},
            "param_groups": states[0]["param_groups"]}


@dataclass
class Member:
    """One run of a pack: its plan entries, pruner and bookkeeping."""

    k: int
    run: PlanRun
    config: PlanConfig
    pruner: Pruner
    events: dict[int, list[PlanEvent]]
    info: dict = field(default_factory=dict)
    seconds: float = 0.0
    failure: tuple[int, str] | None = None

    @property
    def flatness(self) -> dict | None:
        return self.config.resolved["measure"].get("flatness")

    @property
    def flatness_epochs(self) -> set[int]:
        at = (self.flatness or {}).get("at")
        return set() if not self.flatness else {self.run.epochs} if at == "final" else set(at)


@dataclass
class Trainer:
    """A pack of compatible runs (gstc.packs); `execute()` carries them out and writes their files."""

    runs: list[PlanRun]
    configs: list[PlanConfig]  # each run's configuration
    data: Dataset
    results: ResultsDir
    device: torch.device
    dtype: torch.dtype = torch.float32  # float64 for exactness tests
    on_epoch: Callable[[PlanRun, dict], None] | None = None
    # None: on CUDA, and on the CPU in float32/bf16 (oneDNN's channels-last kernels: VGG11
    # width 0.25 steps 1.3x faster there, benchmarks/RESULTS.md); float64 has no oneDNN
    # kernels and stays contiguous.
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        cfg = self.configs[0].resolved
        self.pack = k = len(self.runs)
        self.train_cfg, self.augment = cfg["train"], cfg["data"]["augment"]
        self.arch = (cfg["model"]["arch"], cfg["model"]["width"], self.data.classes)
        cuda = self.device.type == "cuda"
        self.channels_last = (cuda or self.dtype != torch.float64) if self.channels_last is None else self.channels_last
        alone = []
        for run, config in zip(self.runs, self.configs):
            torch.manual_seed(run.seed)  # weight initialization: each member as if built alone
            alone.append(build_model(*self.arch, config.layers))
        self.model = alone[0] if k == 1 else build_model(*self.arch, self.configs[0].layers, pack=k)
        if k > 1:
            self.model.load_state_dict(pack_states([m.state_dict() for m in alone]))
        self.model.to(device=self.device, dtype=self.dtype,
                      memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        # Fused steps on both devices: on the CPU 0.44 ms instead of 1.05 ms per Adam step of the quickstart's
        # VGG11 (26 tensors, 579,098 parameters); the same update element by element.
        self.opt = make_optimizer(self.model.parameters(), self.train_cfg["optimizer"],
                                  fused=self.device.type in ("cuda", "cpu"))
        lr = self.train_cfg["lr_schedule"]
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=lr["milestones"], gamma=lr["gamma"])
        self.members = []
        for i, (run, config) in enumerate(zip(self.runs, self.configs)):
            events: dict[int, list[PlanEvent]] = {}
            for ev in run.events:
                events.setdefault(ev.epoch, []).append(ev)
            self.members.append(Member(i, run, config, Pruner(self.model, config, run.seed, member=i), events))
        self.hooks = StepHooks([m.pruner for m in self.members])
        self.batch_size = self.train_cfg["batch_size"]
        self.batches = math.ceil(len(self.data.train_y) / self.batch_size)
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                         if self.train_cfg["precision"] == "bf16" else nullcontext())
        self.table = [(l.name, l.filters) for l in self.configs[0].layers]

    @property
    def alive(self) -> list[Member]:
        return [m for m in self.members if m.failure is None]

    def alone(self, m: Member) -> torch.nn.Module:
        """Member m as a model of its own (for flatness, which needs one model's loss)."""
        if self.pack == 1:
            return self.model
        model = build_model(*self.arch).to(device=self.device, dtype=self.dtype)
        model.load_state_dict(member_state(self.model.state_dict(), m.k, self.pack))
        for p in model.prunable().values():
            p.mask.active = bool((p.mask.mask == 0).any())
        return model

    def measure_flatness(self, m: Member, epoch: int) -> None:
        """flatness.json: {"subset": [...], "epochs": {"<epoch>": {...}}}; re-measuring an epoch replaces it."""
        n = min(m.flatness["samples"], len(self.data.test_y))
        subset = torch.randperm(len(self.data.test_y), generator=torch.Generator().manual_seed(FLATNESS_SUBSET_SEED))[:n]
        idx = subset.to(self.device)
        x, y = normalize(self.data.test_x[idx], self.data, self.dtype), self.data.test_y[idx]
        path = self.results.flatness_json(m.run.id)
        doc = read_json(path) if path.exists() else {"subset_seed": FLATNESS_SUBSET_SEED, "subset": subset.tolist(), "epochs": {}}
        doc["epochs"][str(epoch)] = measure_flatness(self.alone(m), x, y, m.flatness, seed=m.run.seed)
        write_json(path, doc)

    # --- the loop -----------------------------------------------------------------

    def train_epoch(self, epoch: int) -> tuple[list[float], list[float]]:
        """Per member: mean training loss and accuracy (%) of the epoch."""
        model, data, k = self.model, self.data, self.pack
        model.train()
        n = len(data.train_y)
        seeds = [m.run.seed for m in self.members]
        # The epoch's random draws, per member, moved to the device once: no per-batch host work.
        order = torch.stack([torch.randperm(n, generator=epoch_generator(s, epoch, ORDER)) for s in seeds]).to(self.device)
        if self.augment:
            draws = torch.stack([crop_flip_draws(n, epoch_generator(s, epoch, AUGMENT)) for s in seeds]).to(self.device)
        noise = [epoch_generator(s, epoch, NOISE) for s in seeds]
        loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(k, dtype=torch.long, device=self.device)
        for start in range(0, n, self.batch_size):
            idx = order[:, start:start + self.batch_size]  # (K, B)
            b = idx.shape[1]
            x, y = data.train_x[idx], data.train_y[idx]  # (K, B, 3, H, W) uint8, (K, B)
            if self.augment:
                x = crop_flip(x.flatten(0, 1), draws[:, :, start:start + b].transpose(0, 1).flatten(1)).unflatten(0, (k, b))
            else:
                x = x.permute(0, 1, 3, 4, 2)
            x = pack_input(x, data, self.dtype, self.channels_last)
            self.hooks.before_batch(noise)
            with self.autocast:
                out = model(x).view(b, k, -1)
                logits = out.float() if self.dtype == torch.float32 else out
                losses = F.cross_entropy(logits.flatten(0, 1), y.t().flatten(), reduction="none").view(b, k).mean(0)
            self.opt.zero_grad(set_to_none=True)
            losses.sum().backward()  # members share no parameter: each gets its own loss's gradient
            self.hooks.after_backward()
            self.opt.step()
            self.hooks.after_step()
            loss_sum += losses.detach().double() * b  # summed on the device: no per-batch sync
            correct += (out.argmax(2) == y.t()).sum(0)
        return (loss_sum / n).tolist(), (100.0 * correct.double() / n).tolist()

    @torch.inference_mode()
    def evaluate(self) -> tuple[list[float], list[float]]:
        """Per member: test loss and accuracy (%)."""
        model, data, k = self.model, self.data, self.pack
        model.eval()
        loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(k, dtype=torch.long, device=self.device)
        for start in range(0, len(data.test_y), EVAL_BATCH):
            x = data.test_x[start:start + EVAL_BATCH].permute(0, 2, 3, 1)
            y = data.test_y[start:start + EVAL_BATCH]
            with self.autocast:
                out = model(pack_input(x.expand(k, *x.shape), data, self.dtype, self.channels_last)).view(len(y), k, -1)
            loss_sum += F.cross_entropy(out.double().flatten(0, 1), y.repeat_interleave(k), reduction="none").view(-1, k).sum(0)
            correct += (out.argmax(2) == y[:, None]).sum(0)
        model.train()
        n = len(data.test_y)
        return (loss_sum / n).tolist(), (100.0 * correct.double() / n).tolist()

    def prune_epoch(self, epoch: int) -> tuple[list[float], list[float]]:
        """Events of `epoch` (of the members that have some): pre-pruning evaluation, events, post-pruning evaluation.

        One evaluation of the pack serves every member: a member without events is
        unchanged by the others', so the post-pruning evaluation is its plain one.
        """
        pruning = [m for m in self.alive if epoch in m.events]
        pre = self.evaluate()[1] if any(m.config.resolved["measure"]["prune_eval"] for m in pruning) else None
        layers = {m.k: m.pruner.apply(epoch, m.events[epoch], self.batches, epoch_generator(m.run.seed, epoch, TARGETS))
                  for m in pruning}
        post_loss, post = self.evaluate()
        for m in pruning:
            m.pruner.after_post_eval()
            before = pre[m.k] if pre is not None and m.config.resolved["measure"]["prune_eval"] else None
            record: dict[str, Any] = {"epoch": epoch, "pre_acc": before, "post_acc": post[m.k], "instability": None,
                                      "stability": None, "layers": layers[m.k]}
            if before is not None:
                instability = 100.0 * (before - post[m.k]) / before if before > 0 else 0.0
                record.update(instability=instability, stability=100.0 - instability)
            append_jsonl(self.results.events_jsonl(m.run.id), record)
        return post_loss, post

    # --- checkpoints ----------------------------------------------------------------

    def save(self, epoch: int) -> None:
        model, opt = self.model.state_dict(), self.opt.state_dict()
        for m in self.alive:
            state = {"epoch": epoch, "seconds": m.seconds, "model": member_state(model, m.k, self.pack),
                     "optimizer": optimizer_member(opt, m.k, self.pack), "scheduler_epoch": self.sched.last_epoch,
                     "pruner": m.pruner.state_dict(), "rng": torch.get_rng_state()}
            path = self.results.checkpoint(m.run.id)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)

    def load(self) -> int:
        """Every member from its checkpoint (all at the same epoch: run_pack packs them so); returns that epoch."""
        states = [torch.load(self.results.checkpoint(m.run.id), map_location=self.device, weights_only=True)
                  for m in self.members]
        epochs = {int(s["epoch"]) for s in states}
        if len(epochs) != 1:
            raise ValueError(f"members of a pack must resume from the same epoch, found {sorted(epochs)}")
        self.model.load_state_dict(pack_states([s["model"] for s in states]))
        self.opt.load_state_dict(optimizer_pack([s["optimizer"] for s in states]))
        # The optimizer's state already holds the decayed LR: only the scheduler's epoch count moves.
        self.sched.last_epoch = int(states[0]["scheduler_epoch"])
        self.sched._last_lr = [g["lr"] for g in self.opt.param_groups]
        for m, s in zip(self.members, states):
            m.pruner.load_state_dict(s["pruner"])
            m.seconds = float(s["seconds"])
        torch.set_rng_state(states[0]["rng"])
        return epochs.pop()

    # --- the pack -------------------------------------------------------------------

    def fail(self, m: Member, epoch: int, reason: str) -> None:
        m.failure = (epoch, reason)
        write_json(self.results.run_json(m.run.id), {**m.info, "status": "failed", "seconds": m.seconds,
                                                     "error": {"epoch": epoch, "reason": reason}})

    def execute(self) -> list[dict]:
        """Train every member to the end (or its failure); returns each member's final run.json."""
        results = self.results
        fresh = not any(results.checkpoint(m.run.id).exists() for m in self.members)
        start = 0 if fresh else self.load()
        for m in self.members:
            rid = m.run.id
            results.run_dir(rid).mkdir(parents=True, exist_ok=True)
            if fresh:
                for path in (results.epochs_jsonl(rid), results.events_jsonl(rid)):
                    path.unlink(missing_ok=True)
            else:  # lines written after the checkpoint (a kill between the two) are replayed
                truncate_jsonl(results.epochs_jsonl(rid), lambda r: r["epoch"] <= start)
                truncate_jsonl(results.events_jsonl(rid), lambda r: r["epoch"] <= start)
            m.info = {"id": rid, "config": m.config.id, "seed": m.run.seed, "epochs": m.run.epochs,
                      "resolved": m.config.resolved, "environment": environment(self.device), "resumed_from": start or None,
                      "pack": {"size": self.pack, "runs": [r.id for r in self.runs]}}
            write_json(results.run_json(rid), {**m.info, "status": "running"})
        epoch = start
        try:
            if fresh and any(0 in m.events for m in self.members):
                t0 = time.perf_counter()
                self.prune_epoch(0)  # scratch pruning, at initialization
                for m in self.members:
                    m.seconds += time.perf_counter() - t0
                self.save(0)
            for epoch in range(start + 1, self.runs[0].epochs + 1):
                if not self.alive:
                    break
                t0 = time.perf_counter()
                lr = self.opt.param_groups[0]["lr"]
                train_loss, train_acc = self.train_epoch(epoch)
                for m in self.alive:
                    if not math.isfinite(train_loss[m.k]):
                        self.fail(m, epoch, f"training loss is {train_loss[m.k]}")
                self.sched.step()
                pruning = any(epoch in m.events for m in self.alive)
                test_loss, test_acc = self.prune_epoch(epoch) if pruning else self.evaluate()
                seconds = time.perf_counter() - t0
                records = {}
                for m in self.alive:
                    record = {"epoch": epoch, "train_loss": train_loss[m.k], "train_acc": train_acc[m.k],
                              "test_loss": test_loss[m.k], "test_acc": test_acc[m.k], "lr": lr,
                              "kept": m.pruner.kept(self.table), "params": self.model.live_params(m.pruner.removed()),
                              "seconds": seconds}
                    m.seconds += seconds
                    records[m.k] = record
                    append_jsonl(results.epochs_jsonl(m.run.id), record)
                    if epoch in m.flatness_epochs:
                        self.measure_flatness(m, epoch)
                self.save(epoch)
                for m in self.alive:
                    if self.on_epoch:
                        self.on_epoch(m.run, records[m.k])
        except RuntimeError as exc:  # torch's (overflow, out of memory, ...): every member still training fails
            for m in self.alive:
                self.fail(m, epoch, f"{type(exc).__name__}: {exc}")
        outcomes = []
        for m in self.members:
            if m.failure is None:
                rid = m.run.id
                summary = summarize_run(read_jsonl(results.epochs_jsonl(rid)), read_jsonl(results.events_jsonl(rid)))
                write_json(results.run_json(rid), {**m.info, "status": "done", "seconds": m.seconds, "summary": summary})
            outcomes.append(read_json(results.run_json(m.run.id)))
        return outcomes
