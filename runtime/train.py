"""A pack of runs (one run is a pack of 1): the training loop.

The K members of a pack train as one packed model (gstc.runtime.models): grouped
convolutions, BN over K x C channels, a batched dense layer. Each member keeps its own
data order, augmentation, pruner (masks, events, windows), measurements, checkpoint and
files, and its numbers are those it would have alone (tests/runtime/test_pack.py).

The loop (`Trainer.execute`) stays short: an epoch trains, prunes where the plan says,
evaluates, and hands its records (gstc.runtime.records) to the callbacks, which write
result files (`callbacks.RunFiles`), measure flatness (`callbacks.Flatness`), checkpoint
(`checkpoint.Checkpoints`), show progress and feed trackers, in the order of their
phases (`ordered`: files, then the checkpoint, then what reports). The caller restores
state before it and may stop it at an epoch boundary (`stop`): a worker that lost a run's
lock does.

Every random draw comes from a generator derived from (seed, epoch, purpose), so a run
resumed from the checkpoint of epoch e replays epoch e+1 exactly as an uninterrupted run
does: data order, augmentation, random targets and noise. Initialization comes from the
seed alone (`torch.manual_seed(seed)` before each member's model is built).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol

import torch
import torch.nn.functional as F

from gstc.plan import AdamSpec, FlatnessSpec, PlanConfig, PlanEvent, PlanRun, SGDSpec, TrainSpec
from gstc.runtime.batches import crop_flip, crop_flip_draws, pack_input
from gstc.runtime.data import Dataset
from gstc.runtime.models import build_model, member_state, pack_states
from gstc.runtime.moving import Moving
from gstc.runtime.prune import Pruner
from gstc.runtime.pruning import Pruning, StepPlugin
from gstc.runtime.records import EpochRecord, EventRecord
from gstc.runtime.rng import AUGMENT, NOISE, ORDER, epoch_generator

EVAL_BATCH = 1000  # test images per evaluation batch (BN in eval mode: the size changes no number)


def make_optimizer(params: Any, spec: AdamSpec | SGDSpec, fused: bool = False) -> torch.optim.Optimizer:
    """Adam or SGD; `fused`: one kernel for all parameters (CUDA and CPU). Both act element by element."""
    fast = {"fused": True} if fused else {}
    if isinstance(spec, AdamSpec):
        return torch.optim.Adam(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay, **fast)
    if isinstance(spec, SGDSpec):
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                               nesterov=spec.nesterov, **fast)
    raise ValueError(f"unknown optimizer {spec!r}; known: adam, sgd")


# RuntimeErrors that stop a pack from outside rather than fail its runs: an executor registers its own
# (submitit raises UncompletedJobError, a RuntimeError, in a job it does not requeue).
INTERRUPTIONS: list[type[BaseException]] = []


class PackOutOfMemory(RuntimeError):
    """A pack of several runs ran out of device memory: its worker trains it again in smaller packs, each member from
    its last checkpoint (a run alone that runs out of memory fails, with the reason)."""


@dataclass
class Member:
    """One run of a pack: its plan entries, pruner and bookkeeping."""

    k: int
    run: PlanRun
    config: PlanConfig
    events: dict[int, list[PlanEvent]]
    pruner: Pruner | None = None  # set by the pruning plug-in (gstc.runtime.pruning)
    seconds: float = 0.0  # training time so far, seconds (restored from the checkpoint on resume)
    failure: tuple[int, str] | None = None  # (epoch, reason)

    @property
    def flatness(self) -> FlatnessSpec | None:
        return self.config.resolved.measure.flatness

    @property
    def flatness_epochs(self) -> set[int]:
        spec = self.flatness
        return set() if spec is None else {self.run.epochs} if spec.at == "final" else set(spec.at)


# When a callback runs, at every hook: phases in this order, and the callbacks of one phase in the order given. A
# call can be killed between any two callbacks, and the call that resumes the run starts after its checkpoint:
FILES = 0  # the run's own files (RunFiles, Flatness, RewindPoints): before the checkpoint, so that it never stands
#            ahead of them (a kill between the two trains that epoch again, and its lines are replaced)
CHECKPOINT = 1  # Checkpoints: the epoch a resumed call starts after
REPORT = 2  # what shows the run outside its folder (progress, trackers): after the checkpoint, so that no epoch shown
#             is trained again by a resumed call; at the end, after run.json says done (trackers save it)


def ordered(callbacks: list["Callback"]) -> list["Callback"]:
    """The callbacks in the order they run: by phase, and in the order given within a phase."""
    return sorted(callbacks, key=lambda cb: getattr(cb, "phase", REPORT))  # a stable sort


class Callback(Protocol):
    """What plugs into the loop. Each hook gets the trainer; subclass for the no-op defaults."""

    phase: ClassVar[int] = REPORT  # when it runs among the others (FILES, CHECKPOINT, REPORT)

    def start(self, trainer: "Trainer", resumed_from: int | None) -> None:
        """Before the first epoch; `resumed_from`: the checkpoint's epoch, None for a fresh start."""

    def event(self, trainer: "Trainer", member: Member, record: EventRecord) -> None:
        """A member's pruning epoch (pre/post accuracy, stability, per-layer counts), or a moving mask's move."""

    def epoch_end(self, trainer: "Trainer", epoch: int, records: dict[int, EpochRecord]) -> None:
        """After each epoch (and after epoch 0's scratch events): records of the members still training, by k."""

    def failed(self, trainer: "Trainer", member: Member, epoch: int, reason: str) -> None:
        """A member stopped for good: its loss turned NaN, or torch raised."""

    def end(self, trainer: "Trainer") -> None:
        """After the loop: every member is finished, failed, or stopped with the pack."""


def derived() -> Any:
    """A Trainer field that __post_init__ sets from the arguments: not an argument, and left out of repr and ==."""
    return field(init=False, repr=False, compare=False)


@dataclass
class Trainer:
    """A pack of compatible runs (gstc.packs); `execute()` trains them, the callbacks keep their files."""

    runs: list[PlanRun]
    configs: list[PlanConfig]  # each run's configuration
    data: Dataset
    device: torch.device
    dtype: torch.dtype = torch.float32  # float64 for exactness tests
    callbacks: list[Callback] = field(default_factory=list)
    stop: Callable[[], bool] = lambda: False  # asked at each epoch boundary: True ends training there
    # None: on CUDA, and on the CPU in float32/bf16 (oneDNN's channels-last kernels: VGG11
    # width 0.25 steps 1.3x faster there, benchmarks/RESULTS.md); float64 has no oneDNN
    # kernels and stays contiguous.
    channels_last: bool | None = None  # resolved to a bool by __post_init__

    # The trainer's state, all set by __post_init__ from the arguments above:
    pack: int = derived()  # K, the runs trained together (1: a run alone)
    epochs: int = derived()  # the last epoch to train (every member's train.epochs)
    train_cfg: TrainSpec = derived()  # the train section, the same for every member
    augment: bool = derived()  # random crops and flips of the training batches (data.augment)
    arch: dict[str, Any] = derived()  # build_model's arguments: the plan's model section, shaped by the data
    model: torch.nn.Module = derived()  # the packed model (a pack of 1: the run's own), on `device` in `dtype`
    opt: torch.optim.Optimizer = derived()  # every member's parameters: members share none
    sched: torch.optim.lr_scheduler.MultiStepLR = derived()  # steps once per epoch, after its training
    members: list[Member] = derived()  # by k, the member's place in the pack
    pruning: Pruning = derived()  # the pruning plug-in: each member's pruner and the pack's step hooks
    plugins: list[StepPlugin] = derived()  # called around every step, in this order (see __post_init__)
    batch_size: int = derived()  # training images per batch, per member
    batches: int = derived()  # training batches per epoch (the last one may be smaller)
    autocast: Any = derived()  # torch.autocast in bfloat16 for precision bf16, else a null context
    table: list[tuple[str, int]] = derived()  # (layer, filters) of each layer, in the layer table's order
    start: int = derived()  # the epoch training starts after: 0, or a lottery level's rewind epoch
    epoch: int = derived()  # the last epoch completed

    def __post_init__(self) -> None:
        self.callbacks = ordered(self.callbacks)
        cfg = self.configs[0].resolved
        self.pack = k = len(self.runs)
        self.epochs = self.runs[0].epochs
        self.train_cfg, self.augment = cfg.train, cfg.data.augment
        # What builds a member's model: the plan's model section, shaped by the data.
        self.arch = dict(arch=cfg.model.arch, width=cfg.model.width, classes=self.data.classes,
                         channels=self.data.channels, size=self.data.size, args=cfg.model.args)
        cuda = self.device.type == "cuda"
        self.channels_last = (cuda or self.dtype != torch.float64) if self.channels_last is None else self.channels_last
        alone = []
        for run, config in zip(self.runs, self.configs):
            torch.manual_seed(run.seed)  # weight initialization: each member as if built alone
            alone.append(build_model(**self.arch, layers=config.layers))
        self.model = alone[0] if k == 1 else build_model(**self.arch, layers=self.configs[0].layers, pack=k)
        if k > 1:
            self.model.load_state_dict(pack_states([m.state_dict() for m in alone]))
        self.model.to(device=self.device, dtype=self.dtype,
                      memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        # Fused steps on both devices: on the CPU 0.44 ms instead of 1.05 ms per Adam step of the quickstart's
        # VGG11 (26 tensors, 579,098 parameters); the same update element by element.
        self.opt = make_optimizer(self.model.parameters(), self.train_cfg.optimizer,
                                  fused=self.device.type in ("cuda", "cpu"))
        lr = self.train_cfg.lr_schedule
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=lr.milestones, gamma=lr.gamma)
        self.members = []
        for i, (run, config) in enumerate(zip(self.runs, self.configs)):
            events: dict[int, list[PlanEvent]] = {}
            for ev in run.events:
                events.setdefault(ev.epoch, []).append(ev)
            self.members.append(Member(i, run, config, events))
        self.pruning = Pruning(self)
        # What plugs into every step and epoch (gstc.runtime.pruning); moving masks read the gradients before the
        # pruning hooks zero the inactive weights' part.
        self.plugins: list[StepPlugin] = [self.pruning]
        self.batch_size = self.train_cfg.batch_size
        self.batches = math.ceil(len(self.data.train_y) / self.batch_size)
        if any(c.resolved.moving for c in self.configs):
            self.plugins.insert(0, Moving(self))
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                         if self.train_cfg.precision == "bf16" else nullcontext())
        self.table = [(l.name, l.filters) for l in self.configs[0].layers]
        stage = self.runs[0].stage  # a lottery level trains alone, from its rewind epoch (gstc.runtime.stages)
        self.start = stage.start if stage is not None else 0  # the epoch training starts after
        self.epoch = 0  # the last epoch completed

    def count(self, m: Member) -> tuple[int, int]:
        """Member m's parameters and MACs per image, with its removed filters gone (and their readers' inputs)."""
        removed = m.pruner.removed()
        return self.model.cost.count({name: f - removed.get(name, 0) for name, f in self.table})

    @property
    def alive(self) -> list[Member]:
        return [m for m in self.members if m.failure is None]

    def finished(self, m: Member) -> bool:
        """Trained to its last epoch without failing."""
        return m.failure is None and self.epoch == self.epochs

    def alone(self, m: Member) -> torch.nn.Module:
        """Member m as a model of its own (for flatness, which needs one model's loss)."""
        if self.pack == 1:
            return self.model
        model = build_model(**self.arch).to(device=self.device, dtype=self.dtype)
        model.load_state_dict(member_state(self.model.state_dict(), m.k, self.pack))
        for p in model.prunable().values():
            p.mask.active = bool((p.mask.mask == 0).any())
        return model

    # --- the loop -----------------------------------------------------------------

    def execute(self, resumed_from: int | None = None) -> None:
        """Train every member from `resumed_from` (its state restored by the caller; None: from scratch) to the
        last epoch, to its failure, or to an epoch boundary where `stop()` says so."""
        for cb in self.callbacks:
            cb.start(self, resumed_from)
        self.epoch = epoch = self.start if resumed_from is None else resumed_from
        try:
            if resumed_from is None and any(p.due(self, epoch) for p in self.plugins):
                t0 = time.perf_counter()
                self.plugins_epoch(epoch)  # scratch pruning at initialization; a lottery level's start
                for m in self.members:
                    m.seconds += time.perf_counter() - t0
                self.end_epoch(epoch, {})
            for epoch in range(self.epoch + 1, self.epochs + 1):
                if not self.alive or self.stop():
                    break
                self.end_epoch(epoch, self.run_epoch(epoch))
        except RuntimeError as exc:  # torch's (overflow, out of memory, ...): every member still training fails
            if isinstance(exc, tuple(INTERRUPTIONS)):
                raise  # the job is being stopped from outside (a time limit): its runs resume, they did not fail
            if isinstance(exc, torch.cuda.OutOfMemoryError) and len(self.alive) > 1:
                raise PackOutOfMemory(f"a pack of {len(self.alive)} runs: {exc}") from exc
            for m in self.alive:
                self.fail(m, epoch, f"{type(exc).__name__}: {exc}")
        for cb in self.callbacks:
            cb.end(self)

    def run_epoch(self, epoch: int) -> dict[int, EpochRecord]:
        """Train, step the LR, prune where planned, evaluate: per member still training, the epoch's record."""
        t0 = time.perf_counter()
        lr = self.opt.param_groups[0]["lr"]
        train_loss, train_acc = self.train_epoch(epoch)
        for m in self.alive:
            if not math.isfinite(train_loss[m.k]):
                self.fail(m, epoch, f"training loss is {train_loss[m.k]}")
        self.sched.step()
        test_loss, test_acc = self.plugins_epoch(epoch) or self.evaluate()
        seconds = time.perf_counter() - t0
        records: dict[int, EpochRecord] = {}
        for m in self.alive:
            params, macs = self.count(m)
            records[m.k] = {"epoch": epoch, "train_loss": train_loss[m.k], "train_acc": train_acc[m.k],
                            "test_loss": test_loss[m.k], "test_acc": test_acc[m.k], "lr": lr,
                            "kept": m.pruner.kept(self.table), "params": params, "macs": macs, "seconds": seconds}
            if m.pruner.weights:  # weight granularity: the parameters not held at zero
                records[m.k]["nonzero"] = params - m.pruner.zeroed()
            m.seconds += seconds
        return records

    def end_epoch(self, epoch: int, records: dict[int, EpochRecord]) -> None:
        self.epoch = epoch
        for cb in self.callbacks:
            cb.epoch_end(self, epoch, records)

    def plugins_epoch(self, epoch: int) -> tuple[list[float], list[float]] | None:
        """The plug-ins' work of `epoch`; the last evaluation one of them made, or None where none had work."""
        out = None
        for p in self.plugins:
            if p.due(self, epoch):
                out = p.epoch(self, epoch)
        return out

    def prune_epoch(self, epoch: int) -> tuple[list[float], list[float]]:
        """The pruning events of `epoch` with their evaluations (what an event epoch runs after training)."""
        return self.pruning.epoch(self, epoch)

    def event(self, m: Member, record: EventRecord) -> None:
        """A member's pruning epoch or move, for the callbacks (result files, progress, trackers)."""
        for cb in self.callbacks:
            cb.event(self, m, record)

    def fail(self, m: Member, epoch: int, reason: str) -> None:
        m.failure = (epoch, reason)
        for cb in self.callbacks:
            cb.failed(self, m, epoch, reason)

    # --- the parts of an epoch ------------------------------------------------------

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
            x, y = data.train_x[idx], data.train_y[idx]  # (K, B, C, H, W) uint8, (K, B)
            if self.augment:
                x = crop_flip(x.flatten(0, 1), draws[:, :, start:start + b].transpose(0, 1).flatten(1)).unflatten(0, (k, b))
            else:
                x = x.permute(0, 1, 3, 4, 2)
            x = pack_input(x, data, self.dtype, self.channels_last)
            for p in self.plugins:
                p.before_batch(self, noise)
            with self.autocast:
                out = model(x).view(b, k, -1)
                logits = out.float() if self.dtype == torch.float32 else out
                losses = F.cross_entropy(logits.flatten(0, 1), y.t().flatten(), reduction="none").view(b, k).mean(0)
            self.opt.zero_grad(set_to_none=True)
            losses.sum().backward()  # members share no parameter: each gets its own loss's gradient
            for p in self.plugins:
                p.after_backward(self)
            self.opt.step()
            for p in self.plugins:
                p.after_step(self)
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
