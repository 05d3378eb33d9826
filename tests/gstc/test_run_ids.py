"""Run ids are content hashes of the resolved run: pinned, and blind to presentation."""

from __future__ import annotations

import json
from typing import get_args, get_origin

import pytest

from gstc.archs import ARCHS
from gstc.compile import check, compile_file
from gstc.load import load_text
from tests.conftest import REPO, SHIPPED, SMALL_SPEC


def ids(text: str) -> dict[tuple[str, int], str]:
    plan, errors = check(load_text(text, "t.yaml"))
    assert not errors, [e.format() for e in errors]
    return {(r.config, r.seed): r.id for r in plan.runs}


def test_pinned_run_ids():
    # If this fails, every stored result would be orphaned: change ids only on purpose,
    # with a note on how to migrate results folders.
    got = ids(SMALL_SPEC)
    assert got == {
        ("baseline", 0): PINNED["baseline", 0],
        ("baseline", 1): PINNED["baseline", 1],
        ("small", 0): PINNED["small", 0],
        ("small", 1): PINNED["small", 1],
        ("large", 0): PINNED["large", 0],
        ("large", 1): PINNED["large", 1],
    }


PINNED = {
    ("baseline", 0): "66e1b55fb794",
    ("baseline", 1): "88e954597f60",
    ("small", 0): "376372265585",
    ("small", 1): "65806e8677a3",
    ("large", 0): "88c248a36345",
    ("large", 1): "12427d326730",
}


def test_ids_ignore_name_description_variant_names_and_data_location():
    base = ids(SMALL_SPEC)
    renamed = SMALL_SPEC.replace("name: small", "name: other").replace("a small VGG spec", "something else")
    renamed = renamed.replace("  small: {}", "  s13: {}").replace("data: {dataset: digits}", "data: {dataset: digits, root: /elsewhere}")
    other = ids(renamed)
    assert other[("s13", 0)] == base[("small", 0)]
    assert other[("baseline", 1)] == base[("baseline", 1)]


def test_ids_ignore_how_the_schedule_is_written():
    base = ids(SMALL_SPEC)
    # The same layers and events, written as explicit names and explicit epochs, with defaults spelled out.
    text = SMALL_SPEC.replace('    - {select: "conv[78]", amount: 0.3, schedule: {start: 2, end: 6}}',
                              "    - {select: conv7, amount: 0.3, schedule: {epochs: [2, 4, 6]}}\n"
                              "    - {select: conv8, amount: 0.3, schedule: {epochs: [6, 4, 2]}, target: S}")
    text = text.replace("model: {arch: vgg11_bn, width: 0.25}", "model: {arch: vgg11_bn, width: 0.25}\nmeasure: {prune_eval: true}")
    assert ids(text)[("small", 0)] == base[("small", 0)]


def test_ids_change_with_anything_that_changes_the_numbers():
    base = ids(SMALL_SPEC)
    for old, new in [("lr: 0.001", "lr: 0.002"), ("width: 0.25", "width: 0.5"), ("batch_size: 64", "batch_size: 32"),
                     ("amount: 0.5", "amount: 0.4"), ("scoring: l2", "scoring: l1"), ("dataset: digits", "dataset: synthetic")]:
        changed = ids(SMALL_SPEC.replace(old, new))
        assert changed[("small", 0)] != base[("small", 0)], old
    assert len(set(base.values())) == len(base)  # seeds and configurations all differ


# --- ids that survive upgrades -------------------------------------------------------------

PINS = REPO / "tests" / "gstc" / "pinned_run_ids.json"


def shipped_ids() -> dict[str, dict[str, str]]:
    out = {}
    for name in json.loads(PINS.read_text()):
        plan = compile_file(str(REPO / name))
        # a lottery's runs: one per level (and stage kind) of a configuration and seed
        out[name] = {f"{r.config} seed {r.seed}" + (f" level {r.stage.level} {r.stage.kind}" if r.stage else ""): r.id
                     for r in plan.runs} | {"spec_hash": plan.spec_hash}
    return out


def test_every_shipped_spec_keeps_its_run_ids():
    # 708 runs of the 20 shipped specs, pinned when ids were made upgrade-proof: results computed
    # with any earlier gstc are found again; specs shipped since are pinned from their first release (the five
    # pruning-method examples of gstc 0.4.0: global-cubic, prune-at-init, two-four, own-scoring,
    # unstructured-stability; the lottery and moving-masks examples of gstc 0.5.0).
    # (Spec hashes are pinned too, though they name no folder.) Moved once, on purpose: the four pruned runs
    # of examples/torchvision-mobilenet.yaml, when a pruned expansion conv began to take the depthwise conv
    # that reads it along (before, each pruned channel came back as that conv's BN shift): their numbers
    # changed, so their ids had to (gstc.identity._semantic, "with").
    pinned = json.loads(PINS.read_text())
    assert set(pinned) == {str(p.relative_to(REPO)) for p in SHIPPED}
    assert shipped_ids() == pinned


def plus_models(**fields):
    """The spec models with test-only fields added (`train.<name>`), as a later gstc would add them:
    (Spec, BaseConfig) subclasses whose `train` section has the extra fields with their defaults."""
    from pydantic import Field, create_model

    from gstc.sections import TrainSpec
    from gstc.spec import BaseConfig, Spec

    train = create_model("TrainSpecPlus", __base__=TrainSpec,
                         **{k: (type(v), Field(default=v, description="test only")) for k, v in fields.items()})
    config = create_model("BaseConfigPlus", __base__=BaseConfig, train=(train, Field(description="train")))
    spec = create_model("SpecPlus", __base__=Spec, train=(train, Field(description="train")))
    return spec, config


@pytest.fixture
def added_fields(monkeypatch):
    """The compiler validates with spec models that have two fields more than today's."""
    from gstc import compile as compiler

    spec, config = plus_models(label_smoothing=0.0, warmup="none")
    monkeypatch.setattr(compiler, "Spec", spec)
    monkeypatch.setattr(compiler, "BaseConfig", config)
    return config


def test_a_field_added_with_a_default_changes_no_id(added_fields):
    """Rule: adding a field with a default to a spec model leaves every existing run id as it was."""
    got = shipped_ids()
    assert got == json.loads(PINS.read_text())
    plan, errors = check(load_text(SMALL_SPEC, "t.yaml"))
    assert not errors and plan.configs[0].resolved.train.label_smoothing == 0.0  # the field is really there


def test_only_a_non_default_value_of_an_added_field_changes_ids(added_fields):
    base = ids(SMALL_SPEC)
    same = ids(SMALL_SPEC.replace("batch_size: 64", "batch_size: 64\n  label_smoothing: 0.0\n  warmup: none"))
    assert same == base  # the default, written out
    for text in ("label_smoothing: 0.1", "warmup: linear"):
        changed = ids(SMALL_SPEC.replace("batch_size: 64", f"batch_size: 64\n  {text}"))
        assert set(changed.values()).isdisjoint(base.values()), text


def test_the_canonical_form_of_the_shipped_specs_is_format_1s_model_dump():
    """The hashed form of a shipped configuration is its model_dump restricted to format 1's fields:
    the fields added since (model.args, model.layers, data.image_size, ...) sit at their defaults there."""
    from pydantic import BaseModel

    from gstc.ids import canonical, format_1_fields
    from gstc.plugins import Choice

    def format_1(value):
        if isinstance(value, Choice):  # format 1's scoring was a string; a plugin without parameters still is
            return value.model_dump(mode="json")
        if isinstance(value, BaseModel):
            return {name: format_1(getattr(value, name)) for name in format_1_fields(type(value))}
        if isinstance(value, (list, tuple)):
            return [format_1(v) for v in value]
        return value

    for path in SHIPPED:
        for config in compile_file(str(path)).configs:
            prune = config.resolved.prune
            if config.resolved.model.arch not in ARCHS or config.resolved.data.args or (prune is not None and (
                    (prune.granularity, prune.scope) != ("filter", "layer") or prune.scoring.params
                    or any(s.curve != "equal" for s in config.schedules))):
                continue  # specs that use the fields added since format 1 (own models and data, pruning methods)
            dumped = config.resolved.model_dump(mode="json")
            restricted = format_1(config.resolved)
            assert canonical(config.resolved) == json.loads(json.dumps(restricted)), path.name
            assert set(dumped["model"]) - set(restricted["model"]) == {"args", "layers"}  # the new fields exist
            for s in config.schedules:
                assert canonical(s.mode) == s.mode.model_dump(mode="json")


def spec_models():
    """Every spec model class reachable from Spec, with its fields."""
    from gstc.overrides import is_model, unwrap
    from gstc.spec import Spec

    seen: dict[type, None] = {}
    todo = [Spec]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen[model] = None
        for field in model.model_fields.values():
            stack = [field.annotation]
            while stack:
                for t in unwrap(stack.pop()):
                    if is_model(t):
                        todo.append(t)
                    elif get_origin(t) in (list, tuple, dict):
                        stack.extend(get_args(t))
    return list(seen)


def test_every_field_is_a_format_1_field_or_has_a_default():
    """Rule: a field added after format 1 needs a default (old specs do not set it, old ids did not hash it)."""
    from gstc.ids import format_1_fields

    models = spec_models()
    assert {m.__name__ for m in models} >= {"ModelSpec", "TrainSpec", "ZeroMode", "FlatnessSpec"}
    for model in models:
        for name, field in model.model_fields.items():
            # A mode of the spec's own (a new kind of mode, not a new field of an old one) is told apart by its kind.
            tag = (model.__name__, name) == ("ForeignMode", "kind")
            assert name in format_1_fields(model) or not field.is_required() or tag, f"{model.__name__}.{name}"
