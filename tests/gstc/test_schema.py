"""The committed JSON Schema is current, draft-07 only, and agrees with the validator."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from gstc.compile import check
from gstc.overrides import ANY_INDEX, check_override_path, override_paths
from gstc.load import load_text
from gstc.schema import UNIQUE_ITEMS, _node, json_schema, schema_text
from gstc.spec import Spec
from tests.conftest import REPO, SHIPPED, SMALL_SPEC

# Keywords of JSON Schema draft-07 (validation + core + annotations) that we may emit.
DRAFT07 = {
    "$schema", "$id", "$ref", "definitions", "title", "description", "default", "type", "enum", "const",
    "properties", "additionalProperties", "patternProperties", "propertyNames", "required", "items",
    "additionalItems", "minItems", "maxItems", "uniqueItems", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "pattern", "anyOf", "oneOf", "allOf", "not", "if", "then", "else",
}
# yaml-language-server's own annotations: the message it shows in place of its generic one. Validators
# that do not know them ignore them, as draft-07 says of unknown keywords.
SERVER_EXTENSIONS = {"errorMessage", "patternErrorMessage"}


def test_committed_schema_is_current():
    committed = (REPO / "schema" / "gstc.schema.json").read_text()
    assert committed == schema_text(), "run `gstc schema --out schema/gstc.schema.json`"


def _keywords(node, inside_properties=False):
    if isinstance(node, dict):
        for key, value in node.items():
            if not inside_properties:
                yield key
            yield from _keywords(value, inside_properties=key in ("properties", "definitions", "patternProperties"))
    elif isinstance(node, list):
        for item in node:
            yield from _keywords(item)


def test_schema_uses_draft07_keywords_only():
    schema = json_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert set(_keywords(schema)) <= DRAFT07 | SERVER_EXTENSIONS
    jsonschema.Draft7Validator.check_schema(schema)


def _described(schema, body) -> bool:
    """A description of its own, or (override paths) a reference to the described field, or each of several."""
    if "description" in body:
        return True
    if "$ref" in body:
        return _described(schema, _node(schema, body["$ref"]))
    return bool(body.get("anyOf")) and all(_described(schema, option) for option in body["anyOf"])


def test_every_property_has_a_description():
    schema = json_schema()
    missing = []
    for name, definition in [("Spec", schema), *schema["definitions"].items()]:
        for table in ("properties", "patternProperties"):
            for prop, body in definition.get(table, {}).items():
                if not _described(schema, body):
                    missing.append(f"{name}.{prop}")
    assert not missing


def test_schema_accepts_valid_and_rejects_invalid_specs():
    validator = jsonschema.Draft7Validator(json_schema())
    good = yaml.safe_load(SMALL_SPEC)
    assert not list(validator.iter_errors(good))
    Spec.model_validate(good)  # and pydantic agrees
    for path, value in [("train", {"epochs": 3}), ("model", {"arch": "vgg11_bn", "widht": 1}),
                        ("data", {"dataset": "mnistt"})]:
        bad = dict(good, **{path: value})
        assert list(validator.iter_errors(bad)), path


@pytest.mark.parametrize("target", ["S", "R", "L", "smallest"])
def test_schema_knows_the_short_forms(target):
    validator = jsonschema.Draft7Validator(json_schema())
    spec = yaml.safe_load(SMALL_SPEC)
    spec["model"] = "vgg11_bn"
    spec["prune"]["target"] = target
    spec["prune"]["mode"] = "prune"
    assert not list(validator.iter_errors(spec))


def test_schema_file_is_valid_json():
    assert re.match(r"\{", (REPO / "schema" / "gstc.schema.json").read_text())
    json.loads((REPO / "schema" / "gstc.schema.json").read_text())


def gstc_errors(spec: dict) -> list[str]:
    """What `gstc validate` says of a spec (as data), every error formatted."""
    _, errors = check(load_text(yaml.safe_dump(spec, sort_keys=False), "t.yaml"))
    return [e.format() for e in errors]


def reasons(errors) -> set[str]:
    """The keywords behind schema errors, inside anyOf branches too (`prune` is a PruneSpec or null)."""
    out = set()
    for e in errors:
        out.add(e.validator)
        out |= reasons(e.context or [])
    return out


@pytest.mark.parametrize("model, field", UNIQUE_ITEMS)
def test_unique_items_are_lists_whose_duplicates_the_validators_reject(model, field, tmp_path):
    """The schema marks a list uniqueItems only where the models refuse duplicates, so the editor flags what
    `gstc validate` would, and nothing more."""
    spec = yaml.safe_load(SMALL_SPEC)
    where = {"Spec": (spec, "seeds", [0, 1, 1]),
             "ScheduleSpec": (spec["prune"]["layers"][0], "schedule", {"epochs": [2, 4, 4]}),
             "LRScheduleSpec": (spec["train"], "lr_schedule", {"milestones": [3, 8, 8]})}[model]
    where[0][where[1]] = where[2]
    assert gstc_errors(spec), f"the models accept duplicate {model}.{field}"
    schema_errors = list(jsonschema.Draft7Validator(json_schema()).iter_errors(spec))
    assert "uniqueItems" in reasons(schema_errors), schema_errors


def test_optional_fields_read_well_in_an_editor():
    """No `default: null` (completion inserted it), no title repeating the key (hover showed it twice), and an
    optional scalar is one `type: [T, "null"]` whose constraints still hold."""
    schema = json_schema()
    for name, definition in [("Spec", schema), *schema["definitions"].items()]:
        for prop, body in definition.get("properties", {}).items():
            assert body.get("default", 0) is not None, f"{name}.{prop}"
            assert body.get("title") != prop.replace("_", " ").title(), f"{name}.{prop}"
    amount = schema["definitions"]["LayerEntry"]["properties"]["amount"]
    assert amount["type"] == ["number", "null"] and amount["exclusiveMaximum"] == 1
    validator = jsonschema.Draft7Validator(json_schema())
    spec = yaml.safe_load(SMALL_SPEC)
    spec["prune"]["layers"][0]["amount"] = 1.5
    assert "exclusiveMaximum" in reasons(validator.iter_errors(spec))


def messages(errors) -> list[str]:
    out = []
    for e in errors:
        out.append(e.message)
        out += messages(e.context or [])
    return out


@pytest.mark.parametrize("mode, expected", [
    ({"kind": "zero", "std": "matched", "duration": {"epochs": 1}}, "Additional properties are not allowed ('std' was unexpected)"),
    ({"kind": "zeroo"}, "'zeroo' is not one of ['prune', 'zero', 'gaussian']"),
    ({"kind": "gaussian"}, "'duration' is a required property"),
])
def test_a_wrong_mode_key_is_reported_as_that_key(mode, expected):
    """One Mode object, `kind` then the kind's own keys: no branch that asks for another kind."""
    spec = yaml.safe_load(SMALL_SPEC)
    spec["prune"]["mode"] = mode
    found = messages(jsonschema.Draft7Validator(json_schema()).iter_errors(spec))
    assert expected in found, found
    assert not any("'gaussian' was expected" in m for m in found)


@pytest.mark.parametrize("mode", ["prune", {"kind": "prune", "include_bn": False},
                                  {"kind": "zero", "duration": {"epochs": 2}, "restore": "trained"},
                                  {"kind": "gaussian", "duration": {"batches": 10}, "std": "matched"}])
def test_every_mode_form_the_models_accept_the_schema_accepts(mode):
    spec = yaml.safe_load(SMALL_SPEC)
    spec["prune"]["mode"] = mode
    assert not gstc_errors(spec)
    assert not list(jsonschema.Draft7Validator(json_schema()).iter_errors(spec))


# --- override paths and rules across fields: the schema flags what gstc flags ----------------------------


def test_override_paths_are_the_paths_the_compiler_accepts():
    """Variants and sweep axes are keyed by exactly the compiler's override paths: every path the schema
    lists passes `check_override_path` (with an index in either spelling), and the schema lists them all."""
    schema = json_schema()
    overrides = schema["definitions"]["Overrides"]
    assert overrides["additionalProperties"] is False
    keyed = [*overrides["properties"], *overrides["patternProperties"]]
    assert len(keyed) == len(override_paths()) > 50
    for template in override_paths():
        for spelling in ("[{}]", ".{}"):
            text = "".join(spelling.format(0) if p == ANY_INDEX else spelling.format(p) if isinstance(p, int) else f".{p}"
                           for p in template).lstrip(".")
            parts, problem = check_override_path(text)
            assert problem is None, (text, problem)
            assert text in overrides["properties"] or any(re.match(p, text) for p in overrides["patternProperties"]), text
    sweep = schema["definitions"]["SweepSpec"]
    assert set(sweep["properties"]) == {*overrides["properties"], "zip"}
    assert set(sweep["properties"]["zip"]["properties"]) == set(overrides["properties"])


def _edit(**changes):
    """A change to SMALL_SPEC: top-level keys replaced, `layer0`/`layer1` merged into a layer entry,
    `prune_keys` merged into prune, `drop` lists dotted keys removed."""
    def apply(spec):
        for key, value in changes.items():
            if key.startswith("layer"):
                spec["prune"]["layers"][int(key[-1])].update(value)
            elif key == "prune_keys":
                spec["prune"].update(value)
            elif key == "drop":
                for dotted_key in value:
                    *head, last = dotted_key.split(".")
                    node = spec
                    for part in head:
                        node = node[int(part)] if isinstance(node, list) else node[part]
                    node.pop(last)
            else:
                spec[key] = value
        return spec
    return apply


SGD = {"epochs": 10, "batch_size": 64, "optimizer": {"name": "sgd", "lr": 0.1, "nesterov": True}}
AGREEMENT = {
    # overrides
    "override-target-short": (True, _edit(variants={"L": {"prune.target": "L"}})),
    "override-index-both-spellings": (True, _edit(variants={"A": {"prune.layers.1.amount": 0.4, "prune.layers[0].schedule.start": 2}})),
    "override-tuple-entry": (True, _edit(variants={"A": {"train.optimizer": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.9]},
                                                                     "train.optimizer.betas.1": 0.99}})),
    "override-whole-mode": (True, _edit(variants={"Z": {"prune.mode": {"kind": "zero", "duration": {"epochs": 1}}, "prune.mode.targets": "all"}})),
    "override-remove-section": (True, _edit(variants={"none": {"prune": None}, "same": None})),
    "sweep-and-zip": (True, _edit(variants={"one": {}}, sweep={"prune.layers.0.amount": [0.2, 0.4], "zip": {"train.optimizer.lr": [0.01, 0.02], "prune.target": ["S", "L"]}})),
    "override-key-typo": (False, _edit(variants={"L": {"prune.targt": "largest"}})),
    "override-bad-value": (False, _edit(variants={"L": {"prune.target": "biggest"}})),
    "override-header-key": (False, _edit(variants={"L": {"seeds": 3}})),
    "override-out-of-range": (False, _edit(variants={"L": {"prune.layers.0.amount": 1.5}})),
    "override-tuple-past-end": (False, _edit(variants={"L": {"train.optimizer.betas.2": 0.5}})),
    "variant-name-with-space": (False, _edit(variants={"Bad Name": {"prune.target": "largest"}})),
    "sweep-axis-not-a-path": (False, _edit(sweep={"name": ["a", "b"]})),
    "sweep-bad-value": (False, _edit(sweep={"prune.target": ["smallest", "huge"]})),
    "zip-bad-value": (False, _edit(sweep={"zip": {"prune.target": ["huge", "S"], "train.optimizer.lr": [0.1, 0.2]}})),
    # rules across fields
    "entry-amount-and-rate": (False, _edit(layer0={"rate": 0.1})),
    "default-amount-and-rate": (False, _edit(prune_keys={"amount": 0.2, "rate": 0.1})),
    "default-rate-beside-entry-amount": (False, _edit(prune_keys={"rate": 0.1})),
    "default-amount-beside-entry-rate": (False, _edit(prune_keys={"amount": 0.2}, layer0={"amount": None, "rate": 0.1})),
    "default-rate-fills-entries": (True, _edit(prune_keys={"rate": 0.1}, drop=["prune.layers.0.amount", "prune.layers.1.amount"])),
    "neither-amount-nor-rate": (False, _edit(drop=["prune.layers.0.amount"])),
    "nesterov-without-momentum": (False, _edit(train=SGD)),
    "nesterov-with-zero-momentum": (False, _edit(train={**SGD, "optimizer": {**SGD["optimizer"], "momentum": 0.0}})),
    "nesterov-with-momentum": (True, _edit(train={**SGD, "optimizer": {**SGD["optimizer"], "momentum": 0.9}})),
    "schedule-epochs-and-start": (False, _edit(layer0={"schedule": {"epochs": [2, 4], "start": 1}})),
    "schedule-epochs-alone": (True, _edit(layer0={"schedule": {"epochs": [2, 4]}}, layer1={"schedule": {"start": 2, "every": 2}},
                                           drop=["prune.schedule"])),
    "duration-both": (False, _edit(prune_keys={"mode": {"kind": "zero", "duration": {"epochs": 1, "batches": 5}}})),
    "duration-neither": (False, _edit(prune_keys={"mode": {"kind": "zero", "duration": {}}})),
    "duration-null-beside-one": (True, _edit(prune_keys={"mode": {"kind": "gaussian", "duration": {"epochs": None, "batches": 5}}})),
}


@pytest.mark.parametrize("name", AGREEMENT)
def test_the_schema_and_gstc_agree(name):
    """The editor flags what `gstc validate` flags, and accepts what it accepts, on override paths and on
    the rules across fields the schema states."""
    valid, change = AGREEMENT[name]
    spec = change(yaml.safe_load(SMALL_SPEC))
    errors = gstc_errors(spec)
    schema_errors = list(jsonschema.Draft7Validator(json_schema()).iter_errors(spec))
    assert (not errors) == valid, errors
    assert (not schema_errors) == valid, [e.message for e in schema_errors]


def test_check_jsonschema_validates_every_shipped_spec_against_the_committed_schema(tmp_path):
    """check-jsonschema (the validator pre-commit hooks and CI jobs run) accepts every shipped spec and example
    and rejects a spec breaking a rule across fields, so the committed schema works outside the editor too."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    # Beside the running interpreter first: a venv's tools are there even when the venv is not activated.
    tool = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    assert tool, "check-jsonschema is a dev dependency: pip install -e '.[dev]'"
    schema = REPO / "schema" / "gstc.schema.json"
    ok = subprocess.run([tool, "--schemafile", str(schema), *map(str, SHIPPED)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    spec = yaml.safe_load(SMALL_SPEC)
    spec["variants"]["large"] = {"prune.targt": "largest"}
    bad.write_text(yaml.safe_dump(spec))
    refused = subprocess.run([tool, "--schemafile", str(schema), str(bad)], capture_output=True, text=True)
    assert refused.returncode == 1 and "prune.targt" in refused.stdout, refused.stdout
