"""The site's generated references cover the code: every command and option of the typer app, every model and
field of the spec's JSON Schema, each with what the code says of it."""

from __future__ import annotations

import re

import pytest

from gstc.reference import cli_markdown, spec_markdown
from gstc.schema import json_schema

# Definitions the JSON Schema adds for editors, not models of the spec language: a mode written either way (its
# kinds are PruneMode, ZeroMode, GaussianMode and ForeignMode) and the override paths of variants and sweeps.
EDITOR_ONLY = {"Mode", "Overrides"}


def sections(text: str, level: str = "## ") -> dict[str, str]:
    """Markdown text cut at its headings of one level: heading -> body."""
    parts = re.split(rf"^{level}(.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def test_the_command_reference_has_every_command_and_option_with_its_help():
    from typer.main import get_command

    from gstc.cli import app

    text = cli_markdown()
    found = sections(text)
    group = get_command(app)
    root = group.context_class(group, info_name="gstc")
    names = group.list_commands(root)
    assert len(names) >= 10 and [f"gstc {n}" for n in names] == list(found)  # every command, in --help's order
    for name in names:
        command = group.get_command(root, name)
        body = found[f"gstc {name}"]
        assert cell(command.get_short_help_str(200)) in text and " ".join(command.help.split()) in " ".join(body.split())
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            for opt in param.opts + param.secondary_opts:
                assert re.search(rf"`{re.escape(opt)}\b", body), f"gstc {name}: {opt} is missing"
            if param.help:  # the option's own words, as --help prints them
                assert cell(param.help) in body, f"gstc {name} {param.name}: its help is missing"


def test_the_spec_reference_has_every_model_and_field_of_the_json_schema():
    schema = json_schema()
    found = sections(spec_markdown())
    models = {"Spec": schema, **{k: v for k, v in schema["definitions"].items() if k not in EDITOR_ONLY}}
    assert len(models) > 15
    for model, definition in models.items():
        assert model in found, f"{model} has no section"
        rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", found[model], flags=re.M)}
        fields = {k: v for k, v in definition.get("properties", {}).items()
                  if not (model == "SweepSpec" and k != "zip")}  # a sweep's other keys are override paths
        assert set(fields) == set(rows), (model, set(fields) ^ set(rows))
        required = set(definition.get("required", ()))
        for field, node in fields.items():
            row = rows[field]
            if node.get("description"):
                assert cell(node["description"]) in row, (model, field)
            if field in required:
                assert "| required |" in row, (model, field)
            elif "default" in node:
                assert re.search(r"`[^`]*`", row.split("|")[3]), (model, field)


@pytest.mark.parametrize("field, shown", [
    ("TrainSpec.precision", '`"fp32"` \\| `"bf16"`'),  # an enum, its values in order
    ("TrainSpec.optimizer", "[AdamSpec](#adamspec) or [SGDSpec](#sgdspec)"),  # a union of models, linked
    ("TrainSpec.epochs", "int (>= 1, <= 100000)"),  # the constraints
    ("ScheduleSpec.epochs", "list of int (>= 0) (items >= 1) or null"),  # an item's and the list's
])
def test_types_are_shown_as_the_models_declare_them(field, shown):
    model, name = field.split(".")
    row = next(line for line in sections(spec_markdown())[model].splitlines() if line.startswith(f"| `{name}` |"))
    assert row.split(" | ")[1] == shown


def test_installed_scorings_and_their_parameters_are_listed():
    plugins = sections(sections(spec_markdown())["Scorings"], "### ")
    assert {"l1", "snip", "synflow", "fpgm"} <= set(plugins)
    assert "| `iterations` | int (>= 1, <= 10000) | `100` |" in plugins["synflow"]
