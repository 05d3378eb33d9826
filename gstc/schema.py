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


def json_schema() -> dict[str, Any]:
    schema = _draft07(Spec.model_json_schema(mode="validation", ref_template="#/definitions/{model}"))
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "$id": SCHEMA_ID,
              "title": "gstc experiment spec (format 1)", **{k: v for k, v in schema.items() if k != "title"}}
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
