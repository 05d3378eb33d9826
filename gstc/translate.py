"""Pydantic's validation errors as SpecErrors: each at the YAML node it is about (file, line, column),
in gstc's words: the keys a section takes, the choices a tag has, a close match for a typo, and of a
union's members only those that got furthest.
"""

from __future__ import annotations

import re
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from gstc.errors import SpecError, did_you_mean, show
from gstc.load import Document
from gstc.overrides import Path, is_model, types_at, unknown_key
from gstc.spec import NAME_RULE, VARIANT_PATTERN, VARIANT_RULE

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
        ts, _ = types_at(tuple(parts[:-1]), model)
        models = [t for t in ts if is_model(t)]
        # Of a tagged union (prune.mode), only the member that the data's tag chose
        tags, rest = set(), list(parts)
        for el in err["loc"]:
            if rest and el == rest[0]:
                rest.pop(0)
            elif isinstance(el, str):
                tags.add(el)
        chosen = [m for m in models if any(get_origin(f.annotation) is typing.Literal and tags & set(get_args(f.annotation))
                                           for f in m.model_fields.values())]
        return unknown_key(key, [n for t in (chosen or models) for n in t.model_fields])
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
        return f"expected {VARIANT_RULE if pattern == VARIANT_PATTERN else NAME_RULE}, found {show(found)}"
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


def validate(model: type[BaseModel], doc: Document, messages: type[BaseModel] | None = None) -> tuple[Any, list[SpecError]]:
    """`model` validated from doc.data, or the errors; `messages`: the model whose keys messages list."""
    if not isinstance(doc.data, dict):
        return None, [not_a_mapping(doc)]
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        return None, _convert(exc, doc, messages or model)



def not_a_mapping(doc: Document) -> SpecError:
    return doc.error((), f"a spec is a mapping of keys to values, found {show(doc.data)}")
