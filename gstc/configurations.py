"""A spec's configurations: a variant's overrides and then each sweep point applied to the base's raw data,
each result validated and compiled into a PlanConfig (its layer table, per-layer schedules, counts and
hash) under an id that names its variant and point, every error kept with the configuration that had it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from gstc import stages
from gstc.costs import Cost, before_after, nonzero_after
from gstc.errors import Collected, SpecError, dotted
from gstc.identity import config_hash, prune_forms
from gstc.layer_tables import LayerTables, plan_layers
from gstc.load import Document
from gstc.overrides import NotApplicable, Path, apply_override, parse_path, remap_positions
from gstc.plan import Counts, LayerSchedule, PlanConfig, PlanLayer
from gstc.schedules import compile_prune
from gstc.spec import BaseConfig
from gstc.translate import validate


def _fmt(value: Any) -> str:
    """A sweep value as a configuration's id spells it."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@dataclass
class Configurations:
    """A spec's configurations as they are built: each variant with each sweep point applied, validated
    and compiled, its errors collected with its id."""

    model: type[BaseConfig]  # what a configuration is validated as
    doc: Document  # the spec as written: where override values stand
    base: Document  # the spec with --set applied
    tables: LayerTables
    collected: Collected
    named: bool  # the spec has variants: a configuration that repeats another is its variant's error
    search: list[str]  # folders a module:attribute plugin is looked for in
    configs: list[PlanConfig] = field(default_factory=list)
    attempted: dict[str, None] = field(default_factory=dict)  # every configuration id, valid or not, in order
    by_hash: dict[str, str] = field(default_factory=dict)  # configuration hash: the first id with it
    chains: dict[str, tuple] = field(default_factory=dict)  # lottery: (cfg, dense hash, prune forms, levels)
    applies: dict[str, bool] = field(default_factory=dict)  # sweep path: whether it applied to some configuration

    def add_variant(self, variant: str, overrides: dict[str, Any], config_raw: dict,
                    points: list[list[tuple[str, Any, Path]]]) -> None:
        """The variant's configurations: one a sweep point (one in all where the sweep does not apply to it)."""
        doc, base = self.doc, self.base
        vdoc = Document(doc.file, copy.deepcopy(config_raw), dict(base.positions), dict(base.key_positions))
        failed = False
        for path, value in overrides.items():
            parts = parse_path(path)
            try:
                apply_override(vdoc.data, parts, copy.deepcopy(value), sweep=False)
                remap_positions(doc, ("variants", variant, path), parts, vdoc.positions, vdoc.key_positions)
            except ValueError as exc:
                failed = True
                self.collected.add([doc.error(("variants", variant, path), str(exc), key=True)], config=variant)
        if failed:
            self.attempted[variant] = None
            return
        for point in points:
            self._add_point(variant, vdoc, point)

    def _add_point(self, variant: str, vdoc: Document, point: list[tuple[str, Any, Path]]) -> None:
        pdoc = Document(vdoc.file, copy.deepcopy(vdoc.data), dict(vdoc.positions), dict(vdoc.key_positions))
        applied: dict[str, Any] = {}
        ok = True
        for path, value, where in point:
            parts = parse_path(path)
            try:
                apply_override(pdoc.data, parts, copy.deepcopy(value), sweep=True)
            except NotApplicable:
                self.applies.setdefault(path, False)
                continue
            except ValueError as exc:
                ok = False
                self.collected.add([self.doc.error(where[:-1], str(exc), key=True)], config=variant)
                continue
            self.applies[path] = True
            applied[dotted(parts)] = value  # ids spell paths one way: prune.layers[1].amount
            remap_positions(self.doc, where, parts, pdoc.positions, pdoc.key_positions)
        if not ok:
            return
        cid = variant + ("[" + ",".join(f"{p}={_fmt(v)}" for p, v in applied.items()) + "]" if applied else "")
        if cid in self.attempted:
            return  # the same variant where the sweep did not apply: one configuration
        self.attempted[cid] = None
        self._compile(cid, variant, applied, pdoc)

    def _compile(self, cid: str, variant: str, applied: dict[str, Any], pdoc: Document) -> None:
        cfg, errs = validate(self.model, pdoc)
        self.collected.add(errs, config=cid)
        if cfg is None:
            return
        table, errs = self.tables.table(cfg, pdoc)
        self.collected.add(errs, config=cid)
        if table is None:
            return
        cost = self.tables.cost(cfg, self.doc.file)
        schedules, scorings, levels, errs = self._schedules(cfg, table, pdoc, cost)
        self.collected.add(errs, config=cid)
        if errs:
            return
        chash = config_hash(cfg, schedules, table, scorings)
        if chash in self.by_hash:
            where = ("variants", variant) if self.named else ("sweep",) if applied else ()
            self.collected.add([self.doc.error(where, f"configuration {cid!r} resolves to the same runs as "
                                                      f"{self.by_hash[chash]!r}; remove one")], config=cid)
            return
        self.by_hash[chash] = cid
        layers = plan_layers(table)
        counts = None if cost is None else _counts(cost, layers, schedules, levels)
        if levels:
            plain = cfg.model_copy(update={"prune": None, "lottery": None})
            self.chains[cid] = (cfg, config_hash(plain, [], table), prune_forms(schedules, scorings), levels)
        self.configs.append(PlanConfig(id=cid, variant=variant, point=applied, hash=chash, resolved=cfg, layers=layers,
                                       schedules=schedules, counts=counts))

    def _schedules(self, cfg: BaseConfig, table: list, pdoc: Document, cost: Cost | None
                   ) -> tuple[list[LayerSchedule], dict[str, Any], list[stages.Level], list[SpecError]]:
        """The configuration's per-layer schedules, their scorings' hash forms and a lottery's levels; or errors."""
        if cfg.lottery is None:
            schedules, scorings, errs = compile_prune(cfg, table, pdoc, cost, self.search)
            return schedules, scorings, [], errs
        # a chain of levels: `prune` says what each level ranks, not when
        errs = stages.check(cfg, pdoc)
        if errs:
            return [], {}, [], errs
        schedules, scorings, errs = compile_prune(stages.as_schedule(cfg), table, pdoc, cost, self.search)
        if errs:
            return [], {}, [], errs
        schedules, levels, errs = stages.levels(cfg, schedules, pdoc)
        return schedules, scorings, levels, errs


def _counts(cost: Cost, layers: list[PlanLayer], schedules: list[LayerSchedule], levels: list[stages.Level]) -> Counts:
    """Parameters, MACs and nonzero weights before and after pruning."""
    params, macs = before_after(cost, layers, schedules)
    nonzero = nonzero_after(params, schedules)
    if levels:  # the last level's weights held at zero
        units = sum(s.units or 0 for s in schedules)
        nonzero = [params[0], params[1] - units + sum(levels[-1].kept.values())]
    return Counts(params=params, macs=macs, nonzero=nonzero)
