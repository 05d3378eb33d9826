"""Every spec the project ships (specs/**, examples/) is valid, plans, and is documented.

A shipped spec starts with the yaml-language-server modeline pointing at the committed
JSON Schema (so editors complete and check it), then a comment header that says what
it answers and the exact command that runs it, and it carries a `description`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gstc.compile import compile_file
from gstc.load import load_file
from tests.conftest import REPO, SHIPPED

SCHEMA = REPO / "schema" / "gstc.schema.json"
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)\s*$")


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def header(path: Path) -> list[str]:
    """The comment lines at the top of the file."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def test_specs_are_shipped():
    names = {rel(p) for p in SHIPPED}
    assert "examples/tutorial.yaml" in names and "examples/quickstart.yaml" in names
    assert len([n for n in names if n.startswith("specs/paper/")]) >= 14


@pytest.mark.parametrize("path", SHIPPED, ids=rel)
def test_shipped_spec_validates_and_plans(path: Path):
    plan = compile_file(str(path))
    assert plan.configs and plan.runs
    assert plan.description.strip(), f"{rel(path)} has no description"


@pytest.mark.parametrize("path", SHIPPED, ids=rel)
def test_shipped_spec_starts_with_the_schema_modeline(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first)
    assert match, f"{rel(path)}: line 1 is {first!r}"
    target = (path.parent / match.group(1)).resolve()
    assert target.exists(), f"{rel(path)}: the modeline's schema {match.group(1)} does not exist"
    assert target == SCHEMA.resolve()


@pytest.mark.parametrize("path", SHIPPED, ids=rel)
def test_shipped_spec_passes_the_committed_json_schema(path: Path):
    """What an editor with the modeline checks: no squiggles in a shipped spec."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(load_file(str(path)).data)]
    assert errors == [], rel(path)


@pytest.mark.parametrize("path", SHIPPED, ids=rel)
def test_shipped_spec_header_names_its_run_command(path: Path):
    lines = header(path)
    assert len(lines) >= 3, f"{rel(path)}: the header should say what the spec answers and how to run it"
    text = "\n".join(lines)
    assert f"gstc run {rel(path)}" in text
    assert "Question" in text or "question" in text, f"{rel(path)}: the header should state its question"


def test_shipped_spec_names_are_unique_and_follow_the_file_names():
    """`name` names the results folder: one per file, findable from the file name."""
    names = {}
    for path in SHIPPED:
        plan = compile_file(str(path))
        assert plan.spec == path.stem.lower(), rel(path)
        assert plan.spec not in names, f"{rel(path)} and {names.get(plan.spec)} share a name"
        names[plan.spec] = rel(path)


def test_quickstart_is_cpu_sized():
    plan = compile_file(str(REPO / "examples" / "quickstart.yaml"))
    for config in plan.configs:
        r = config.resolved.model_dump(mode="json")
        assert r["data"]["dataset"] == "digits"
        assert r["model"]["width"] <= 0.25
        assert r["train"]["epochs"] <= 12
        assert r["measure"]["flatness"] is None
    assert len(plan.runs) <= 10
    pruned = {c.id for c in plan.configs if c.schedules}
    assert len(pruned) >= 2 and any(not c.schedules for c in plan.configs)
    for run in plan.runs:
        assert all(1 <= e.epoch <= run.epochs for e in run.events)
