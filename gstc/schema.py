"""The spec's JSON Schema, kept to draft-07 keywords for yaml-language-server.

Pydantic emits draft 2020-12 (`$defs`, `prefixItems`) plus OpenAPI's `discriminator`;
VS Code's YAML extension understands draft-07, so we rewrite those few constructs, then
add what the models check in code: one `Mode` object dispatched on `kind`, the rules
across fields that JSON Schema can state, and typed override paths for variants, sweep
axes and `zip` (the compiler's own list of paths, gstc.overrides). The committed copy lives at
schema/gstc.schema.json (a test keeps it current; tests/gstc/test_editor.py checks what
the real server makes of it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from gstc.load import PLAIN_KEYS
from gstc.modes import ONE_DURATION, PARAMS
from gstc.overrides import ANY_INDEX, override_paths
from gstc.plugins import IMPORT_PATTERN
from gstc.prune_spec import DEFAULT_NOT_BOTH, NEITHER, NM_PATTERN, ONE_FORM
from gstc.sections import NESTEROV
from gstc.spec import VARIANT_PATTERN, Spec

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
    - no `default: null`, which completion inserted as `amount: ${1:null}`;
    - a property whose value is one model (`schedule: ScheduleSpec or null`) titled by that model, as its fields
      are, its two forms as `oneOf` (hover showed every form of an `anyOf`: `ScheduleSpec || LayerEntry`).
    """
    for name, body in properties.items():
        options = body.get("anyOf", [body])
        refs = [o["$ref"] for o in options if "$ref" in o]
        if len(refs) == 1 and all("$ref" in o or o == {"type": "null"} for o in options):
            body.setdefault("title", refs[0].rsplit("/", 1)[-1])
            if "anyOf" in body:  # a model or null exclude each other: oneOf, whose hover shows the one title
                body["oneOf"] = body.pop("anyOf")
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


MODES = {kind: params.__name__ for kind, params in PARAMS}  # built-in and installed modes
FOREIGN = "ForeignMode"  # a mode of the spec's own: kind is module:attribute


def _mode_definition(definitions: dict[str, Any]) -> dict[str, Any]:
    """One `Mode` object: `kind` first (all three kinds, described), then the kind's own keys through
    draft-07 `if`/`then`. An `anyOf` of the three made the server pick the closest branch and ask for
    another kind (`mode: {kind: zero, std: matched}` read as "Value must be gaussian"); now `std` itself is
    the key that is not allowed, and `kind: zeroo` lists every kind."""
    kinds = {kind: definitions[name]["properties"]["kind"].get("description", "") for kind, name in MODES.items()}
    own = {"type": "string", "pattern": IMPORT_PATTERN.pattern}
    return {
        "type": "object",
        "description": "How targeted filters are handled: " + "; ".join(f"{k}: {d}" for k, d in kinds.items())
                       + "; or module:attribute of a mode of your own.",
        "properties": {"kind": {"anyOf": [{"enum": list(MODES)}, own],
                                "description": f"{', '.join(MODES)}, or module:attribute."}},
        "required": ["kind"],
        "allOf": [{"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                   "then": {"$ref": f"#/definitions/{name}"}} for kind, name in MODES.items()]
                 + [{"if": {"properties": {"kind": own}, "required": ["kind"]},
                     "then": {"$ref": f"#/definitions/{FOREIGN}"}}],
    }


def _one_mode(node: Any) -> Any:
    """Replace every anyOf listing the three mode objects with a reference to the one `Mode`."""
    if isinstance(node, list):
        return [_one_mode(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _one_mode(v) for k, v in node.items()}
    options = out.get("anyOf")
    refs = {f"#/definitions/{name}" for name in [*MODES.values(), FOREIGN]}
    if isinstance(options, list) and refs <= {o.get("$ref") for o in options if isinstance(o, dict)}:
        rest = [o for o in options if o.get("$ref") not in refs]
        out["anyOf"] = rest[:1] + [{"$ref": "#/definitions/Mode"}] + rest[1:]
    return out


# --- rules across fields ----------------------------------------------------------------
# What the models' validators check across fields and JSON Schema can state, as draft-07 if/then, each
# with gstc's own wording in `errorMessage` (yaml-language-server shows it in place of its generic message;
# other validators ignore the keyword). Orderings (start <= end) and anything that needs the architecture
# stay with `gstc validate`.

def _given(kind: str, *names: str) -> dict[str, Any]:
    """The condition: every one of `names` is present with a value of `kind` (not null)."""
    return {"properties": {n: {"type": kind} for n in names}, "required": list(names)}


NEITHER_GIVEN = {"not": {"anyOf": [_given("number", "amount"), _given("number", "rate")]}}  # no amount, no rate


# The schema's own words (the other messages are the models' own, imported): gstc.schedules says the same rule
# naming where each of the two values is, which a schema cannot.
NOT_BOTH = "both amount and rate apply to this entry; give one"
WITH_DEFAULT_RATE = "both this amount and the default prune.rate apply to this entry; give one"
WITH_DEFAULT_AMOUNT = "both this rate and the default prune.amount apply to this entry; give one"


def _entries(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule for every layer entry of prune.layers."""
    return {"properties": {"layers": {"items": rule}}}


RULES: dict[str, list[dict[str, Any]]] = {
    "LayerEntry": [{"if": _given("number", "amount", "rate"), "then": {"properties": {"rate": False}, "errorMessage": NOT_BOTH}}],
    "PruneSpec": [
        {"if": _given("number", "amount", "rate"), "then": {"properties": {"rate": False}, "errorMessage": DEFAULT_NOT_BOTH}},
        # A default fills in only an entry that gives neither; an entry's own amount or rate beside the other default is an error.
        {"if": _given("number", "rate"),
         "then": _entries({"properties": {"amount": {"type": "null", "errorMessage": WITH_DEFAULT_RATE}}})},
        {"if": _given("number", "amount"),
         "then": _entries({"properties": {"rate": {"type": "null", "errorMessage": WITH_DEFAULT_AMOUNT}}})},
    ],
    "SGDSpec": [{"if": {"properties": {"nesterov": {"const": True}}, "required": ["nesterov"]},
                 "then": {"required": ["momentum"], "properties": {"momentum": {"exclusiveMinimum": 0, "errorMessage": NESTEROV}},
                          "errorMessage": NESTEROV}}],
    "ScheduleSpec": [{"if": _given("array", "epochs"),
                      "then": {"properties": {k: {"type": "null", "errorMessage": ONE_FORM} for k in ("start", "end", "every")}}}],
    "Duration": [
        {"if": _given("integer", "batches", "epochs"), "then": {"properties": {"epochs": False}, "errorMessage": ONE_DURATION}},
        {"if": {"not": {"anyOf": [_given("integer", "batches"), _given("integer", "epochs")]}},
         "then": {"required": ["batches"], "properties": {"batches": {"type": "integer", "errorMessage": ONE_DURATION}},
                  "errorMessage": ONE_DURATION}},
    ],
}


# --- override paths ------------------------------------------------------------------
# Variants and sweep axes are keyed by dotted paths (`prune.target`, `prune.layers.1.amount`). The paths
# come from the compiler's own walk over the spec models (`override_paths`); each path's value schema is
# found in the generated schema by following that path through properties, $ref, anyOf/oneOf, the mode's
# if/then dispatch and items, and is referenced by JSON pointer, so hover shows the field's description.


def _node(schema: dict[str, Any], pointer: str) -> Any:
    node: Any = schema
    for part in pointer.removeprefix("#").split("/")[1:]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _alternatives(schema: dict[str, Any], pointer: str, depth: int = 0) -> list[tuple[int, str]]:
    """A node and what it may stand for, with how many steps away: its $ref target, the members of its
    anyOf/oneOf, and the mode's `then: {$ref}` branches (not the cross-field rules' branches)."""
    node = _node(schema, pointer)
    out = [(depth, pointer)]
    if not isinstance(node, dict):
        return out
    if "$ref" in node:
        out += _alternatives(schema, node["$ref"], depth + 1)
    for key in ("anyOf", "oneOf"):
        for i in range(len(node.get(key, []))):
            out += _alternatives(schema, f"{pointer}/{key}/{i}", depth + 1)
    for i, member in enumerate(node.get("allOf", [])):
        if set(member.get("then", {})) == {"$ref"}:
            out += _alternatives(schema, f"{pointer}/allOf/{i}/then", depth + 1)
    return out


def _children(schema: dict[str, Any], pointers: list[str], part: Any) -> list[str]:
    """The value schemas one path part leads to (for a key, those nearest the field: the Mode's own `kind`,
    not its branches')."""
    found: list[tuple[int, str]] = []
    for pointer in pointers:
        for depth, alt in _alternatives(schema, pointer):
            node = _node(schema, alt)
            if not _is_index(part):
                if part in node.get("properties", {}):
                    found.append((depth, f"{alt}/properties/{part}"))
            elif isinstance(node.get("items"), dict):
                found.append((depth, f"{alt}/items"))
            elif isinstance(node.get("items"), list) and isinstance(part, int) and part < len(node["items"]):
                found.append((depth, f"{alt}/items/{part}"))
    nearest = min((d for d, _ in found), default=0)
    return list(dict.fromkeys(p for d, p in found if d == nearest))


ANNOTATIONS = ("title", "description", "default")


def _owner(schema: dict[str, Any], pointer: str) -> str:
    """Whose field a pointer names: the model's tag (`adam`, `zero`) where it has one, else its name."""
    owner = pointer.rsplit("/properties/", 1)[0]
    name = owner.rsplit("/", 1)[-1]
    return next((p["const"] for p in _node(schema, owner).get("properties", {}).values() if "const" in p), name)


def _value_schema(schema: dict[str, Any], template: tuple) -> dict[str, Any]:
    """The schema of an override's value: titled with its path (hover shows that one title), described by
    the field (or, where the path reaches the same field of several models, by each: `adam: ... sgd: ...`)."""
    pointers = ["#"]
    for part in template:
        pointers = _children(schema, pointers, part)
        if not pointers:
            raise LookupError(f"the schema has no node for the override path {_shown(template)}")
    distinct: dict[str, str] = {}
    for pointer in pointers:
        distinct.setdefault(json.dumps(_node(schema, pointer), sort_keys=True), pointer)
    nodes = [_node(schema, p) for p in distinct.values()]
    title = {"title": _shown(template)}
    if len(nodes) > 1 and all("const" in n for n in nodes):  # a tag (optimizer name, mode kind): one enum
        return {**title, "enum": [n["const"] for n in nodes],
                "description": " ".join(f"{n['const']}: {n.get('description', '')}" for n in nodes)}
    constraints = {json.dumps({k: v for k, v in n.items() if k not in ANNOTATIONS}, sort_keys=True) for n in nodes}
    if len(constraints) > 1:
        return {**title, "anyOf": [{"$ref": p} for p in distinct.values()]}
    first = next(iter(distinct.values()))
    if len(nodes) > 1:  # one type, described differently by each model
        described = " ".join(f"{_owner(schema, p)}: {_node(schema, p).get('description', '')}" for p in distinct.values())
    elif "description" in nodes[0] or not _is_index(template[-1]):
        described = nodes[0].get("description", "")
    else:  # a list's entry: described by its list
        described = f"An entry of {_shown(template[:-1])}: {_value_schema(schema, template[:-1]).get('description', '')}"
    # Beside a $ref, draft-07 validators ignore title and description; yaml-language-server keeps them (they
    # are annotations) and merges in the target, so completion still knows the type and hover shows the path.
    return {**title, "description": described, "$ref": first}


def _is_index(part: Any) -> bool:
    return part == ANY_INDEX or isinstance(part, int)


def _shown(template: tuple) -> str:
    text = ""
    for part in template:
        text += f"[{part}]" if isinstance(part, int) else part if part == ANY_INDEX else f".{part}"
    return text.lstrip(".")


def _key_pattern(template: tuple) -> str:
    """The keys a template stands for: `prune.layers[0].amount` and `prune.layers.0.amount` alike."""
    out = []
    for i, part in enumerate(template):
        if part == ANY_INDEX:
            out.append(r"(?:\[\d+\]|\.\d+)")
        elif isinstance(part, int):
            out.append(rf"(?:\[{part}\]|\.{part})")
        else:
            out.append(("" if i == 0 else r"\.") + re.escape(part))
    return "^" + "".join(out) + "$"


def _keyed(values: dict[tuple, dict[str, Any]], body) -> dict[str, Any]:
    """`properties` (plain paths, which the editor completes) and `patternProperties` (paths with an index)
    mapping each override path to `body(path, value schema)`, unknown paths not allowed."""
    properties, patterns = {}, {}
    for template, value in values.items():
        entry = body(_shown(template), value)
        if any(_is_index(p) for p in template):
            patterns[_key_pattern(template)] = entry
        else:
            properties[".".join(template)] = entry
    return {"properties": properties, "patternProperties": patterns, "additionalProperties": False}


def _overrides(schema: dict[str, Any]) -> None:
    definitions = schema["definitions"]
    values = {template: _value_schema(schema, template) for template in override_paths()}
    definitions["Overrides"] = {
        "type": ["object", "null"],
        "description": "This variant's overrides of the base: dotted paths (`prune.target: largest`, "
        "`prune.layers.1.amount: 0.8`, `prune: null` for no pruning); null or {} for the base as it is.",
        **_keyed(values, lambda path, value: value),
    }
    variants = schema["properties"]["variants"]
    variants.pop("patternProperties", None)
    variants["propertyNames"] = {"pattern": VARIANT_PATTERN, "maxLength": 100, "patternErrorMessage":
                                 "a variant's name is letters, digits, '.', '_' or '-', starting with a letter or digit"}
    variants["additionalProperties"] = {"$ref": "#/definitions/Overrides"}

    def axis(path: str, value: dict[str, Any]) -> dict[str, Any]:
        return {"title": path, "type": "array", "minItems": 1, "items": value,
                "description": f"The values of {path}, one per sweep point: {value.get('description', '')}"}

    sweep = definitions["SweepSpec"]
    axes = _keyed(values, axis)  # grid axes, and the same paths under zip
    zip_axis = {"type": ["object", "null"], "description": sweep["properties"]["zip"]["description"], **axes}
    sweep.update(axes, properties={**axes["properties"], "zip": zip_axis})


def json_schema() -> dict[str, Any]:
    schema = _draft07(Spec.model_json_schema(mode="validation", ref_template="#/definitions/{model}"))
    schema = _one_mode(schema)
    schema["definitions"]["Mode"] = _mode_definition(schema["definitions"])
    for definition in [schema, *schema.get("definitions", {}).values()]:
        _for_editors(definition.get("properties", {}))
    for model, field in UNIQUE_ITEMS:
        target = schema if model == "Spec" else schema["definitions"][model]
        target["properties"][field]["uniqueItems"] = True
    for name, rules in RULES.items():
        schema["definitions"][name].setdefault("allOf", []).extend(rules)
    # Every entry needs an amount or a rate, here or in prune, unless the granularity is an N:M pattern (where none
    # means every group) or a lottery decides each level's amount: a rule of the spec, which sees both sections.
    schema.setdefault("allOf", []).append(
        {"if": {"not": _given("object", "lottery")},
         "then": {"properties": {"prune": {
             "if": {"allOf": [NEITHER_GIVEN, {"not": {"properties": {"granularity": {"type": "string",
                                                                                     "pattern": NM_PATTERN}},
                                                      "required": ["granularity"]}}]},
             "then": _entries({"if": NEITHER_GIVEN, "then": {"required": ["amount"], "errorMessage": NEITHER}})}}}})
    _overrides(schema)
    # A complex key (`? [a, b]`) gets the server's own "Property {0} is not allowed." (it formats only string
    # names); this puts gstc's message beside it.
    schema["propertyNames"] = {"type": ["string", "number", "boolean", "null"], "errorMessage": PLAIN_KEYS}
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "$id": SCHEMA_ID,
              "title": "gstc experiment spec (format 1)", **{k: v for k, v in schema.items() if k != "title"}}
    return schema


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
