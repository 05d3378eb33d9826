"""The spec's JSON Schema, kept to draft-07 keywords for yaml-language-server.

Pydantic emits draft 2020-12 (`$defs`, `prefixItems`) plus OpenAPI's `discriminator`;
VS Code's YAML extension understands draft-07, so we rewrite those few constructs.
The committed copy lives at schema/gstc.schema.json (a test keeps it current).
"""

from __future__ import annotations

import json
from typing import Any

from gstc.spec import Spec

SCHEMA_ID = "https://gstc.dev/schema/gstc.schema.json"


def _draft07(node: Any) -> Any:
    if isinstance(node, list):
        return [_draft07(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "discriminator":
            continue  # OpenAPI keyword; oneOf/anyOf with const tags carries the same meaning
        if key == "$defs":
            key = "definitions"
        if key == "prefixItems":  # draft-07 spells a tuple as an `items` array
            out["items"] = _draft07(value)
            out["additionalItems"] = False
            continue
        if key == "$ref" and isinstance(value, str):
            value = value.replace("#/$defs/", "#/definitions/")
        out[key] = _draft07(value)
    return out


# Lists whose duplicates the models' validators reject (seeds, a schedule's epochs, strictly increasing
# milestones): `uniqueItems` lets the editor say so as you type. tests/gstc/test_schema.py checks each.
UNIQUE_ITEMS = (("Spec", "seeds"), ("ScheduleSpec", "epochs"), ("LRScheduleSpec", "milestones"))


def _auto_title(name: str) -> str:
    """The title pydantic derives from a field name: `image_size` -> `Image Size`."""
    return name.replace("_", " ").title()


def _for_editors(properties: dict[str, Any]) -> None:
    """Property bodies as yaml-language-server shows them best, meaning unchanged.

    - no title that only repeats the key (hover showed `Amount || Amount`);
    - an optional scalar `anyOf: [T, null]` as one `type: [T, "null"]` (its constraints apply to T only);
    - no `default: null`, which completion inserted as `amount: ${1:null}`.
    """
    for name, body in properties.items():
        if body.get("title") == _auto_title(name):
            del body["title"]
        if "default" in body and body["default"] is None:
            del body["default"]
        options = body.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            (other,) = [o for o in options if o != {"type": "null"}]
            if isinstance(other.get("type"), str) and "$ref" not in other and "anyOf" not in other:
                del body["anyOf"]
                merged = {k: v for k, v in other.items() if k != "title"}
                body.update({**merged, "type": [other["type"], "null"]})


MODES = {"prune": "PruneMode", "zero": "ZeroMode", "gaussian": "GaussianMode"}


def _mode_definition(definitions: dict[str, Any]) -> dict[str, Any]:
    """One `Mode` object: `kind` first (all three kinds, described), then the kind's own keys through
    draft-07 `if`/`then`. An `anyOf` of the three made the server pick the closest branch and ask for
    another kind (`mode: {kind: zero, std: matched}` read as "Value must be gaussian"); now `std` itself is
    the key that is not allowed, and `kind: zeroo` lists every kind."""
    kinds = {kind: definitions[name]["properties"]["kind"].get("description", "") for kind, name in MODES.items()}
    return {
        "type": "object",
        "description": "How targeted filters are handled: " + "; ".join(f"{k}: {d}" for k, d in kinds.items()),
        "properties": {"kind": {"enum": list(MODES), "description": "prune, zero or gaussian."}},
        "required": ["kind"],
        "allOf": [{"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                   "then": {"$ref": f"#/definitions/{name}"}} for kind, name in MODES.items()],
    }


def _one_mode(node: Any) -> Any:
    """Replace every anyOf listing the three mode objects with a reference to the one `Mode`."""
    if isinstance(node, list):
        return [_one_mode(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _one_mode(v) for k, v in node.items()}
    options = out.get("anyOf")
    refs = {f"#/definitions/{name}" for name in MODES.values()}
    if isinstance(options, list) and refs <= {o.get("$ref") for o in options if isinstance(o, dict)}:
        rest = [o for o in options if o.get("$ref") not in refs]
        out["anyOf"] = rest[:1] + [{"$ref": "#/definitions/Mode"}] + rest[1:]
    return out


def json_schema() -> dict[str, Any]:
    schema = _draft07(Spec.model_json_schema(mode="validation", ref_template="#/definitions/{model}"))
    schema = _one_mode(schema)
    schema["definitions"]["Mode"] = _mode_definition(schema["definitions"])
    for definition in [schema, *schema.get("definitions", {}).values()]:
        _for_editors(definition.get("properties", {}))
    for model, field in UNIQUE_ITEMS:
        target = schema if model == "Spec" else schema["definitions"][model]
        target["properties"][field]["uniqueItems"] = True
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "$id": SCHEMA_ID,
              "title": "gstc experiment spec (format 1)", **{k: v for k, v in schema.items() if k != "title"}}
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
