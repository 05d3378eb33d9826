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


def json_schema() -> dict[str, Any]:
    schema = _draft07(Spec.model_json_schema(mode="validation", ref_template="#/definitions/{model}"))
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
