"""A lottery configuration (`lottery` in a spec) -> its chain of stages: one run per level and seed.

Each stage is a run whose start depends on earlier runs (gstc.plan.PlanStage): level 0
trains densely; level l prunes the ticket of level l-1 (its trained weights and mask),
sets the survivors to the rewind point and trains again. A stage's id is a content hash
of what it does and of the ids of the stages it starts from, so a level is one run
wherever it appears: in two configurations of a spec (a control trains from the ticket's
chain) or in two specs (10 levels share the first 5 with a spec of 5).

Counts are exact: level l keeps ceil((1 - fraction) x the units level l-1 kept), per layer
(scope layer) or over the group (scope global), computed in rationals from the decimal
the spec wrote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from gstc.errors import SpecError
from gstc.ids import canonical, digest
from gstc.load import Document
from gstc.plan import LayerSchedule, Plan, PlanEvent, PlanRun, PlanStage
from gstc.prune_spec import ScheduleSpec
from gstc.spec import BaseConfig

LEVEL_FIELDS = ("amount", "rate", "schedule", "mode")  # what a lottery decides for each prune.layers entry


def check(cfg: BaseConfig, doc: Document) -> list[SpecError]:
    """What a lottery configuration may not say: the prune section lends it what to prune, not when or how much."""
    lot = cfg.lottery
    assert lot is not None
    if cfg.prune is None:
        return [doc.error(("lottery",), "a lottery prunes what `prune` selects: add a prune section with "
                                        "granularity: weight and the layers to prune (e.g. layers: [{select: \"*\"}])")]
    errors = []
    prune = cfg.prune
    why = "a lottery decides each level's pruning (a fraction of what remains, at the level's start, for good)"
    if prune.granularity != "weight":
        errors.append(doc.error(("prune", "granularity"), f"a lottery prunes single weights: set granularity: weight "
                                                          f"(found {prune.granularity})"))
    for name in ("schedule", "amount", "rate"):
        if getattr(prune, name) is not None:
            errors.append(doc.error(("prune", name), f"{why}: remove prune.{name}"))
    if prune.mode.kind != "prune":
        errors.append(doc.error(("prune", "mode"), f"{why}: remove prune.mode (found {prune.mode.kind})"))
    for i, entry in enumerate(prune.layers):
        for name in LEVEL_FIELDS:
            if getattr(entry, name) is not None:
                errors.append(doc.error(("prune", "layers", i, name), f"{why}: remove this entry's {name}"))
    if isinstance(lot.rewind, int) and lot.rewind >= cfg.train.epochs:
        errors.append(doc.error(("lottery", "rewind"), f"rewinding to epoch {lot.rewind} leaves nothing to train: level "
                                f"0 trains {cfg.train.epochs} epochs (train.epochs, line "
                                f"{doc.where(('train', 'epochs'))[0]}) and a level trains epochs {lot.rewind + 1}.."
                                f"{cfg.train.epochs}, so the rewind epoch must be below {cfg.train.epochs}"))
    return errors


def as_schedule(cfg: BaseConfig) -> BaseConfig:
    """The configuration as the prune compiler reads it: one event after the last epoch, of `fraction`. It checks
    the selection, scoring and units; `levels` turns its schedules into the chain's counts."""
    assert cfg.prune is not None and cfg.lottery is not None
    prune = cfg.prune.model_copy(update={"schedule": ScheduleSpec(epochs=[cfg.train.epochs]),
                                         "amount": cfg.lottery.fraction})
    return cfg.model_copy(update={"prune": prune})


@dataclass(frozen=True)
class Level:
    """One pruning level's counts: units kept by each ranking (a layer, or the global group) and the event."""

    kept: dict[str, int]
    events: list[PlanEvent]
    sparsity: Fraction


def levels(cfg: BaseConfig, schedules: list[LayerSchedule], doc: Document
           ) -> tuple[list[LayerSchedule], list[Level], list[SpecError]]:
    """(the schedules without events, each level's counts, errors): level l keeps ceil((1 - f) x level l-1's)."""
    lot = cfg.lottery
    assert lot is not None
    f = Fraction(repr(lot.fraction))
    ranking = lambda s: s.group[0] if s.group else s.layer  # noqa: E731  (a layer, or the global group's first)
    rankings: dict[str, tuple[list[str], int]] = {}  # ranking -> (the layers ranked together, their units)
    for s in schedules:
        layers, units = rankings.get(ranking(s), (s.group, 0))
        rankings[ranking(s)] = (layers, units + (s.units or 0))
    total = sum(units for _, units in rankings.values())
    kept = {name: units for name, (_, units) in rankings.items()}
    out, errors = [], []
    for level in range(1, lot.levels + 1):
        now = {name: math.ceil((1 - f) * k) for name, k in kept.items()}
        idle = [name for name in now if now[name] == kept[name]]
        if idle:
            errors.append(doc.error(("lottery", "levels"), f"level {level} would prune nothing of {idle[0]} (it keeps "
                                    f"{kept[idle[0]]} units, and ceil((1 - {lot.fraction}) x {kept[idle[0]]}) keeps "
                                    f"them all): give fewer levels or a larger fraction"))
            break
        events = [PlanEvent(epoch=lot.start, layer=name, prune=kept[name] - now[name], kept=now[name],
                            of=rankings[name][1], group=rankings[name][0]) for name in now]
        out.append(Level(now, events, 1 - Fraction(sum(now.values()), total)))
        kept = now
    if errors:
        return schedules, out, errors
    # No events during training; `amount` is the last level's sparsity of the layer's ranking, `rate` the fraction.
    bare = [s.model_copy(update={"epochs": [], "pruned": [], "kept": [], "rate": lot.fraction,
                                 "amount": float(1 - Fraction(kept[ranking(s)], rankings[ranking(s)][1]))})
            for s in schedules]
    return bare, out, errors


def chain(config_id: str, cfg: BaseConfig, dense_hash: str, forms: list[dict[str, Any]], counts: list[Level],
          seeds: list[int]) -> tuple[list[PlanRun], list[list[str]]]:
    """The chain's runs (in an order where every stage follows what it needs) and its ids by level and seed.

    `dense_hash`: the hash of the configuration without pruning (what level 0 trains); `forms`: each pruned
    layer's ranking as ids hash it (scoring, target, method, scope)."""
    lot = cfg.lottery
    assert lot is not None
    epochs, start, weights = cfg.train.epochs, lot.start, lot.weights
    measure = canonical(cfg.measure)
    runs: list[PlanRun] = []
    ids: list[list[str]] = [[] for _ in range(lot.levels + 1)]
    for seed in seeds:
        dense = digest({"stage": "dense", "config": dense_hash, "seed": seed}, 12)
        runs.append(PlanRun(id=dense, config=config_id, seed=seed, epochs=epochs, events=[],
                            stage=PlanStage(level=0, kind="dense")))  # its rewind points: `dense_keep`
        ids[0].append(dense)
        after = dense
        for level, count in enumerate(counts, start=1):
            stage = dict(level=level, start=start, after=after, events=count.events, sparsity=float(count.sparsity),
                         rewind_from=dense if weights == "rewind" else None)
            what = {"level": level, "after": after, "prune": forms, "events": [[e.layer, e.prune] for e in count.events],
                    "start": start, "weights": weights, "measure": measure}
            ticket = digest({"stage": "ticket", **what, "rewind_from": stage["rewind_from"]}, 12)
            runs.append(PlanRun(id=ticket, config=config_id, seed=seed, epochs=epochs, events=[],
                                stage=PlanStage(kind="ticket", weights=weights, **stage)))
            mine = ticket
            if lot.control is not None:
                own = "reinit" if lot.control == "reinit" else weights
                from_ = stage["rewind_from"] if own == "rewind" else None
                mine = digest({"stage": lot.control, **what, "weights": own, "rewind_from": from_}, 12)
                runs.append(PlanRun(id=mine, config=config_id, seed=seed, epochs=epochs, events=[],
                                    stage=PlanStage(kind=lot.control, weights=own, **{**stage, "rewind_from": from_})))
            ids[level].append(mine)
            after = ticket
    # Level by level (every seed's level l before any level l + 1): a stage follows what it needs, and executors
    # that run in order start the seeds' levels side by side.
    runs.sort(key=lambda r: r.stage.level if r.stage else 0)
    return runs, ids


def dense_keep(runs: list[PlanRun]) -> list[PlanRun]:
    """Level-0 runs keep every rewind point that any stage of the plan asks of them (a run shared by two
    configurations that rewind to different epochs keeps both)."""
    wanted: dict[str, set[int]] = {}
    for r in runs:
        if r.stage is not None and r.stage.rewind_from is not None:
            wanted.setdefault(r.stage.rewind_from, set()).add(r.stage.start)
    return [r.model_copy(update={"stage": r.stage.model_copy(update={"keep": sorted(wanted[r.id])})})
            if r.id in wanted else r for r in runs]


def with_inputs(plan: Plan, runs: list[PlanRun]) -> list[PlanRun]:
    """`runs` and every run they start from, in plan order (a chosen level brings the levels before it)."""
    by_id = {r.id: r for r in plan.runs}
    wanted = {r.id for r in runs}
    todo = [r.id for r in runs]
    while todo:
        for need in by_id[todo.pop()].needs:
            if need not in wanted:
                wanted.add(need)
                todo.append(need)
    return [r for r in plan.runs if r.id in wanted]
