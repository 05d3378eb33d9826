"""Override paths: what a variant, a sweep axis or `--set PATH=VALUE` may set, checked against the spec
models, and set in a configuration's raw data.

A path is a key, then keys and list indices (`prune.layers[3].amount` or `prune.layers.3.amount`). It is
checked by walking the spec models' types along it, so that every misspelt path of a spec is reported at
once, before any configuration is built; setting it in raw data can then fail only where that
configuration's data lacks what the path passes through.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from gstc.errors import SpecError, did_you_mean, dotted, show
from gstc.load import Document
from gstc.plugins import Choice
from gstc.spec import CONFIG_FIELDS, BaseConfig

# Fields whose short form is a string: `model: vgg11_bn` means `model: {arch: vgg11_bn}`.
SHORT_FORMS = {"model": "arch", "mode": "kind"}

Path = tuple[Any, ...]
# A key, then keys and list indices: `.key`, `[3]` or `.3` (so flow-style YAML needs no quotes).
_PATH_RE = re.compile(r"^[A-Za-z_]\w*(?:\[\d+\]|\.\d+|\.[A-Za-z_]\w*)*$")
_PART_RE = re.compile(r"\[(\d+)\]|\.(\d+)|\.?([A-Za-z_]\w*)")


class NotApplicable(Exception):
    """A sweep override that passes through a section this variant removed."""


def parse_path(text: str) -> Path | None:
    """'prune.layers[3].amount' or 'prune.layers.3.amount' -> ('prune', 'layers', 3, 'amount'); None if malformed."""
    if not isinstance(text, str) or not _PATH_RE.match(text):
        return None
    return tuple(int(a) if a else int(b) if b else key for a, b, key in _PART_RE.findall(text))


def unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated/Optional/Union annotations."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return unwrap(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [t for arg in get_args(tp) for t in unwrap(arg)]
    if tp is type(None):
        return []
    return [tp]


def is_model(tp: Any) -> bool:
    """A section with keys of its own; a plugin's choice (gstc.plugins.Choice) is one value, overridden whole."""
    return isinstance(tp, type) and issubclass(tp, BaseModel) and not issubclass(tp, Choice)


def _step(current: list[Any], part: str | int) -> list[Any]:
    """The types that one path part (a key or a list index) leads to from `current`; empty if it does not apply."""
    if isinstance(part, int):
        found = [get_args(t)[0] for t in current if get_origin(t) is list]
        found += [get_args(t)[part] for t in current if get_origin(t) is tuple and part < len(get_args(t))]
    else:
        found = [m.model_fields[part].annotation for m in current if is_model(m) and part in m.model_fields]
    return [t for f in found for t in unwrap(f)]


def unknown_key(key: Any, names: list[str], where: str = "") -> str:
    """What a key that a section does not take is told (`where`: ' in prune', or '' where the error's path says it)."""
    names = list(dict.fromkeys(names))
    return f"unknown key {key!r}{where}{did_you_mean(str(key), names)}; expected one of: {', '.join(names)}"


def types_at(parts: Path, root: Any = BaseConfig) -> tuple[list[Any], str | None]:
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
            models = [t for t in current if is_model(t)]
            names = [n for m in models for n in m.model_fields]
            if not models:
                if any(get_origin(t) is list for t in current):
                    return [], f"{here} is a list: index it, as in {here}[0].{part}"
                return [], f"{here} is a single value with no key {part!r}"
            return [], unknown_key(part, names, f" in {here}")
        current = found
    return current, None


ANY_INDEX = "[N]"  # in an override path template: any index of a list


def override_paths() -> list[Path]:
    """Every path an override may set, as templates (ANY_INDEX for a list's index, a tuple's indices
    spelled out), in the models' field order: the walk `check_override_path` checks a path along, run
    over every step. The JSON Schema types variants and sweep axes from this list."""
    out: list[Path] = []

    def walk(prefix: Path, current: list[Any]) -> None:
        steps: list[Any] = list(dict.fromkeys(n for m in current if is_model(m) for n in m.model_fields))
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
    _, problem = types_at(parts)
    return (None, problem) if problem else (parts, None)


def apply_override(data: dict, parts: Path, value: Any, sweep: bool) -> None:
    """Set `value` at `parts` in raw spec data (ValueError: why not; NotApplicable: not applicable)."""
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
                raise NotApplicable()
            raise ValueError(f"{dotted(parts[: i + 1])} is null in this configuration: set the whole section instead")
        if isinstance(child, str) and part in SHORT_FORMS and not isinstance(parts[i + 1], int):
            child = cur[part] = {SHORT_FORMS[part]: child}
        cur = child


def remap_positions(doc: Document, src: Path, dst: Path, positions: dict, key_positions: dict) -> None:
    """Point positions under `dst` at the override value's nodes under `src`."""
    for table, source in ((positions, doc.positions), (key_positions, doc.key_positions)):
        for p in [p for p in table if p[: len(dst)] == dst]:
            del table[p]
        for p, mark in source.items():
            if p[: len(src)] == src:
                table[dst + p[len(src):]] = mark
    positions.setdefault(dst, doc.where(src))


def _dotted(path: str) -> str:
    """An override path with its list indices in brackets, as errors spell paths: prune.layers[1].amount."""
    return re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", str(path))


def blame_set(error: SpecError, sets: list[tuple[str, Any]]) -> SpecError:
    """`error` told as the `--set PATH=VALUE` option's where it is at or under that PATH."""
    for path, value in sets:
        at = _dotted(path)
        if error.path == at or error.path.startswith((at + ".", at + "[")):
            shown = value if isinstance(value, str) else json.dumps(value)
            return dataclasses.replace(error, option=f"--set {path}={shown}",
                                       message=error.message.removeprefix("--set: "))
    return error
