"""Property tests: whatever a spec file holds, loading and checking it never crashes.

Valid base specs are mutated (keys deleted, values replaced by values of other types,
keys inserted, override paths and sweep axes made up, and the YAML text itself edited);
for every result `load_text` either returns a Document or raises SpecErrors, and
`check` returns either a plan and no errors or no plan and errors, each error pointing
at a real place in the file.
"""

from __future__ import annotations

import copy
import textwrap
from typing import Any

import yaml
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from gstc import prune_spec, sections, spec
from gstc.compile import check
from gstc.errors import SpecError, SpecErrors
from gstc.load import load_text
from gstc.plan import Plan

VGG = textwrap.dedent(
    """\
    gstc: 1
    name: vgg-props
    description: VGG with variants, a sweep and a zip
    seeds: [0, 3]
    model: {arch: vgg11_bn, width: 0.25}
    data: {dataset: synthetic, augment: false}
    train:
      epochs: 12
      batch_size: 32
      optimizer: {name: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0005}
      lr_schedule: {milestones: [6, 9], gamma: 0.1}
    prune:
      scoring: l2
      target: S
      schedule: {every: 2}
      layers:
        - {select: conv5, amount: 0.5, schedule: {start: 1, end: 7}}
        - {select: "conv[78]", rate: 0.1, schedule: {start: 2, end: 6}}
        - {select: conv1, amount: 0.25, schedule: {epochs: [0]}}
    measure:
      prune_eval: true
      flatness: {at: [12], samples: 16, hessian_top: 2, trace_probes: 2, epsilon: {directions: 2}}
    variants:
      baseline: {prune: null}
      small: {}
      large: {prune.target: largest, "prune.layers[0].amount": 0.7}
    sweep:
      train.optimizer.lr: [0.1, 0.05]
      zip:
        prune.schedule.every: [2, 3]
        prune.scoring: [l1, l2]
    """
)

RESNET = textwrap.dedent(
    """\
    gstc: 1
    name: resnet-globs
    seeds: 2
    model: resnet20
    data: {dataset: digits}
    train:
      epochs: 20
      optimizer: {name: adam, lr: 0.001, betas: [0.9, 0.99]}
    prune:
      mode: {kind: zero, duration: {batches: 10}, targets: all, restore: trained}
      schedule: {start: 2, end: 14, every: 4}
      amount: 0.5
      layers:
        - {select: "layer1.*.conv1"}
        - {select: "layer2.*.conv*", amount: 0.3, target: random}
        - {select: layer3.0.conv2, mode: prune, scoring: ebn}
        - {select: "layer3.[12].conv?", schedule: {start: 0}, amount: 0.9}
    variants:
      zeroed: {}
      noisy: {prune.mode: {kind: gaussian, duration: {epochs: 1}, std: matched}}
    """
)

RESNET18 = textwrap.dedent(
    """\
    gstc: 1
    name: r18.bf16
    model: {arch: resnet18, width: 0.125}
    data: {dataset: cifar10, root: data, download: false}
    train:
      epochs: 5
      optimizer: {name: adam, lr: 1e-3}
      precision: bf16
    prune:
      scoring: activation_l1
      layers:
        - {select: "layer4.*", amount: 0.3, schedule: {epochs: [1, 3]}}
    sweep:
      prune.layers[0].amount: [0.3, 0.6]
      train.epochs: [5, 6]
    """
)

BASES = [VGG, RESNET, RESNET18]
BASE_DATA = [load_text(text, "base.yaml").data for text in BASES]


def _field_names() -> list[str]:
    """The fields of the spec language's own models (not of the modes, lottery and moving sections)."""
    names: set[str] = set()
    for module in (spec, sections, prune_spec):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__:
                names.update(obj.model_fields)
    return sorted(names)


FIELDS = _field_names()
WORDS = [
    "no", "yes", "on", "off", "y", "n", "S", "L", "R", "null", "~", "true", "final", "matched", "conv5", "conv9",
    "layer1.*", "layer*.*.conv*", "[", "*", "1e3", "0x1f", "0o17", "", " ", "vgg11_bn", "resnet20", "resnet56",
    "zero", "prune", "gaussian", "sgd", "adam", "random", "largest", "smallest", "l1", "ebn", "newest", "all",
    "trained", "cifar10", "digits", "synthetic", "bf16", "../../etc", "A B", ".inf", ".nan", "é", "\t", "\x85",
] + FIELDS

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=40),
    st.integers(),
    st.sampled_from([2**31, 2**63, 10**30, -(10**30), 100_001, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 0.999999, 1.0, 1e-300, 1e300]),
    st.text(max_size=12),
    st.sampled_from(WORDS),
)
keys = st.one_of(st.sampled_from(FIELDS), st.sampled_from(WORDS), st.text(min_size=1, max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=8,
)
path_parts = st.lists(st.one_of(st.sampled_from(FIELDS), st.integers(min_value=0, max_value=4)), min_size=1, max_size=5)


def _path_text(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


override_paths = st.one_of(
    path_parts.map(_path_text),
    st.sampled_from([
        "prune.target", "prune.layers[0].amount", "prune.layers[1].schedule.start", "prune.schedule.every",
        "prune.mode", "prune.mode.duration", "model.width", "model", "train.epochs", "train.optimizer",
        "train.optimizer.lr", "prune", "measure.flatness", "seeds", "name", "sweep", "prune.layers",
        "prune.layers[9].amount", "a..b", "train.epochs[0]", "prune.layers.amount",
    ]),
    st.text(max_size=15),
)


def containers(obj: Any, at: tuple = ()) -> list[tuple]:
    """Paths of every mapping and list in `obj`, the root included."""
    out = [at] if isinstance(obj, (dict, list)) else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, child in items:
        out += containers(child, at + (key,))
    return out


def get(obj: Any, at: tuple) -> Any:
    for part in at:
        obj = obj[part]
    return obj


def similar(value: Any) -> st.SearchStrategy:
    if isinstance(value, bool):
        return st.one_of(st.booleans(), st.sampled_from(["yes", "no", "on", "off"]))
    if isinstance(value, int):
        return st.one_of(st.integers(min_value=-2, max_value=60), st.sampled_from([0, 1, 10**12]))
    if isinstance(value, float):
        return st.one_of(st.floats(min_value=-0.5, max_value=1.5), st.sampled_from([0.0, 1.0, 1e-9, 0.999999999]))
    if isinstance(value, str):
        return st.sampled_from(WORDS)
    if isinstance(value, list):
        return st.lists(st.integers(min_value=-1, max_value=25), max_size=4) | st.just(value[::-1]) | st.just(value * 2)
    return values


def leaf_paths(obj: Any, at: tuple = ()) -> list[tuple]:
    """Paths of every value in `obj` (containers and scalars), the root left out."""
    out = [at] if at else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, child in items:
        out += leaf_paths(child, at + (key,))
    return out


@st.composite
def override_specs(draw) -> Any:
    """A valid base plus variants and sweep axes over paths that exist in it (and values like theirs)."""
    data = copy.deepcopy(draw(st.sampled_from(BASE_DATA)))
    config = {k: v for k, v in data.items() if k in ("model", "data", "train", "prune", "measure")}
    paths = [p for p in leaf_paths(config) if not any(isinstance(k, str) and "." in k for k in p)]
    extra = ["prune", "prune.mode", "prune.mode.duration.batches", "model.width", "model", "measure.flatness",
             "prune.layers[0].schedule.epochs", "prune.schedule", "prune.layers[0].mode", "prune.amount"]
    zip_size = draw(st.integers(min_value=1, max_value=3))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.sampled_from(paths))
        path = draw(st.one_of(st.just(_path_text(list(at))), st.sampled_from(extra)))
        current = get(config, at) if path == _path_text(list(at)) else None
        value = draw(similar(current) | values if current is not None else values)
        where = draw(st.sampled_from(["variant", "sweep", "zip"]))
        if where == "variant":
            name = draw(st.sampled_from(["v1", "v2", "small", "baseline"]))
            variants = data.get("variants") or {}
            data["variants"] = variants
            if not isinstance(variants.get(name), dict):
                variants[name] = {}
            variants[name][path] = value
        else:
            sweep = data.get("sweep") or {}
            data["sweep"] = sweep
            if where == "zip":
                sweep = sweep.setdefault("zip", {})
            size = zip_size if where == "zip" else draw(st.integers(min_value=1, max_value=3))
            sweep[path] = draw(st.lists(similar(current) if current is not None else values, min_size=size, max_size=size))
    return data


@st.composite
def mutated_specs(draw) -> Any:
    data = copy.deepcopy(draw(st.sampled_from(BASE_DATA)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["delete", "replace", "nudge", "nudge", "insert", "variant", "sweep", "zip"]))
        if op in ("variant", "sweep", "zip"):
            if not isinstance(data, dict):
                continue
            path = draw(override_paths)
            if op == "variant":
                variants = data.setdefault("variants", {})
                if not isinstance(variants, dict):
                    continue
                name = draw(st.sampled_from(["v1", "v2", "small", "Bad Name"]))
                overrides = variants.get(name)
                if not isinstance(overrides, dict):
                    overrides = variants[name] = {}
                overrides[path] = draw(values)
            else:
                sweep = data.setdefault("sweep", {})
                if not isinstance(sweep, dict):
                    continue
                if op == "zip":
                    zipped = sweep.get("zip")
                    if not isinstance(zipped, dict):
                        zipped = sweep["zip"] = {}
                    sweep = zipped
                sweep[path] = draw(st.one_of(st.lists(values, min_size=0, max_size=3), values))
            continue
        where = draw(st.sampled_from(containers(data)))
        parent = get(data, where)
        if op == "insert":
            if isinstance(parent, dict):
                parent[draw(keys)] = draw(values)
            else:
                parent.insert(draw(st.integers(min_value=0, max_value=len(parent))), draw(values))
            continue
        if not parent:
            continue
        slot = draw(st.sampled_from(list(parent) if isinstance(parent, dict) else list(range(len(parent)))))
        if op == "delete":
            del parent[slot]
        elif op == "nudge":  # a value of the same kind: more mutants get past the schema to the compiler
            parent[slot] = draw(similar(parent[slot]))
        else:
            parent[slot] = draw(values)
    return data


def well_behaved(text: str) -> None:
    """The property: SpecErrors or a Document; then (plan, []) or (None, errors), errors in the file."""
    # An error may stand just past the last line (end of stream). PyYAML counts NEL, LS and PS as line breaks too
    # (YAML 1.1's), so a value holding them moves the lines after it.
    lines = sum(text.count(c) for c in "\n\x85\u2028\u2029") + 2
    try:
        doc = load_text(text, "f.yaml")
    except SpecErrors as exc:
        event("load_text raised SpecErrors")
        assert exc.errors
        for error in exc.errors:
            assert_located(error, lines)
        return
    plan, errors = check(doc)
    event("check found errors" if errors else "check compiled a plan")
    if errors:
        assert plan is None
        nodes = set(doc.positions.values()) | set(doc.key_positions.values()) | {(1, 1)}
        for error in errors:
            assert_located(error, lines)
            assert (error.line, error.col) in nodes, error  # the place of a key or value in the file
    else:
        assert isinstance(plan, Plan) and plan.configs and plan.runs
        assert Plan.model_validate_json(plan.model_dump_json()) == plan


def assert_located(error: SpecError, lines: int) -> None:
    assert isinstance(error, SpecError)
    assert 1 <= error.line <= lines, error
    assert error.col >= 1, error
    assert error.message, error
    assert error.format().startswith(f"f.yaml:{error.line}:{error.col}: error: ")


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=60)


_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
QUICK = settings(max_examples=100, deadline=None, suppress_health_check=_HEALTH)  # the default run
THOROUGH = settings(max_examples=1000, deadline=None, suppress_health_check=_HEALTH)  # `pytest -m slow`


def properties(strategy, render: Any = lambda text: text):
    """A property as two tests: a quick one in the default run, a thorough one (10x the examples) marked slow."""
    def check(data):
        well_behaved(render(data))

    return QUICK(given(strategy)(check)), pytest.mark.slow(THOROUGH(given(strategy)(check)))


def test_the_base_specs_are_valid():
    for text, data in zip(BASES, BASE_DATA):
        plan, errors = check(load_text(text, "base.yaml"))
        assert errors == [] and plan is not None and len(plan.configs) > 1
        for again in (dump(data), yaml.safe_dump(data, sort_keys=False, default_flow_style=True, width=10**9)):
            plan2, errors2 = check(load_text(again, "base.yaml"))  # what the mutants start from is valid
            assert errors2 == [] and plan2 == plan


def flow(data: Any) -> str:
    """One line of flow YAML: every error must still land on line 1 or 2."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=True, width=10**9)


test_structural_mutations_never_crash, test_structural_mutations_never_crash_thoroughly = properties(
    mutated_specs(), dump)
test_structural_mutations_in_flow_style_never_crash, test_structural_mutations_in_flow_style_never_crash_thoroughly = (
    properties(mutated_specs(), flow))
test_overrides_of_existing_paths_never_crash, test_overrides_of_existing_paths_never_crash_thoroughly = properties(
    override_specs(), dump)


# Text edits: characters that matter to YAML, plus any unicode.
yaml_chars = st.sampled_from(list(":-[]{},#&*!|>'\"%@`?\t\n ") + ["\n  ", ": ", "- ", "<<: ", "!!python/object ", "*a", "&a "])
insertions = st.one_of(yaml_chars, st.text(max_size=6), st.sampled_from(WORDS))


@st.composite
def edited_texts(draw) -> str:
    text = draw(st.sampled_from(BASES))
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate-line", "drop-line", "indent"]))
        at = draw(st.integers(min_value=0, max_value=len(text)))
        if op == "insert":
            text = text[:at] + draw(insertions) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=8)):]
        elif op == "replace":
            text = text[:at] + draw(insertions) + text[at + draw(st.integers(min_value=1, max_value=4)):]
        else:
            lines = text.split("\n")
            k = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            if op == "duplicate-line":
                lines.insert(k, lines[k])
            elif op == "drop-line":
                del lines[k]
            else:
                lines[k] = draw(st.sampled_from([" ", "  ", "\t", "   "])) + lines[k]
            text = "\n".join(lines)
    return text


test_text_mutations_never_crash, test_text_mutations_never_crash_thoroughly = properties(edited_texts())
test_arbitrary_text_never_crashes, test_arbitrary_text_never_crashes_thoroughly = properties(st.text(max_size=200))
