"""Spec -> Plan: validation, variants x sweep points x seeds, schedules and filter counts.

The pipeline (`check`) never stops at the first problem: the spec's own keys, the
override paths, then every configuration (a variant with a sweep point applied) are
validated and compiled, and every error found is returned, each pointing at the YAML
node responsible (the override's value when an override caused it). The base is only
validated through its configurations, so it may leave a field to them; an error every
configuration has is the base's and is reported once, without a configuration.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import pathlib
import re
import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from gstc import FORMAT, archs, stages
from gstc.costs import Cost, before_after, nonzero_after
from gstc.datasets import known_shape
from gstc.errors import SpecError, SpecErrors, did_you_mean, dotted, show
from gstc.ids import LOCATION_FIELDS, canonical, digest, run_id
from gstc.load import Document, load_file
from gstc.plugins import Choice
from gstc.plan import Counts, LayerSchedule, Plan, PlanConfig, PlanEvent, PlanLayer, PlanRun
from gstc.schedules import compile_prune, kept_counts  # noqa: F401  (kept_counts: the paper's rule, tested here)
from gstc.spec import CONFIG_FIELDS, VARIANT_PATTERN, BaseConfig, Spec, SpecHeader

MAX_CONFIGS = 10_000
MAX_RUNS = 100_000
DEFAULT_VARIANT = "default"
# Fields whose short form is a string: `model: vgg11_bn` means `model: {arch: vgg11_bn}`.
SHORT_FORMS = {"model": "arch", "mode": "kind"}

Path = tuple[Any, ...]
# A key, then keys and list indices: `.key`, `[3]` or `.3` (so flow-style YAML needs no quotes).
_PATH_RE = re.compile(r"^[A-Za-z_]\w*(?:\[\d+\]|\.\d+|\.[A-Za-z_]\w*)*$")
_PART_RE = re.compile(r"\[(\d+)\]|\.(\d+)|\.?([A-Za-z_]\w*)")


class _Skip(Exception):
    """A sweep override that passes through a section this variant removed."""


# --- override paths ------------------------------------------------------------------


def parse_path(text: str) -> Path | None:
    """'prune.layers[3].amount' or 'prune.layers.3.amount' -> ('prune', 'layers', 3, 'amount'); None if malformed."""
    if not isinstance(text, str) or not _PATH_RE.match(text):
        return None
    return tuple(int(a) if a else int(b) if b else key for a, b, key in _PART_RE.findall(text))


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated/Optional/Union annotations."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [t for arg in get_args(tp) for t in _unwrap(arg)]
    if tp is type(None):
        return []
    return [tp]


def _is_model(tp: Any) -> bool:
    """A section with keys of its own; a plugin's choice (gstc.plugins.Choice) is one value, overridden whole."""
    return isinstance(tp, type) and issubclass(tp, BaseModel) and not issubclass(tp, Choice)


def _step(current: list[Any], part: str | int) -> list[Any]:
    """The types that one path part (a key or a list index) leads to from `current`; empty if it does not apply."""
    if isinstance(part, int):
        found = [get_args(t)[0] for t in current if get_origin(t) is list]
        found += [get_args(t)[part] for t in current if get_origin(t) is tuple and part < len(get_args(t))]
    else:
        found = [m.model_fields[part].annotation for m in current if _is_model(m) and part in m.model_fields]
    return [t for f in found for t in _unwrap(f)]


def _types_at(parts: Path, root: Any = BaseConfig) -> tuple[list[Any], str | None]:
    """Walk schema types along `parts`: (types found there, or an error message)."""
    current = [root]
    for i, part in enumerate(parts):
        here = dotted(parts[:i]) or "the spec"
        found = _step(current, part)
        if not found:
            if isinstance(part, int):
                pairs = [len(get_args(t)) for t in current if get_origin(t) is tuple]
                if pairs:
                    return [], f"{here} has {pairs[0]} entries, so index {part} does not exist"
                return [], f"{here} is not a list, so [{part}] does not apply"
            models = [t for t in current if _is_model(t)]
            names = [n for m in models for n in m.model_fields]
            if not models:
                if any(get_origin(t) is list for t in current):
                    return [], f"{here} is a list: index it, as in {here}[0].{part}"
                return [], f"{here} is a single value with no key {part!r}"
            return [], f"unknown key {part!r} in {here}{did_you_mean(part, names)}; expected one of: {', '.join(dict.fromkeys(names))}"
        current = found
    return current, None


ANY_INDEX = "[N]"  # in an override path template: any index of a list


def override_paths() -> list[Path]:
    """Every path an override may set, as templates (ANY_INDEX for a list's index, a tuple's indices
    spelled out), in the models' field order: the walk `check_override_path` checks a path along, run
    over every step. The JSON Schema types variants and sweep axes from this list."""
    out: list[Path] = []

    def walk(prefix: Path, current: list[Any]) -> None:
        steps: list[Any] = list(dict.fromkeys(n for m in current if _is_model(m) for n in m.model_fields))
        if any(get_origin(t) is list for t in current):
            steps.append(ANY_INDEX)
        steps += [i for t in current if get_origin(t) is tuple for i in range(len(get_args(t)))]
        for part in steps:
            out.append(prefix + (part,))
            walk(prefix + (part,), _step(current, 0 if part == ANY_INDEX else part))

    walk((), [BaseConfig])
    return out


def check_override_path(text: Any) -> tuple[Path | None, str | None]:
    parts = parse_path(text)
    if parts is None:
        return None, f"{show(text)} is not a dotted path such as prune.layers[0].amount"
    if parts[0] not in CONFIG_FIELDS:
        return None, (f"{parts[0]!r} cannot be overridden{did_you_mean(parts[0], CONFIG_FIELDS)}; "
                      f"overrides set paths under {', '.join(CONFIG_FIELDS)}")
    _, problem = _types_at(parts)
    return (None, problem) if problem else (parts, None)


def _apply(data: dict, parts: Path, value: Any, sweep: bool) -> None:
    """Set `value` at `parts` in raw spec data (ValueError: why not; _Skip: not applicable)."""
    cur: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                size = len(cur) if isinstance(cur, list) else 0
                raise ValueError(f"{dotted(parts[:i])} has {size} {'entry' if size == 1 else 'entries'}, "
                                 f"so index {part} does not exist")
        elif not isinstance(cur, dict):
            raise ValueError(f"{dotted(parts[:i])} is {show(cur)}, not a mapping")
        elif part not in cur:
            if last:
                cur[part] = value
                return
            cur[part] = [] if isinstance(parts[i + 1], int) else {}
        if last:
            cur[part] = value
            return
        child = cur[part]
        if child is None:
            if sweep:
                raise _Skip()
            raise ValueError(f"{dotted(parts[: i + 1])} is null in this configuration: set the whole section instead")
        if isinstance(child, str) and part in SHORT_FORMS and not isinstance(parts[i + 1], int):
            child = cur[part] = {SHORT_FORMS[part]: child}
        cur = child


def _remap(doc: Document, src: Path, dst: Path, positions: dict, key_positions: dict) -> None:
    """Point positions under `dst` at the override value's nodes under `src`."""
    for table, source in ((positions, doc.positions), (key_positions, doc.key_positions)):
        for p in [p for p in table if p[: len(dst)] == dst]:
            del table[p]
        for p, mark in source.items():
            if p[: len(src)] == src:
                table[dst + p[len(src):]] = mark
    positions.setdefault(dst, doc.where(src))


# --- validation errors ---------------------------------------------------------------

_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF"}


def _data_path(loc: tuple, data: Any, kind: str) -> tuple[Path, int | None]:
    """Map a pydantic `loc` onto the data: (path, index in loc of the last union tag)."""
    path: list[Any] = []
    cur, tag_at = data, None
    for i, el in enumerate(loc):
        if isinstance(cur, dict) and isinstance(el, str) and el in cur:
            path.append(el)
            cur = cur[el]
        elif isinstance(cur, list) and isinstance(el, int) and 0 <= el < len(cur):
            path.append(el)
            cur = cur[el]
        elif i == len(loc) - 1 and kind in ("missing", "extra_forbidden"):
            path.append(el)  # the last element names the missing or unknown key
        else:
            tag_at = i  # a union member's tag (e.g. 'sgd', 'list[int]'), not data
    return tuple(path), tag_at


def _message(err: dict, parts: Path, model: Any) -> str:
    kind, msg, found = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        key = parts[-1] if parts else "?"
        ts, _ = _types_at(tuple(parts[:-1]), model)
        models = [t for t in ts if _is_model(t)]
        # Of a tagged union (prune.mode), only the member that the data's tag chose
        tags, rest = set(), list(parts)
        for el in err["loc"]:
            if rest and el == rest[0]:
                rest.pop(0)
            elif isinstance(el, str):
                tags.add(el)
        chosen = [m for m in models if any(get_origin(f.annotation) is typing.Literal and tags & set(get_args(f.annotation))
                                           for f in m.model_fields.values())]
        names = [n for t in (chosen or models) for n in t.model_fields]
        names = list(dict.fromkeys(names))
        return f"unknown key {key!r}{did_you_mean(str(key), names)}; expected one of: {', '.join(names)}"
    if kind == "missing":
        return f"missing required key {parts[-1]!r}"
    if kind == "union_tag_invalid":
        ctx = err["ctx"]
        choices = re.findall(r"'([^']*)'", ctx["expected_tags"])
        # ctx["tag"] is str() of the value (null -> "None"); show the value as written
        tag = found.get(_discriminator(err), ctx["tag"]) if isinstance(found, dict) else ctx["tag"]
        hint = did_you_mean(tag, [c for c in choices if c != "module:attribute"]) if isinstance(tag, str) else ""
        expected = ctx["expected_tags"].replace(", 'module:attribute'", "")
        own = " (or module:attribute for a plugin of your own)" if "module:attribute" in choices else ""
        return f"expected one of {expected}{own}, found {show(tag)}{hint}"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        hint = did_you_mean(found, choices) if isinstance(found, str) else ""
        return f"expected one of {expected}, found {show(found)}{hint}"
    if kind == "union_tag_not_found":
        without = " without it" if isinstance(found, dict) and found else ""
        return f"expected a mapping with key '{_discriminator(err)}', found {show(found)}{without}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, found {show(found)}"
    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        ctx = err.get("ctx", {})
        n = ctx.get("min_length", ctx.get("max_length"))
        what = "character" if kind.startswith("string") else "item"
        bound = "at least" if kind.endswith("short") else "at most"
        return f"expected {bound} {n} {what}{'s' * (n != 1)}, found {show(found)}"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern")
        if pattern == VARIANT_PATTERN:
            return f"expected a name matching [A-Za-z0-9][A-Za-z0-9._-]* (letters, digits, . _ -), found {show(found)}"
        return f"expected a name matching [a-z0-9][a-z0-9._-]* (lowercase letters, digits, . _ -), found {show(found)}"
    text = msg[0].lower() + msg[1:] if msg else kind
    text = text.removeprefix("input should be ")
    hint = ""
    if kind == "bool_type" and isinstance(found, str) and found in _BOOL_WORDS:
        hint = "; YAML 1.1 words like yes/no/on/off are strings here: write true or false"
    return f"expected {text}, found {show(found)}{hint}"


def _discriminator(err: dict) -> str:
    """The key a union is told apart by: 'kind' for a field discriminator or for the callable `kind()`."""
    return err["ctx"]["discriminator"].strip("'").removesuffix("()")


def _convert(exc: ValidationError, doc: Document, model: Any) -> list[SpecError]:
    """Pydantic errors -> SpecErrors; of a union's members, keep those that got furthest."""
    items = []
    for err in exc.errors(include_url=False):
        parts, tag_at = _data_path(err["loc"], doc.data, err["type"])
        if err["type"] in ("union_tag_invalid",):
            parts, tag_at = parts + (_discriminator(err),), None
        items.append((err, parts, tag_at))
    keep = []
    groups: dict[tuple, list] = {}
    for item in items:
        err, parts, tag_at = item
        if tag_at is None or err["type"] in ("extra_forbidden", "missing", "value_error") and len(parts) > tag_at:
            keep.append(item)
        else:
            groups.setdefault(tuple(err["loc"][:tag_at]), []).append(item)
    for group in groups.values():
        depth = max(len(p) for _, p, _ in group)
        deepest = [g for g in group if len(g[1]) == depth]
        if len({g[0]["loc"][g[2]] for g in deepest}) > 1:  # several members fail at the same place
            err, parts, _ = deepest[0]
            options = dict.fromkeys(_message(e, p, model).split(", found")[0].removeprefix("expected ") for e, p, _ in deepest)
            alternatives = "expected " + " or ".join(options)
            merged = dict(err, type="union", msg="")
            keep.append((merged, parts, None, f"{alternatives}, found {show(err.get('input'))}"))
        else:
            keep.extend(deepest)
    out = []
    for item in keep:
        err, parts = item[0], item[1]
        message = item[3] if len(item) > 3 else _message(err, parts, model)
        out.append(doc.error(parts, message, key=err["type"] == "extra_forbidden"))
    return out


def _validate(model: type[BaseModel], doc: Document, messages: type[BaseModel] | None = None) -> tuple[Any, list[SpecError]]:
    """`model` validated from doc.data, or the errors; `messages`: the model whose keys messages list."""
    if not isinstance(doc.data, dict):
        return None, [doc.error((), f"a spec is a mapping of keys to values, found {show(doc.data)}")]
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        return None, _convert(exc, doc, messages or model)


# --- layer tables --------------------------------------------------------------------


class LayerTables:
    """Where configurations' layer tables come from: gstc's own for built-in architectures, the
    spec's layer file (read once, relative to the spec's folder) for any other."""

    collecting = False

    def __init__(self) -> None:
        self._files: dict[str, dict[str, archs.ModelTable] | archs.LayerFileError] = {}

    def table(self, cfg: BaseConfig, doc: Document) -> tuple[list[archs.Layer] | None, list[SpecError]]:
        model = cfg.model
        if model.arch in archs.ARCHS:
            return archs.layers(model.arch, model.width), []
        entry, errors = self._entry(cfg, doc)
        return (entry.layers if entry else None), errors

    def cost(self, cfg: BaseConfig, spec_file: str) -> Cost | None:
        """The configuration's model cost (gstc.costs): from its layer file, or for a built-in architecture on a
        dataset whose shape is known without loading it; None otherwise."""
        if cfg.model.arch in archs.ARCHS:
            shape = known_shape(cfg.data)
            return None if shape is None else archs.builtin_cost(cfg.model.arch, cfg.model.width, *shape)
        entry, _ = self._entry(cfg, Document(spec_file, {}, {}, {}))
        return entry.cost if entry else None

    def _entry(self, cfg: BaseConfig, doc: Document) -> tuple[archs.ModelTable | None, list[SpecError]]:
        model = cfg.model
        path = layer_file_path(doc.file, model.layers)
        where = ("model", "layers") if isinstance(doc.data.get("model"), dict) else ("model",)
        fix = f"write it with `gstc layers {doc.file} --write`"
        if str(path) not in self._files:
            try:
                self._files[str(path)] = archs.read_layer_file(path)
            except archs.LayerFileError as exc:
                self._files[str(path)] = exc
        tables = self._files[str(path)]
        if isinstance(tables, archs.LayerFileError):
            return None, [doc.error(where, f"{tables}: {fix}")]
        key = archs.model_key(model.arch, model.args)
        if key not in tables:
            return None, [doc.error(where, f"layer file {path} has no table for {model.arch} with args "
                                           f"{json.dumps(model.args, sort_keys=True)}: {fix} (the file is stale)")]
        return tables[key], []


class CollectModels(LayerTables):
    """Records the configurations of non-built-in architectures instead of reading their tables
    (what `gstc layers SPEC --write` builds)."""

    collecting = True

    def __init__(self) -> None:
        super().__init__()
        self.models: list[tuple[BaseConfig, str]] = []  # (configuration, its layer file)

    def table(self, cfg: BaseConfig, doc: Document) -> tuple[list[archs.Layer] | None, list[SpecError]]:
        if cfg.model.arch in archs.ARCHS:
            return super().table(cfg, doc)
        self.models.append((cfg, str(layer_file_path(doc.file, cfg.model.layers))))
        return None, []


def layer_file_path(spec_file: str, layers: str | None) -> "pathlib.Path":
    """A spec's layer file: relative paths are relative to the spec's folder."""
    path = pathlib.Path(layers or "")
    return path if path.is_absolute() else pathlib.Path(spec_file).parent / path


# --- hashing -------------------------------------------------------------------------


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
    return digest(_semantic(cfg, schedules, table, scorings), 16)


# --- the pipeline --------------------------------------------------------------------


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


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


class _Collected:
    """Errors of the whole spec, each once. A configuration's error is kept with the configurations
    that had it, so that one in every configuration of the base is reported once, as the base's."""

    def __init__(self) -> None:
        self.errors: dict[tuple, SpecError] = {}
        self.configs: dict[tuple, dict[str, None]] = {}  # error -> the configurations that had it, in order

    def add(self, errs: list[SpecError], config: str | None = None) -> None:
        for e in errs:
            key = (e.file, e.line, e.col, e.path, e.message)
            self.errors.setdefault(key, e)
            if config is not None:
                self.configs.setdefault(key, {})[config] = None

    def __bool__(self) -> bool:
        return bool(self.errors)

    def result(self, all_configs: dict[str, None], override_marks: set[tuple[int, int]]) -> list[SpecError]:
        out = []
        for key, e in self.errors.items():
            names = self.configs.get(key, {})
            if names and (e.line, e.col) not in override_marks and all_configs.keys() <= names.keys():
                names = {}  # the base's error: every configuration has it
            out.append(dataclasses.replace(e, configs=tuple(names)))
        return sorted(out, key=lambda e: (e.line, e.col))


def _plan_layers(table: list[archs.Layer]) -> list[PlanLayer]:
    return [PlanLayer(name=l.name, filters=l.filters, after=l.after, groups=l.groups, coupled=list(l.coupled),
                      followers=list(l.followers), refused=l.refused) for l in table]


def check(doc: Document, sets: list[tuple[str, Any]] | None = None,
          tables: LayerTables | None = None) -> tuple[Plan | None, list[SpecError]]:
    """Validate and compile a loaded spec; (plan, []) or (None, every error).

    The spec's own keys (gstc, name, seeds, variants, sweep) are validated as they are;
    the base configuration only through its configurations: each variant x sweep point
    is validated and compiled after its overrides, so a base may leave a field to them.
    An error at or under a path that `sets` (--set PATH=VALUE) gives is reported at that option.
    """
    plan, errors = _check(doc, sets, tables)
    return plan, [_blame_set(e, sets) for e in errors] if sets else errors


def _dotted(path: str) -> str:
    """An override path with its list indices in brackets, as errors spell paths: prune.layers[1].amount."""
    return re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", str(path))


def _blame_set(error: SpecError, sets: list[tuple[str, Any]]) -> SpecError:
    for path, value in sets:
        at = _dotted(path)
        if error.path == at or error.path.startswith((at + ".", at + "[")):
            shown = value if isinstance(value, str) else json.dumps(value)
            return dataclasses.replace(error, option=f"--set {path}={shown}",
                                       message=error.message.removeprefix("--set: "))
    return error


def _check(doc: Document, sets: list[tuple[str, Any]] | None,
           tables: LayerTables | None) -> tuple[Plan | None, list[SpecError]]:
    collected = _Collected()
    tables = tables or LayerTables()
    search = [str(pathlib.Path(doc.file).resolve().parent)]  # a module:attribute plugin next to the spec
    base_doc = doc
    if sets:  # --set PATH=VALUE from the command line: applied to the base, validated like overrides
        base_doc = Document(doc.file, copy.deepcopy(doc.data), dict(doc.positions), dict(doc.key_positions))
        for path, value in sets:
            parts, problem = check_override_path(path)
            if parts is None or not isinstance(base_doc.data, dict):
                collected.add([SpecError(doc.file, 1, 1, str(path), f"--set: {problem or 'the spec is not a mapping'}")])
                continue
            try:
                _apply(base_doc.data, parts, copy.deepcopy(value), sweep=False)
            except ValueError as exc:
                collected.add([SpecError(doc.file, 1, 1, str(path), f"--set: {exc}")])
    if collected:
        return None, collected.result({}, set())
    if not isinstance(base_doc.data, dict):
        return None, [doc.error((), f"a spec is a mapping of keys to values, found {show(base_doc.data)}")]
    raw = base_doc.data
    header_doc = Document(doc.file, {k: v for k, v in raw.items() if k not in CONFIG_FIELDS},
                          base_doc.positions, base_doc.key_positions)
    header, errs = _validate(SpecHeader, header_doc, messages=Spec)
    collected.add(errs)

    # Override paths, checked against the spec models (all of them, so that every typo shows at once).
    variants = raw.get("variants") if isinstance(raw.get("variants"), dict) else {}
    sweep = raw.get("sweep") if isinstance(raw.get("sweep"), dict) else {}
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

    variant_items = [(name, {p: v for p, v in (ov or {}).items() if p not in bad}) for name, ov in variants.items()
                     if ov is None or isinstance(ov, dict)] or [(DEFAULT_VARIANT, {})]
    sweep_axes = _usable_sweep(raw.get("sweep"), bad)
    counts = [len(v) for k, v in sweep_axes.items() if k != "zip"]
    counts += [len(next(iter(sweep_axes["zip"].values())))] if sweep_axes.get("zip") else []
    n_points = math.prod(counts)  # counted before the points are built
    if len(variant_items) * n_points > MAX_CONFIGS:
        nv = len(variant_items)
        collected.add([doc.error(("sweep",), f"{nv} variant{'s' * (nv != 1)} x {n_points:,} sweep points is over the "
                                             f"limit of {MAX_CONFIGS:,} configurations")])
        return None, collected.result({}, set())
    points = _points(sweep_axes)

    configs: list[PlanConfig] = []
    attempted: dict[str, None] = {}  # every configuration id, valid or not, in order
    by_hash: dict[str, str] = {}
    chains: dict[str, tuple] = {}  # lottery configurations: (cfg, dense hash, prune forms, levels)
    applies: dict[str, bool] = {}
    config_raw = {k: v for k, v in raw.items() if k in CONFIG_FIELDS}
    for variant, overrides in variant_items:
        vdoc = Document(doc.file, copy.deepcopy(config_raw), dict(base_doc.positions), dict(base_doc.key_positions))
        failed = False
        for path, value in overrides.items():
            parts = parse_path(path)
            try:
                _apply(vdoc.data, parts, copy.deepcopy(value), sweep=False)
                _remap(doc, ("variants", variant, path), parts, vdoc.positions, vdoc.key_positions)
            except ValueError as exc:
                failed = True
                collected.add([doc.error(("variants", variant, path), str(exc), key=True)], config=variant)
        if failed:
            attempted[variant] = None
            continue
        for point in points:
            pdoc = Document(doc.file, copy.deepcopy(vdoc.data), dict(vdoc.positions), dict(vdoc.key_positions))
            applied: dict[str, Any] = {}
            ok = True
            for path, value, where in point:
                parts = parse_path(path)
                try:
                    _apply(pdoc.data, parts, copy.deepcopy(value), sweep=True)
                except _Skip:
                    applies.setdefault(path, False)
                    continue
                except ValueError as exc:
                    ok = False
                    collected.add([doc.error(where[:-1], str(exc), key=True)], config=variant)
                    continue
                applies[path] = True
                applied[dotted(parts)] = value  # ids spell paths one way: prune.layers[1].amount
                _remap(doc, where, parts, pdoc.positions, pdoc.key_positions)
            if not ok:
                continue
            cid = variant + ("[" + ",".join(f"{p}={_fmt(v)}" for p, v in applied.items()) + "]" if applied else "")
            if cid in attempted:
                continue  # the same variant where the sweep did not apply: one configuration
            attempted[cid] = None
            cfg, errs = _validate(BaseConfig, pdoc)
            collected.add(errs, config=cid)
            if cfg is None:
                continue
            table, errs = tables.table(cfg, pdoc)
            collected.add(errs, config=cid)
            if table is None:
                continue
            cost = tables.cost(cfg, doc.file)
            levels: list[stages.Level] = []
            if cfg.lottery is not None:  # a chain of levels: `prune` says what each level ranks, not when
                errs = stages.check(cfg, pdoc)
                if not errs:
                    schedules, scorings, errs = compile_prune(stages.as_schedule(cfg), table, pdoc, cost, search)
                if not errs:
                    schedules, levels, errs = stages.levels(cfg, schedules, pdoc)
            else:
                schedules, scorings, errs = compile_prune(cfg, table, pdoc, cost, search)
            collected.add(errs, config=cid)
            if errs:
                continue
            chash = config_hash(cfg, schedules, table, scorings)
            if chash in by_hash:
                collected.add([doc.error(("variants", variant) if variants else ("sweep",) if applied else (),
                                         f"configuration {cid!r} resolves to the same runs as {by_hash[chash]!r}; "
                                         "remove one")], config=cid)
                continue
            by_hash[chash] = cid
            layers, counts = _plan_layers(table), None
            if cost is not None:
                params, macs = before_after(cost, layers, schedules)
                nonzero = nonzero_after(params, schedules)
                if levels:  # the last level's weights held at zero
                    units = sum(s.units or 0 for s in schedules)
                    nonzero = [params[0], params[1] - units + sum(levels[-1].kept.values())]
                counts = Counts(params=params, macs=macs, nonzero=nonzero)
            if levels:
                plain = cfg.model_copy(update={"prune": None, "lottery": None})
                chains[cid] = (cfg, config_hash(plain, [], table), prune_forms(schedules, scorings), levels)
            configs.append(PlanConfig(id=cid, variant=variant, point=applied, hash=chash, resolved=cfg, layers=layers,
                                      schedules=schedules, counts=counts))
    for path, ok in applies.items():
        if not ok:
            zipped = isinstance(sweep.get("zip"), dict) and path in sweep["zip"]
            collected.add([doc.error(("sweep", "zip", path) if zipped else ("sweep", path),
                                     f"this sweep path applies to no variant: {path.split('.')[0]} is null in every one",
                                     key=True)])
    marks = {mark for table in (doc.positions, doc.key_positions) for p, mark in table.items()
             if p[:1] in (("variants",), ("sweep",))}
    if collected or header is None or tables.collecting:
        return None, collected.result(attempted, marks)

    seeds = header.seed_list()
    if len(configs) * len(seeds) > MAX_RUNS:
        collected.add([doc.error(("seeds",), f"{len(configs)} configurations x {len(seeds)} seeds is over the limit of "
                                             f"{MAX_RUNS:,} runs")])
        return None, collected.result(attempted, marks)
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
    runs = stages.dense_keep(runs)
    try:
        base = BaseConfig.model_validate(config_raw)
    except ValidationError:  # a base that leaves fields to its configurations: hashed as written
        spec_hash = digest({"header": canonical(header), "base": _json_safe(config_raw)}, 16)
        base_layers = configs[0].layers
    else:  # a complete base: the whole validated spec (header and base), as format 1 hashed it
        spec_hash = digest({**canonical(base), **canonical(header)}, 16)
        table, _ = tables.table(base, Document(doc.file, config_raw, {}, {}))
        base_layers = _plan_layers(table) if table is not None else configs[0].layers
    imports = any(":" in c.resolved.model.arch or ":" in c.resolved.data.dataset
                  or any(":" in name for s in c.schedules for name in (s.scoring.name, s.method.name, s.mode.kind))
                  for c in configs)  # module:attribute
    paths = [str(pathlib.Path(doc.file).resolve().parent)] if imports else []
    plan = Plan(gstc=FORMAT, spec=header.name, spec_hash=spec_hash, description=header.description,
                layers=base_layers, configs=configs, runs=runs, paths=paths)
    return plan, []


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
