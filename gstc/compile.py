"""Spec -> Plan: validation, variants x sweep points x seeds, schedules and filter counts.

The pipeline (`check`) never stops at the first problem: the spec's own keys, the
override paths, then every configuration (a variant with a sweep point applied) are
validated and compiled, and every error found is returned, each pointing at the YAML
node responsible (the override's value when an override caused it). The base is only
validated through its configurations, so it may leave a field to them; an error every
configuration has is the base's and is reported once, without a configuration.

The steps live beside it: override paths (gstc.overrides), validation errors in gstc's
words (gstc.translate), building each configuration (gstc.configurations) with its layer
table (gstc.layer_tables), pruning schedules (gstc.schedules; a lottery's levels,
gstc.stages) and hash (gstc.identity).
"""

from __future__ import annotations

import copy
import itertools
import math
import pathlib
from typing import Any

from pydantic import ValidationError

from gstc import FORMAT, stages
from gstc.configurations import Configurations
from gstc.errors import Collected, SpecError, SpecErrors
from gstc.ids import canonical, digest, run_id
from gstc.layer_tables import LayerTables, plan_layers
from gstc.load import Document, load_file
from gstc.overrides import Path, apply_override, blame_set, check_override_path
from gstc.plan import Plan, PlanConfig, PlanEvent, PlanLayer, PlanRun
from gstc.spec import CONFIG_FIELDS, BaseConfig, Spec, SpecHeader
from gstc.translate import not_a_mapping, validate

MAX_CONFIGS = 10_000
MAX_RUNS = 100_000
DEFAULT_VARIANT = "default"


def check(doc: Document, sets: list[tuple[str, Any]] | None = None,
          tables: LayerTables | None = None) -> tuple[Plan | None, list[SpecError]]:
    """Validate and compile a loaded spec; (plan, []) or (None, every error).

    The spec's own keys (gstc, name, seeds, variants, sweep) are validated as they are;
    the base configuration only through its configurations: each variant x sweep point
    is validated and compiled after its overrides, so a base may leave a field to them.
    An error at or under a path that `sets` (--set PATH=VALUE) gives is reported at that option.
    """
    plan, errors = _check(doc, sets, tables)
    return plan, [blame_set(e, sets) for e in errors] if sets else errors


def _check(doc: Document, sets: list[tuple[str, Any]] | None,
           tables: LayerTables | None) -> tuple[Plan | None, list[SpecError]]:
    collected = Collected()
    tables = tables or LayerTables()
    base_doc = _with_sets(doc, sets, collected)
    if collected:
        return None, collected.result({}, set())
    if not isinstance(base_doc.data, dict):
        return None, [not_a_mapping(base_doc)]
    raw = base_doc.data
    header_doc = Document(doc.file, {k: v for k, v in raw.items() if k not in CONFIG_FIELDS},
                          base_doc.positions, base_doc.key_positions)
    header, errs = validate(SpecHeader, header_doc, messages=Spec)
    collected.add(errs)

    variants = raw.get("variants") if isinstance(raw.get("variants"), dict) else {}
    sweep = raw.get("sweep") if isinstance(raw.get("sweep"), dict) else {}
    bad = _bad_override_paths(doc, variants, sweep, collected)
    variant_items = [(name, {p: v for p, v in (ov or {}).items() if p not in bad}) for name, ov in variants.items()
                     if ov is None or isinstance(ov, dict)] or [(DEFAULT_VARIANT, {})]
    sweep_axes = _usable_sweep(raw.get("sweep"), bad)
    n_points = _count_points(sweep_axes)  # counted before the points are built
    if len(variant_items) * n_points > MAX_CONFIGS:
        nv = len(variant_items)
        collected.add([doc.error(("sweep",), f"{nv} variant{'s' * (nv != 1)} x {n_points:,} sweep points is over the "
                                             f"limit of {MAX_CONFIGS:,} configurations")])
        return None, collected.result({}, set())
    points = _points(sweep_axes)

    config_raw = {k: v for k, v in raw.items() if k in CONFIG_FIELDS}
    search = [str(pathlib.Path(doc.file).resolve().parent)]  # a module:attribute plugin next to the spec
    built = Configurations(BaseConfig, doc, base_doc, tables, collected, named=bool(variants), search=search)
    for variant, overrides in variant_items:
        built.add_variant(variant, overrides, config_raw, points)
    for path, ok in built.applies.items():
        if not ok:
            zipped = isinstance(sweep.get("zip"), dict) and path in sweep["zip"]
            collected.add([doc.error(("sweep", "zip", path) if zipped else ("sweep", path),
                                     f"this sweep path applies to no variant: {path.split('.')[0]} is null in every one",
                                     key=True)])
    marks = {mark for table in (doc.positions, doc.key_positions) for p, mark in table.items()
             if p[:1] in (("variants",), ("sweep",))}
    if collected or header is None or tables.collecting:
        return None, collected.result(built.attempted, marks)

    seeds = header.seed_list()
    configs = built.configs
    if len(configs) * len(seeds) > MAX_RUNS:
        collected.add([doc.error(("seeds",), f"{len(configs)} configurations x {len(seeds)} seeds is over the limit of "
                                             f"{MAX_RUNS:,} runs")])
        return None, collected.result(built.attempted, marks)
    runs = stages.dense_keep(_runs(configs, built.chains, seeds))
    spec_hash, base_layers = _spec_hash(header, config_raw, configs, tables, doc.file)
    imports = any(":" in c.resolved.model.arch or ":" in c.resolved.data.dataset
                  or any(":" in name for s in c.schedules for name in (s.scoring.name, s.method.name, s.mode.kind))
                  for c in configs)  # module:attribute
    paths = [str(pathlib.Path(doc.file).resolve().parent)] if imports else []
    plan = Plan(gstc=FORMAT, spec=header.name, spec_hash=spec_hash, description=header.description,
                layers=base_layers, configs=configs, runs=runs, paths=paths)
    return plan, []


def _with_sets(doc: Document, sets: list[tuple[str, Any]] | None, collected: Collected) -> Document:
    """The spec with --set PATH=VALUE from the command line applied to its base, validated like overrides."""
    if not sets:
        return doc
    base_doc = Document(doc.file, copy.deepcopy(doc.data), dict(doc.positions), dict(doc.key_positions))
    for path, value in sets:
        parts, problem = check_override_path(path)
        if parts is None or not isinstance(base_doc.data, dict):
            collected.add([SpecError(doc.file, 1, 1, str(path), f"--set: {problem or 'the spec is not a mapping'}")])
            continue
        try:
            apply_override(base_doc.data, parts, copy.deepcopy(value), sweep=False)
        except ValueError as exc:
            collected.add([SpecError(doc.file, 1, 1, str(path), f"--set: {exc}")])
    return base_doc


def _bad_override_paths(doc: Document, variants: dict, sweep: dict, collected: Collected) -> set[str]:
    """The override paths of variants and sweep that the spec models have no place for, each reported (all of
    them, so that every typo shows at once)."""
    sources: list[tuple[str, Path]] = [(path, ("variants", name, path)) for name, ov in variants.items()
                                       if isinstance(ov, dict) for path in ov]
    sources += [(path, ("sweep", path)) for path in sweep if path != "zip"]
    if isinstance(sweep.get("zip"), dict):
        sources += [(path, ("sweep", "zip", path)) for path in sweep["zip"]]
    bad: set[str] = set()
    for path, where in sources:
        _, problem = check_override_path(path)
        if problem:
            bad.add(path)
            collected.add([doc.error(where, problem, key=True)])
    return bad


# --- sweep points --------------------------------------------------------------------


def _points(sweep: dict) -> list[list[tuple[str, Any, Path]]]:
    """Sweep points as lists of (path, value, position path of the value)."""
    axes = []
    for path, values in sweep.items():
        if path == "zip":
            zipped = list(values.items())
            if not zipped:
                continue  # `zip: {}`: no paired axis
            axes.append([[(p, vs[k], ("sweep", "zip", p, k)) for p, vs in zipped] for k in range(len(zipped[0][1]))])
        else:
            axes.append([[(path, v, ("sweep", path, k))] for k, v in enumerate(values)])
    return [[pair for group in combo for pair in group] for combo in itertools.product(*axes)]


def _usable_sweep(raw: Any, bad: set[str]) -> dict:
    """The sweep's axes that can be expanded (malformed ones are the header's errors), without bad paths."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for path, values in raw.items():
        if path == "zip":
            zipped = {p: v for p, v in values.items() if p not in bad} if isinstance(values, dict) else {}
            if all(isinstance(v, list) and v for v in zipped.values()) and len({len(v) for v in zipped.values()}) <= 1:
                out["zip"] = zipped
        elif path not in bad and isinstance(values, list) and values:
            out[path] = values
    return out


def _count_points(sweep: dict) -> int:
    """How many points `_points` builds from these axes."""
    counts = [len(v) for k, v in sweep.items() if k != "zip"]
    counts += [len(next(iter(sweep["zip"].values())))] if sweep.get("zip") else []
    return math.prod(counts)


# --- runs and the plan ---------------------------------------------------------------


def _runs(configs: list[PlanConfig], chains: dict[str, tuple], seeds: list[int]) -> list[PlanRun]:
    """Each configuration's runs, one a seed (a lottery's: its chain of stages); `configs` get their events
    or their chain."""
    runs: list[PlanRun] = []
    seen: set[str] = set()  # a stage shared by two configurations is one run, of the first
    for n, c in enumerate(configs):
        if c.id in chains:
            chain_runs, ids = stages.chain(c.id, *chains[c.id], seeds)
            configs[n] = c.model_copy(update={"chain": ids})
            runs += [r for r in chain_runs if r.id not in seen]
            seen.update(r.id for r in chain_runs)
            continue
        order = {s.layer: k for k, s in enumerate(c.schedules)}  # table order (dense layers after the convs)
        # model_construct: the compiler's own typed values, not input to validate (a sweep of 100,000 runs plans
        # in seconds; benchmarks/plan_scale.py)
        events = sorted(
            (PlanEvent.model_construct(epoch=e, layer=s.layer, prune=p, kept=k, of=s.kept[0] + s.pruned[0],
                                       group=list(s.group))
             for s in c.schedules for e, p, k in zip(s.epochs, s.pruned, s.kept)
             if p > 0 and (not s.group or s.group[0] == s.layer)),  # a global group's event: once, by its first
            key=lambda ev: (ev.epoch, order[ev.layer]),
        )
        configs[n] = c.model_copy(update={"events": events})  # stored once; each run shares the list
        for seed in seeds:
            runs.append(PlanRun.model_construct(id=run_id(c.hash, seed), config=c.id, seed=seed,
                                                epochs=c.resolved.train.epochs, events=events, stage=None))
    return runs


def _spec_hash(header: SpecHeader, config_raw: dict, configs: list[PlanConfig], tables: LayerTables,
               file: str) -> tuple[str, list[PlanLayer]]:
    """The spec's hash and the base's layer table (the first configuration's where the base is incomplete)."""
    try:
        base = BaseConfig.model_validate(config_raw)
    except ValidationError:  # a base that leaves fields to its configurations: hashed as written
        return digest({"header": canonical(header), "base": _json_safe(config_raw)}, 16), configs[0].layers
    # a complete base: the whole validated spec (header and base), as format 1 hashed it
    table, _ = tables.table(base, Document(file, config_raw, {}, {}))
    layers = plan_layers(table) if table is not None else configs[0].layers
    return digest({**canonical(base), **canonical(header)}, 16), layers


def _json_safe(value: Any) -> Any:
    """Raw spec data as strict JSON can hash it: a non-finite float (`.inf` that the configurations override) as
    its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def compile_file(path: str, sets: list[tuple[str, Any]] | None = None) -> Plan:
    """Load, validate and compile a spec file; raise SpecErrors with every problem."""
    plan, errors = check(load_file(path), sets)
    if errors:
        raise SpecErrors(errors)
    assert plan is not None
    return plan
