"""A configuration's pruning section -> per-layer schedules with exact unit counts.

For each `prune.layers` entry: which layers it selects, its event epochs, how many units
(filters or weights) each event removes along its curve, and its scoring with the
scoring plugin's parameters and checks (gstc.scorings). Counts are computed in exact
rationals from the decimals the spec wrote, so a plan's counts never depend on float
rounding.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from fractions import Fraction
from typing import Any

from pydantic import ValidationError

from gstc import archs, selection
from gstc.costs import Cost
from gstc.errors import SpecError, did_you_mean, dotted
from gstc.load import Document
from gstc.plan import LayerSchedule
from gstc.methods import METHODS
from gstc.modes import MODES, ForeignMode
from gstc.plugins import Choice, PluginError
from gstc.plugins import Use, UseLayer, checks
from gstc.scorings import SCORINGS
from gstc.prune_spec import NEITHER, LayerEntry, PruneSpec, ScheduleSpec, nm, start_after_end
from gstc.spec import BaseConfig


def _exact(value: float) -> Fraction:
    """The decimal the user wrote (0.3 -> 3/10), not the binary float's expansion."""
    return Fraction(repr(value))


def kept_counts(filters: int, amount: Fraction, events: int) -> list[int]:
    """Units kept after each event of the `equal` curve: the last keeps ceil((1 - amount) x units), and event i of n
    keeps ceil(final + (units - final) x (n - i) / n), so every event removes about the same number."""
    final = math.ceil((1 - amount) * filters)
    span = filters - final  # ceil(final + span * (events - i) / events), in integers: fast for many events
    return [final - (-span * (events - i) // events) for i in range(1, events + 1)]


def sparsity(epoch: int, epochs: list[int], initial: Fraction, final: Fraction, power: int) -> Fraction:
    """The sparsity after the event at `epoch` on a linear (power 1) or cubic (power 3) curve (Zhu & Gupta 2017):
    s_f + (s_i - s_f) * (1 - (t - t0) / (t_last - t0))^power; a single event reaches s_f."""
    t0, last = epochs[0], epochs[-1]
    if last == t0:
        return final
    return final + (initial - final) * (1 - Fraction(epoch - t0, last - t0)) ** power


def curve_kept(units: int, epochs: list[int], curve: str, amount: Fraction, initial: Fraction) -> list[int]:
    """Units kept after each event: ceil((1 - s) x units) for each event's sparsity s on the curve."""
    if curve == "equal":
        return kept_counts(units, amount, len(epochs))
    power = {"linear": 1, "cubic": 3}[curve]
    return [math.ceil((1 - sparsity(e, epochs, initial, amount, power)) * units) for e in epochs]


def _match(select: str, names: list[str]) -> list[str]:
    if any(ch in select for ch in "*?["):
        return [n for n in names if fnmatch.fnmatchcase(n, select)]
    return [select] if select in names else []


def _event_epochs(entry: LayerEntry, default: ScheduleSpec | None) -> tuple[list[int] | None, str | None, str]:
    """(epochs, error, which schedule field to blame) for one layer entry."""
    own = entry.schedule
    if own is not None and own.epochs is not None:
        return sorted(own.epochs), None, "own"
    if own is None and default is not None and default.epochs is not None:
        return sorted(default.epochs), None, "default"
    if own is not None and default is not None and default.epochs is not None:
        return None, ("prune.schedule lists `epochs`, which cannot merge with this entry's own start/end/every; "
                      "give this entry `epochs: [...]` too, or use start/end/every in prune.schedule"), "own"
    pick = lambda f: getattr(own, f) if own is not None and getattr(own, f) is not None else (getattr(default, f) if default else None)  # noqa: E731
    start, end, every = pick("start"), pick("end"), pick("every")
    blame = "own" if own is not None else "default"
    if start is None:
        return None, "no schedule: give this entry or prune.schedule a `start` (or `epochs: [...]`)", blame
    end = start if end is None else end
    if start > end:
        return None, start_after_end(start, end), blame
    if every is None and end > start:
        return None, f"`every` is needed for events from {start} to {end}", blame
    return range(start, end + 1, every or 1), None, blame  # a range: `end` may be huge (checked by the caller)


def _curve(entry: LayerEntry, default: ScheduleSpec | None) -> tuple[str, float | None]:
    """The entry's curve and initial sparsity: its own schedule's where given, else prune.schedule's."""
    own = entry.schedule
    fields = own.model_fields_set if own is not None else set()
    curve = own.curve if "curve" in fields else default.curve if default is not None else "equal"
    initial = own.initial if own is not None and own.initial is not None else default.initial if default else None
    return curve, initial


def plugin_of(registry: Any, choice: Choice, path: tuple, doc: Document,
              search: list[str]) -> tuple[Any, Choice | None, list[SpecError]]:
    """(the loaded plugin, the choice with every parameter filled in, errors) of a spec's scoring or method."""
    try:
        loaded = registry.load(choice, search)
    except PluginError as exc:
        return None, None, [doc.error(path + ("name",) if choice.params else path, str(exc))]
    except ValidationError as exc:
        return None, None, [doc.error(path + tuple(e["loc"]), f"{choice.name}: {e['msg']}") for e in exc.errors()]
    return loaded, Choice(name=choice.name, params=loaded.params.model_dump(mode="json")), []


def _units(granularity: str, filters: int, kernel: list[int]) -> int | str:
    """A layer's units under a granularity (filters, weights, N:M groups), or why it has none."""
    if granularity == "filter":
        return filters
    if granularity == "weight":
        return filters * math.prod(kernel)
    n, m = nm(granularity)
    inputs, kh, kw = kernel
    if inputs % m:
        return (f"reads {inputs} input channels per group, not a multiple of {m}: {granularity} groups run along the "
                "input channels")
    return filters * kh * kw * (inputs // m)


def mode_of(mode: Any, path: tuple, doc: Document, search: list[str]) -> tuple[Any, Any, list[SpecError]]:
    """(the mode plugin, the mode with every parameter filled in, errors). Built-in and installed modes arrive
    validated by their own model; a module:attribute mode's parameters are validated here."""
    extra = dict(mode.model_extra or {}) if isinstance(mode, ForeignMode) else None
    try:
        plugin = MODES.get(mode.kind, search)
    except PluginError as exc:
        return None, None, [doc.error(path + ("kind",), str(exc))]
    if extra is None:
        return plugin, mode, []
    try:
        params = plugin.Params.model_validate({"kind": mode.kind, **extra})
    except ValidationError as exc:
        return None, None, [doc.error(path + tuple(e["loc"]), f"{mode.kind}: {e['msg']}") for e in exc.errors()]
    return plugin, ForeignMode.model_validate(params.model_dump(mode="json")), []


def compile_prune(cfg: BaseConfig, table: list[archs.Layer], doc: Document, cost: Cost | None,
                  search: list[str]) -> tuple[list[LayerSchedule], dict[str, Any], list[SpecError]]:
    """(per-layer schedules in table order, each schedule's scoring as run ids hash it, errors).

    `cost` (None where the images' shape is unknown until loading) gives each conv's filter shape and each dense
    layer's weight shape: the units of single weights and N:M groups. Dense layers are selectable there only.
    """
    errors: list[SpecError] = []
    late = [m for m in cfg.train.lr_schedule.milestones if m >= cfg.train.epochs]
    if late:
        errors.append(doc.error(("train", "lr_schedule", "milestones"), f"milestones {late} never take effect: "
                                f"training has {cfg.train.epochs} epochs (train.epochs); a milestone must be below it"))
    prune: PruneSpec | None = cfg.prune
    errors += _moving(cfg, doc)
    if prune is None:
        return [], {}, errors
    weights = prune.granularity != "filter"  # single weights, or N:M groups of them
    kernels = dict(cost.kernels) if cost is not None else None
    dense = {name: shape for name, shape in (cost.dense if cost is not None else {}).items()
             if name not in {layer.name for layer in table}}
    if weights and kernels is not None:  # a dense layer (out, in) as a conv of `out` filters reading `in` channels
        table = [*table, *(archs.Layer(name, out, "conv") for name, (out, _) in dense.items())]
        kernels.update({name: [inputs, 1, 1] for name, (_, inputs) in dense.items()})
    names = [layer.name for layer in table]
    by_name = {layer.name: layer for layer in table}
    what = {"filter": "filter", "weight": "weight"}.get(prune.granularity, f"{prune.granularity} group")
    glob = prune.scope == "global"
    err = lambda path, msg: errors.append(doc.error(path, msg))  # noqa: E731
    if weights and kernels is None:
        err(("prune", "granularity"), f"{prune.granularity} granularity counts each layer's weights, which depend on the images' "
            f"channels, and those of dataset {cfg.data.dataset!r} are known only by loading it; use filter granularity")
        return [], {}, errors
    chosen: dict[str, int] = {}
    out: list[LayerSchedule] = []
    hash_forms: dict[str, Any] = {}
    shape: tuple[str, Fraction, Fraction] = ("equal", Fraction(0), Fraction(0))
    for i, entry in enumerate(prune.layers):
        at = ("prune", "layers", i)
        matched = _match(entry.select, names)
        if not matched:
            kind = "glob" if any(ch in entry.select for ch in "*?[") else "name"
            linear = _match(entry.select, list(dense)) if not weights else []
            err(at + ("select",), f"{kind} {entry.select!r} matches no prunable layer of {cfg.model.arch}"
                + (f": {', '.join(linear)} is a dense layer, whose weights granularity weight or N:M prunes "
                   "(filter granularity prunes convs' filters)" if linear else
                   f"{did_you_mean(entry.select, names)}; `gstc layers {cfg.model.arch}` lists them"))
        for name in matched:
            if name in chosen:
                err(at + ("select",), f"layer {name!r} is already selected by prune.layers[{chosen[name]}]; "
                                      "a layer may be selected once")
        matched = [n for n in matched if n not in chosen]
        chosen.update({n: i for n in matched})
        problem = selection.refused(matched, by_name)
        if problem:
            err(at + ("select",), problem)
            continue
        if glob:
            own = [f for f in ("amount", "rate", "schedule", "scoring", "target", "mode") if getattr(entry, f) is not None]
            if own:
                err(at + (own[0],), f"prune.scope is global: one amount, schedule, scoring, target and mode over all "
                                    f"selected layers (set them in prune); remove this entry's own {', '.join(own)}")
                continue
        missing = [n for n in matched if weights and n not in kernels]
        if missing:
            err(at + ("select",), f"the layer file lacks the filter shape of {', '.join(missing[:3])}: rewrite it "
                                  f"with `gstc layers {doc.file} --write` for {prune.granularity} granularity")
            continue
        units = {n: _units(prune.granularity, by_name[n].filters, kernels[n] if weights else []) for n in matched}
        bad = [f"{n} {u}" for n, u in units.items() if isinstance(u, str)]
        if bad:
            err(at + ("select",), "; ".join(bad[:3]) + ("; ..." if len(bad) > 3 else ""))
            continue

        epochs, problem, blame = _event_epochs(entry, prune.schedule)
        sched_path = at + ("schedule",) if blame == "own" else ("prune", "schedule") if prune.schedule else at
        if problem:
            err(sched_path, problem)
            continue
        inside = list(itertools.takewhile(lambda e: e <= cfg.train.epochs, epochs))  # epochs are sorted
        outside = list(epochs[len(inside):][:6])
        epochs = inside
        if outside:
            err(sched_path, f"event epochs {outside[:5]}{'...' if len(outside) > 5 else ''} are outside "
                            f"0..{cfg.train.epochs} (train.epochs, line {doc.where(('train', 'epochs'))[0]})")
            continue
        curve, initial = _curve(entry, prune.schedule)

        amount, rate = entry.amount, entry.rate
        src_a = at + ("amount",) if amount is not None else ("prune", "amount")
        src_r = at + ("rate",) if rate is not None else ("prune", "rate")
        amount = prune.amount if amount is None else amount
        rate = prune.rate if rate is None else rate
        if amount is not None and rate is not None:
            err(src_a if src_a[:3] == at else src_r, f"both amount (at {dotted(src_a)}) and rate (at {dotted(src_r)}) "
                                                     "apply to this entry; give one")
            continue
        if curve != "equal" and amount is None:
            err(sched_path if rate is None else src_r,
                f"a {curve} curve runs from `initial` to a final sparsity: give `amount` (the final sparsity)"
                + (", not `rate`" if rate is not None else ""))
            continue
        groups = nm(prune.granularity) is not None
        if amount is None and rate is None and not groups:
            err(at, NEITHER)
            continue
        n = len(epochs)
        # N:M without an amount: every group (N of every M weights kept, the pattern's own sparsity).
        total = _exact(amount) if amount is not None else _exact(rate) * n if rate is not None else Fraction(1)
        if total > 1 or (total == 1 and not groups):
            err(src_r, f"rate {rate} x {n} events = {float(total):g}: that removes every {what}; "
                       "the total must stay below 1")
            continue
        start = _exact(initial) if initial is not None else Fraction(0)
        if start >= total:
            err(sched_path, f"initial sparsity {initial} is not below the final one ({float(total):g}, the amount)")
            continue

        method, method_full, errs = plugin_of(METHODS, prune.method, ("prune", "method"), doc, search)
        if errs:
            errors.extend(errs)
            continue
        mode_path = at + ("mode",) if entry.mode is not None else ("prune", "mode")
        mode_plugin, mode, errs = mode_of(entry.mode or prune.mode, mode_path, doc, search)
        if errs:
            errors.extend(errs)
            continue
        choice = entry.scoring or prune.scoring
        score_path = at + ("scoring",) if entry.scoring else ("prune", "scoring")
        loaded, full, errs = plugin_of(SCORINGS, choice, score_path, doc, search)
        if errs:
            errors.extend(errs)
            continue
        use = Use(layers=tuple(UseLayer(n, by_name[n].after, () if weights else by_name[n].coupled) for n in matched),
                  epochs=tuple(epochs), granularity=prune.granularity, scope=prune.scope,
                  mode=(entry.mode or prune.mode).kind)
        problems = checks("scoring", choice.name, loaded.plugin, loaded.params, use)
        mode_problems = checks("mode", mode.kind, mode_plugin, mode, use)
        method_problems = checks("method", prune.method.name, method.plugin, method.params, use)
        if problems or mode_problems or method_problems:
            errors.extend(doc.error(score_path, msg) for msg in problems)
            errors.extend(doc.error(mode_path, msg) for msg in mode_problems)
            errors.extend(doc.error(("prune", "method"), msg) for msg in method_problems)
            continue
        shape = (curve, total, start)  # under global scope, every entry's (it comes from prune)
        for name in matched:
            kept = curve_kept(units[name], epochs, curve, total, start)
            pruned = [a - b for a, b in zip([units[name]] + kept, kept)]
            hash_forms[name] = {"scoring": loaded.hash_form(), "method": method.hash_form()}
            out.append(LayerSchedule(
                layer=name, filters=by_name[name].filters, entry=i, scoring=full, method=method_full,
                target=entry.target or prune.target, mode=mode,
                epochs=epochs, amount=float(total), rate=float(total / n), pruned=pruned, kept=kept,
                granularity=prune.granularity, units=units[name] if weights else None, curve=curve,
            ))
    order = {name: k for k, name in enumerate(names)}
    out.sort(key=lambda s: order[s.layer])
    if prune.distribution == "erk" and not errors:
        problem = _erk_problem(prune)
        if problem:
            err(("prune", "distribution"), problem)
        elif out:
            shapes = {s.layer: [s.filters, *kernels[s.layer]] for s in out}
            amounts = erk(shapes, _exact(prune.amount), set(dense))
            out = [s.model_copy(update=_counts(s, amounts[s.layer], shape[2])) for s in out]
    if glob and out and not errors:
        out = _global(out, *shape)
    if not errors and not weights:
        errors += [doc.error(("prune", "layers", i, "select"), msg) for i, msg in selection.coupling(out, by_name)]
    return out, hash_forms, errors


def _global(schedules: list[LayerSchedule], curve: str, total: Fraction, start: Fraction) -> list[LayerSchedule]:
    """One ranking across the layers: each event's counts are the group's, computed once from its unit total on
    the curve (not summed from per-layer counts, which would round layer by layer)."""
    group = [s.layer for s in schedules]
    units = sum(s.units if s.units is not None else s.filters for s in schedules)
    kept = curve_kept(units, schedules[0].epochs, curve, total, start)
    pruned = [a - b for a, b in zip([units] + kept, kept)]
    return [s.model_copy(update={"scope": "global", "group": group, "pruned": pruned, "kept": kept}) for s in schedules]


def _moving(cfg: BaseConfig, doc: Document) -> list[SpecError]:
    """What a moving mask needs: single weights that `prune` holds at zero for good, and no lottery beside it."""
    if cfg.moving is None:
        return []
    prune = cfg.prune
    if prune is None:
        return [doc.error(("moving",), "a moving mask moves what `prune` pruned: add a prune section (granularity: "
                                       "weight; e.g. amount 0.8, target: random, schedule: {epochs: [0]})")]
    errors = []
    if prune.granularity != "weight":
        errors.append(doc.error(("prune", "granularity"), f"a moving mask moves single weights: set granularity: "
                                                          f"weight (found {prune.granularity})"))
    kinds = [("prune", "mode")] * (prune.mode.kind != "prune") + [
        ("prune", "layers", i, "mode") for i, e in enumerate(prune.layers) if e.mode is not None and e.mode.kind != "prune"]
    errors += [doc.error(path, "a moving mask moves weights pruned for good: mode prune (the default)") for path in kinds]
    if cfg.lottery is not None:
        errors.append(doc.error(("moving",), "a lottery's levels keep the mask their pruning made: give moving or "
                                             "lottery, not both"))
    return errors


def _erk_problem(prune: PruneSpec) -> str | None:
    if prune.granularity != "weight":
        return "erk spreads single weights' sparsity: it needs granularity: weight"
    if prune.scope != "layer":
        return "erk gives each layer its own amount: it needs scope: layer"
    if prune.amount is None or any(e.amount is not None or e.rate is not None for e in prune.layers):
        return "erk spreads the default prune.amount over the layers: give prune.amount and no per-entry amount or rate"
    return None


def erk(shapes: dict[str, list[int]], amount: Fraction, dense: set[str]) -> dict[str, Fraction]:
    """Each layer's amount under the Erdos-Renyi-Kernel distribution (Evci et al. 2020), in exact rationals.

    A conv (out, in, kh, kw) keeps a share eps x (out + in + kh + kw) / (out x in x kh x kw) of its weights, a
    dense layer (out, in) eps x (out + in) / (out x in); eps makes the layers keep 1 - amount of their weights
    together, and a layer whose share would pass 1 keeps all (the others share the rest)."""
    dims = {name: shape[:2] if name in dense else shape for name, shape in shapes.items()}
    sizes = {name: math.prod(d) for name, d in dims.items()}
    full: set[str] = set()
    while True:
        rest = [n for n in dims if n not in full]
        keep = (1 - amount) * sum(sizes.values()) - sum(sizes[n] for n in full)
        eps = keep / sum(sum(dims[n]) for n in rest)  # share x size = eps x (sum of the dimensions)
        over = [n for n in rest if eps * sum(dims[n]) > sizes[n]]
        if not over:
            return {n: Fraction(0) if n in full else 1 - eps * Fraction(sum(dims[n]), sizes[n]) for n in dims}
        full.add(max(over, key=lambda n: Fraction(sum(dims[n]), sizes[n])))


def _counts(s: LayerSchedule, amount: Fraction, start: Fraction) -> dict[str, Any]:
    """A schedule's amount, kept and pruned counts for another amount (its epochs and curve as they are)."""
    kept = curve_kept(s.units, s.epochs, s.curve, amount, start) if amount > 0 else [s.units] * len(s.epochs)
    return {"amount": float(amount), "rate": float(amount / len(s.epochs)), "kept": kept,
            "pruned": [a - b for a, b in zip([s.units] + kept, kept)]}
