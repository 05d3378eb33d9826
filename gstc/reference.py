"""The documentation site's reference pages, generated from the code so that they cannot drift from it.

`cli_markdown()` renders every command of the typer app with what its `--help` says (usage,
arguments, options, defaults); `spec_markdown()` renders every model of the spec language from
its Pydantic JSON Schema (each field's type, default, constraints and description), with the
scorings, methods and modes that are installed. The site's build (`mkdocs build`, through
scripts/mkdocs_hooks.py) calls both; nothing here imports torch.
"""

from __future__ import annotations

import json
from typing import Any

CONSTRAINTS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<",
               "minLength": "length >=", "maxLength": "length <=", "minItems": "items >=", "maxItems": "items <="}


def _cell(text: Any) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


# --- commands ------------------------------------------------------------------------------------------------------


def cli_markdown() -> str:
    """Every command of `gstc`, in the order `gstc --help` lists them, as its own `--help` describes it."""
    from typer.main import get_command

    from gstc.cli import app

    group = get_command(app)
    context_class = group.context_class
    root = context_class(group, info_name="gstc")
    lines = ["# Command reference", "",
             "Generated from the command-line interface itself: each section says what `gstc COMMAND --help` says.",
             "", "| command | what it does |", "| --- | --- |"]
    commands = [(name, group.get_command(root, name)) for name in group.list_commands(root)]
    lines += [f"| [`gstc {name}`](#gstc-{name}) | {_cell(command.get_short_help_str(200))} |"
              for name, command in commands]
    for name, command in commands:
        ctx = context_class(command, info_name=f"gstc {name}", parent=root)
        usage = " ".join(["gstc", name, *command.collect_usage_pieces(ctx)])
        lines += ["", f"## gstc {name}", "", (command.help or "").strip(), "", "```", usage, "```"]
        for kind, title in (("argument", "Arguments"), ("option", "Options")):
            rows = [p.get_help_record(ctx) for p in command.get_params(ctx)
                    if p.param_type_name == kind and not getattr(p, "hidden", False)]
            rows = [row for row in rows if row]
            if rows:
                lines += ["", f"**{title}**", "", "| | |", "| --- | --- |"]
                lines += [f"| `{_cell(names)}` | {_cell(text)} |" for names, text in rows]
    return "\n".join(lines) + "\n"


# --- the spec language ---------------------------------------------------------------------------------------------


def _type(node: dict[str, Any]) -> str:
    """A JSON Schema node as a short type: `int >= 1`, `"fp32" | "bf16"`, [ScheduleSpec](#schedulespec), ..."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in node or "oneOf" in node:
        kinds = []
        for option in node.get("anyOf") or node["oneOf"]:
            if option.get("type") == "object" and "const" in option.get("properties", {}).get("name", {}):
                kind = "`{name: ...}`"  # a plugin written with its parameters: the plugin sections list them
            elif option.get("type") == "string" and option.get("pattern", "").count(":"):
                kind = "`module:attribute`"
            else:
                kind = _type(option)
            if kind not in kinds:
                kinds.append(kind)
        return " or ".join(kinds)
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " | ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    kind = node.get("type", "any")
    if kind == "array":
        if "prefixItems" in node:
            text = "[" + ", ".join(_type(item) for item in node["prefixItems"]) + "]"
        else:
            text = f"list of {_type(node.get('items', {}))}"
    elif kind == "object":
        values = node.get("additionalProperties")
        text = f"mapping to {_type(values)}" if isinstance(values, dict) and values else "mapping"
    else:
        text = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "null"}.get(kind, kind)
    limits = [f"{sign} {node[key]}" for key, sign in CONSTRAINTS.items() if key in node]
    if "pattern" in node:
        limits.append(f"matching `{node['pattern']}`")
    return text + (f" ({', '.join(limits)})" if limits else "")


def _fields(schema: dict[str, Any]) -> list[str]:
    """A model's fields as a table: name, type, default (or required), description."""
    required = set(schema.get("required", ()))
    rows = ["| field | type | default | description |", "| --- | --- | --- | --- |"]
    for name, node in schema.get("properties", {}).items():
        if name in required:
            default = "required"
        elif "default" in node:
            default = f"`{json.dumps(node['default'])}`"
        else:  # a default_factory: an empty mapping, or a section with each of its fields' defaults
            default = "its fields' defaults" if "$ref" in node else "`{}`" if node.get("type") == "object" else ""
        rows.append(f"| `{name}` | {_cell(_type(node))} | {_cell(default)} | {_cell(node.get('description', ''))} |")
    return rows


def _section(name: str, schema: dict[str, Any]) -> list[str]:
    text = " ".join((schema.get("description") or "").split())
    return ["", f"## {name}", *(["", text] if text else []), "", *_fields(schema)]


def _plugins(title: str, text: str, each: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    lines = ["", f"## {title}", "", text]
    for name, description, params in each:
        lines += ["", f"### {name}", "", " ".join(description.split()) or "(no description)"]
        if params.get("properties"):
            lines += ["", *_fields(params)]
    return lines


def spec_markdown() -> str:
    """The spec's own keys, then every model of the spec language, then the installed scorings, methods and modes."""
    from gstc.methods import METHODS
    from gstc.modes import PARAMS
    from gstc.scorings import SCORINGS
    from gstc.spec import Spec

    schema = Spec.model_json_schema(mode="validation")
    lines = ["# Spec reference", "",
             "Generated from the spec language's Pydantic models: every field with its type, default, constraints "
             "and description. A field without a default is required; `null` in a type means the field may be "
             "left out or set to null. Rules across fields (amount or rate, one schedule form, events within the "
             "training) are in [the spec language](../spec.md).",
             *_section("Spec", {**schema, "description": schema.get("description", "")})]
    for name, definition in schema.get("$defs", {}).items():
        lines += _section(name, definition)
    lines += _plugins("Scorings", "What `prune.scoring` (or an entry's `scoring`) may name: `NAME` or "
                      "`{name: NAME, PARAM: VALUE}`.",
                      [(n, getattr(p, "description", ""), p.Params.model_json_schema()) for n, p in SCORINGS.each()])
    lines += _plugins("Methods", "What `prune.method` may name: `NAME` or `{name: NAME, PARAM: VALUE}`.",
                      [(n, getattr(p, "description", ""), p.Params.model_json_schema()) for n, p in METHODS.each()])
    lines += _plugins("Modes", "What `prune.mode` (or an entry's `mode`) may be, by its `kind`; the fields are in "
                      "the model's section above.",
                      [(kind, f"[{params.__name__}](#{params.__name__.lower()})", {}) for kind, params in PARAMS])
    return "\n".join(lines) + "\n"


__all__ = ["cli_markdown", "spec_markdown"]
