"""What a configuration's identity is made of: the hash its run ids come from covers what decides a run's
numbers (the resolved sections, pruning as compiled per-layer events, an own model's layer table) and
nothing else, so that two spellings of the same configuration share their runs (gstc.ids says how
values hash so that ids survive upgrades).
"""

from __future__ import annotations

from typing import Any

from gstc import FORMAT, archs
from gstc.ids import LOCATION_FIELDS, canonical, digest
from gstc.plan import LayerSchedule
from gstc.spec import BaseConfig


def _prune_semantic(schedules: list[LayerSchedule], table: list[archs.Layer] = (),
                    scorings: dict[str, Any] | None = None) -> list[dict]:
    """Each pruned layer as ids hash it: its ranking (scoring, target, mode, ...) and its events."""
    # A layer pruned with others (coupled layers, followers) prunes more than its own filters: that is part of
    # what it does, named only where there is any, so that a layer pruned alone keeps the id it always had.
    joint = {l.name: sorted([*l.coupled, *l.followers]) for l in table if l.coupled or l.followers}
    # A scoring or method hashes as its name and the parameters that differ from its defaults
    # (gstc.plugins.Loaded.hash_form); a new granularity, scope or method is named only where it is not the
    # filter-by-layer ranking ids always meant.
    forms = scorings or {}
    return [
        {"layer": s.layer, "scoring": forms[s.layer]["scoring"] if s.layer in forms else canonical(s.scoring),
         "target": s.target,
         "mode": canonical(s.mode), "events": [[e, p] for e, p in zip(s.epochs, s.pruned) if p > 0],
         **({"with": joint[s.layer]} if s.layer in joint and s.granularity == "filter" else {}),
         **({"granularity": s.granularity} if s.granularity != "filter" else {}),
         **({"scope": s.scope, "group": s.group} if s.scope != "layer" else {}),
         **({"method": forms[s.layer]["method"]} if forms.get(s.layer, {}).get("method", "rank") != "rank" else {})}
        for s in schedules
    ]


def prune_forms(schedules: list[LayerSchedule], scorings: dict[str, Any]) -> list[dict]:
    """Each pruned layer's ranking as ids hash it, without events (a lottery level's own events are its counts)."""
    return [{k: v for k, v in form.items() if k != "events"} for form in _prune_semantic(schedules, (), scorings)]


def _semantic(cfg: BaseConfig, schedules: list[LayerSchedule], table: list[archs.Layer] = (),
              scorings: dict[str, Any] | None = None) -> dict:
    """What decides a run's numbers: the resolved configuration, with pruning as the
    compiled per-layer events (so a glob and the names it matches hash alike) and
    without where the data lies (gstc.ids: fields added later hash only when set)."""
    data = {k: v for k, v in canonical(cfg.data).items() if k not in LOCATION_FIELDS}
    prune = _prune_semantic(schedules, table, scorings)
    model = {k: v for k, v in canonical(cfg.model).items() if k != "layers"}  # where the table lies: not hashed
    if cfg.model.arch not in archs.ARCHS:  # what the table says is: an edited model gets new ids
        model["table"] = [[l.name, l.filters, l.after, l.groups] for l in table]
    later = {name: canonical(getattr(cfg, name)) for name in ("lottery", "moving") if getattr(cfg, name) is not None}
    return {"format": FORMAT, "model": model, "data": data, "train": canonical(cfg.train),
            "measure": canonical(cfg.measure), "prune": prune, **later}


def config_hash(cfg: BaseConfig, schedules: list[LayerSchedule], table: list[archs.Layer] = (),
                scorings: dict[str, Any] | None = None) -> str:
    """The configuration's hash: each of its runs' ids is made from it and the seed (gstc.ids.run_id)."""
    return digest(_semantic(cfg, schedules, table, scorings), 16)
