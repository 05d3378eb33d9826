"""Compiler behaviour: schedules, amounts, globs, overrides, sweeps, the plan's shape."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from gstc.compile import check, compile_file
from gstc.overrides import parse_path
from gstc.schedules import kept_counts
from gstc.errors import SpecErrors
from gstc.load import load_text
from gstc.plan import Plan
from tests.conftest import SMALL_SPEC, write


def plan_of(text: str) -> Plan:
    plan, errors = check(load_text(text, "t.yaml"))
    assert not errors, [e.format() for e in errors]
    return plan


def errors_of(text: str) -> list[str]:
    try:
        plan, errors = check(load_text(text, "t.yaml"))
    except SpecErrors as exc:
        errors = exc.errors
    assert errors
    return [e.format() for e in errors]


def with_prune(prune: str, epochs: int = 10, extra: str = "") -> str:
    head = SMALL_SPEC.split("prune:")[0].replace("epochs: 10", f"epochs: {epochs}")
    return head + "prune:\n" + prune + extra


def test_kept_counts_follow_the_papers_rule():
    # VGG conv8, amount 0.9 over 7 events: final = ceil(0.1 * 512) = 52.
    assert kept_counts(512, Fraction(9, 10), 7) == [447, 381, 315, 250, 184, 118, 52]
    # One event removes the whole amount; ceil keeps at least one filter.
    assert kept_counts(10, Fraction(99, 100), 1) == [1]
    assert kept_counts(3, Fraction(1, 2), 3) == [3, 3, 2]  # final 2; ceil(2 + 2/3) = 3, ceil(2 + 1/3) = 3


def test_exact_decimals_not_binary_floats():
    # 0.3 * 10 is 3.0000000000000004 in floats; ceil((1-0.3)*10) must be 7, not 8.
    plan = plan_of(with_prune("  layers:\n    - {select: conv1, amount: 0.3, schedule: {epochs: [1]}}\n").replace("width: 0.25", "width: 0.15625"))
    (s,) = plan.configs[0].schedules
    assert (s.filters, s.kept) == (10, [7])


def test_layer_schedule_fields_merge_with_the_prune_defaults():
    plan = plan_of(SMALL_SPEC)
    small = plan.config("small")
    by_layer = {s.layer: s for s in small.schedules}
    assert by_layer["conv5"].epochs == [1, 3, 5, 7]  # every: 2 from prune.schedule
    assert by_layer["conv7"].epochs == by_layer["conv8"].epochs == [2, 4, 6]
    assert [s.layer for s in small.schedules] == ["conv5", "conv7", "conv8"]


def test_explicit_epochs_are_used_as_they_are():
    plan = plan_of(with_prune("  schedule: {start: 1, end: 9, every: 4}\n  layers:\n"
                              "    - {select: conv5, amount: 0.5, schedule: {epochs: [6, 0, 3]}}\n"
                              "    - {select: conv6, amount: 0.5}\n"))
    s5, s6 = plan.configs[0].schedules
    assert s5.epochs == [0, 3, 6]
    assert s6.epochs == [1, 5, 9]  # no schedule of its own: the prune-level one whole


def test_rate_multiplies_by_the_number_of_events():
    plan = plan_of(with_prune("  rate: 0.1\n  schedule: {start: 1, end: 9, every: 2}\n  layers:\n    - {select: conv8}\n"))
    (s,) = plan.configs[0].schedules
    assert len(s.epochs) == 5 and s.amount == pytest.approx(0.5) and s.rate == pytest.approx(0.1)
    assert s.kept[-1] == 64  # 128 filters at width 0.25, half removed


def test_events_are_ordered_by_epoch_then_layer_and_skip_zero_counts():
    plan = plan_of(SMALL_SPEC)
    run = next(r for r in plan.runs if r.config == "small")
    keys = [(e.epoch, e.layer) for e in run.events]
    order = {"conv5": 5, "conv7": 7, "conv8": 8}
    assert keys == sorted(keys, key=lambda k: (k[0], order[k[1]]))
    assert all(e.prune > 0 and e.kept + e.prune <= e.of for e in run.events)
    # kept after the last event of each layer equals the schedule's final count
    for s in plan.configs[0].schedules:
        assert [e.kept for e in run.events if e.layer == s.layer][-1] == s.kept[-1]


def test_globs_select_layers_and_width_scales_filters():
    text = SMALL_SPEC.replace("model: {arch: vgg11_bn, width: 0.25}", "model: {arch: resnet20, width: 0.5}").split("prune:")[0]
    plan = plan_of(text + "prune:\n  layers:\n    - {select: 'layer3.*.conv*', amount: 0.5, schedule: {epochs: [2]}}\n")
    schedules = plan.configs[0].schedules
    assert [s.layer for s in schedules] == [f"layer3.{b}.conv{c}" for b in range(3) for c in (1, 2)]
    assert {s.filters for s in schedules} == {32}


def test_variants_sweep_and_zip_make_configurations():
    text = SMALL_SPEC + "sweep:\n  train.optimizer.lr: [0.001, 0.01]\n  zip:\n    prune.target: [S, L]\n    prune.schedule.every: [2, 3]\n"
    text = text.replace("  large: {prune.target: largest}\n", "")
    plan = plan_of(text)
    ids = [c.id for c in plan.configs]
    # The baseline has no prune section, so the zip axis does not apply to it.
    assert ids == [
        "baseline[train.optimizer.lr=0.001]",
        "baseline[train.optimizer.lr=0.01]",
        "small[train.optimizer.lr=0.001,prune.target=S,prune.schedule.every=2]",
        "small[train.optimizer.lr=0.001,prune.target=L,prune.schedule.every=3]",
        "small[train.optimizer.lr=0.01,prune.target=S,prune.schedule.every=2]",
        "small[train.optimizer.lr=0.01,prune.target=L,prune.schedule.every=3]",
    ]
    c = plan.configs[3]
    assert c.point == {"train.optimizer.lr": 0.001, "prune.target": "L", "prune.schedule.every": 3}
    assert {s.target for s in c.schedules} == {"largest"}
    assert c.schedules[0].epochs == [1, 4, 7]
    assert len(plan.runs) == 6 * 2


def test_plan_round_trips_through_json():
    plan = plan_of(SMALL_SPEC)
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again == plan
    data = json.loads(plan.model_dump_json())
    assert {"gstc", "spec", "spec_hash", "layers", "configs", "runs"} <= set(data)
    pruned = next(c for c in data["configs"] if c.get("events"))  # the baseline's is left out: it has none
    assert set(pruned["events"][0]) == {"epoch", "layer", "prune", "kept", "of"}
    with pytest.raises(Exception):
        plan.runs[0].seed = 5  # frozen


def test_the_plan_carries_typed_sections_with_every_default_filled_in():
    # The runtime reads typed fields: a mode is its kind's model (defaults from the spec's models, defined once), in
    # the plan and after a JSON round trip alike.
    from gstc.modes.gaussian import GaussianMode
    from gstc.modes.prune import PruneMode
    from gstc.modes.zero import ZeroMode
    from gstc.sections import TrainSpec

    text = SMALL_SPEC.replace("  large: {prune.target: largest}\n",
                              "  zeroed: {prune.mode: {kind: zero, duration: {batches: 3}}}\n"
                              "  noisy: {prune.mode: {kind: gaussian, duration: {epochs: 1}}}\n")
    for plan in (p := plan_of(text), Plan.model_validate_json(p.model_dump_json())):
        modes = {c.id: c.schedules[0].mode for c in plan.configs if c.schedules}
        assert isinstance(modes["small"], PruneMode) and modes["small"].include_bn is True
        assert isinstance(modes["zeroed"], ZeroMode) and (modes["zeroed"].restore, modes["zeroed"].targets) == ("zero", "newest")
        assert isinstance(modes["noisy"], GaussianMode) and modes["noisy"].std == "matched"
        train = plan.config("small").resolved.train
        assert isinstance(train, TrainSpec) and train.precision == "fp32" and train.optimizer.betas == (0.9, 0.999)


def test_no_variants_means_one_default_variant(tmp_path):
    text = SMALL_SPEC.split("variants:")[0]
    plan = compile_file(str(write(tmp_path, text)))
    assert [c.id for c in plan.configs] == ["default"]
    assert [r.seed for r in plan.runs] == [0, 1]


def test_explicit_seed_list():
    plan = plan_of(SMALL_SPEC.replace("seeds: 2", "seeds: [3, 7]"))
    assert sorted({r.seed for r in plan.runs}) == [3, 7]


def test_set_overrides_apply_to_the_base(tmp_path):
    plan = compile_file(str(write(tmp_path, SMALL_SPEC)), [("train.epochs", 9), ("model.width", 0.5)])
    assert {r.epochs for r in plan.runs} == {9}
    assert plan.layers[-1].filters == 256
    with pytest.raises(SpecErrors, match="unknown key 'epoch'"):
        compile_file(str(write(tmp_path, SMALL_SPEC)), [("train.epoch", 8)])
    with pytest.raises(SpecErrors, match="outside 0..6") as info:
        compile_file(str(write(tmp_path, SMALL_SPEC)), [("train.epochs", 6)])
    assert "milestones [8] never take effect" in str(info.value)  # both problems, at once


def test_short_forms_expand_under_overrides():
    text = SMALL_SPEC.replace("model: {arch: vgg11_bn, width: 0.25}", "model: vgg11_bn")
    text = text.replace("  large: {prune.target: largest}\n", "  narrow: {model.width: 0.5}\n  zeroed:\n    prune.mode: zero\n    prune.mode.duration: {batches: 3}\n")
    plan = plan_of(text)
    assert plan.config("narrow").layers[0].filters == 32
    assert plan.config("zeroed").schedules[0].mode.model_dump(mode="json") == {"kind": "zero", "duration": {"batches": 3, "epochs": None},
                                                      "targets": "newest", "restore": "zero", "include_bn": False}


@pytest.mark.parametrize(
    "prune, message",
    [
        ("  layers:\n    - {select: conv5, amount: 0.5, rate: 0.1, schedule: {start: 1}}\n", "give one"),
        ("  rate: 0.1\n  layers:\n    - {select: conv5, amount: 0.5, schedule: {start: 1}}\n", "both amount"),
        ("  layers:\n    - {select: conv5, schedule: {start: 1}}\n", "give `amount`"),
        ("  layers:\n    - {select: conv5, rate: 0.3, schedule: {start: 1, end: 9, every: 2}}\n", "removes every filter"),
        ("  layers:\n    - {select: conv5, amount: 0.5}\n", "no schedule"),
        ("  scoring: activation_l1\n  layers:\n    - {select: conv5, amount: 0.5, schedule: {epochs: [0]}}\n",
         "cannot choose filters at epoch 0"),
        ("  schedule: {epochs: [0]}\n  layers:\n    - {select: conv5, amount: 0.5, schedule: {start: 1, end: 7, every: 2}}\n",
         "cannot merge with this entry's own start/end/every"),
        ("  layers:\n    - {select: conv5, amount: 0.5, schedule: {start: 1, end: 5}}\n", "`every` is needed"),
        ("  layers:\n    - {select: conv5, amount: 0.5, schedule: {start: 1, end: 20, every: 3}}\n", "outside 0..10"),
        ("  layers:\n    - {select: conv9, amount: 0.5, schedule: {start: 1}}\n", 'did you mean "conv'),
        ("  layers:\n    - {select: 'layer*', amount: 0.5, schedule: {start: 1}}\n", "glob 'layer*' matches no"),
        ("  layers:\n    - {select: 'conv*', amount: 0.5, schedule: {start: 1}}\n    - {select: conv2, amount: 0.5, schedule: {start: 1}}\n",
         "already selected by prune.layers[0]"),
    ],
)
def test_cross_field_errors(prune, message):
    errors = errors_of(with_prune(prune))
    assert any(message in e for e in errors), errors


def test_errors_from_overrides_point_at_the_override_and_name_the_configuration():
    text = SMALL_SPEC.replace("  large: {prune.target: largest}\n", "  large:\n    prune.layers[0].amount: 1.5\n")
    (error,) = errors_of(text)
    assert error.startswith("t.yaml:23:29: error: prune.layers[0].amount: expected less than 1")
    assert "(in configuration large)" in error


def test_identical_configurations_are_an_error():
    text = SMALL_SPEC.replace("  large: {prune.target: largest}\n", "  same: {prune.target: S}\n")
    assert any("resolves to the same runs as 'small'" in e for e in errors_of(text))


def test_milestones_must_fall_within_training():
    assert any("never take effect" in e for e in errors_of(SMALL_SPEC.replace("milestones: [8]", "milestones: [8, 10]")))


def test_sweep_path_that_applies_nowhere_is_an_error():
    text = SMALL_SPEC.split("variants:")[0] + "variants:\n  baseline: {prune: null}\nsweep:\n  prune.target: [S, L]\n"
    assert any("applies to no variant" in e for e in errors_of(text))


def test_parse_path():
    assert parse_path("prune.layers[3].amount") == ("prune", "layers", 3, "amount")
    assert parse_path("prune.layers.3.amount") == ("prune", "layers", 3, "amount")
    assert parse_path("a[1][2].b") == parse_path("a.1.2.b") == parse_path("a[1].2.b") == ("a", 1, 2, "b")
    for bad in ["", "a..b", "a.", ".a", "a[x]", "a[1", "a b", "1.a", "a.1b", "a.-1"]:
        assert parse_path(bad) is None, bad


# --- what users write ----------------------------------------------------------------------

def spec_with(name: str, model: str, epochs: int, layer: str) -> str:
    """A spec's first lines: name, model, digits, `epochs` of Adam, one pruned layer entry."""
    return (f"gstc: 1\nname: {name}\nmodel: {model}\ndata: {{dataset: digits}}\n"
            f"train: {{epochs: {epochs}, optimizer: {{name: adam, lr: 0.001}}}}\nprune:\n  layers:\n    - {layer}\n")


PAPER_NAMES = spec_with("caps", "{arch: vgg11_bn, width: 0.25}", 10,
                        "{select: conv8, amount: 0.5, schedule: {start: 2, end: 6, every: 2}}") + """\
variants:
  S: {prune.target: S}
  L: {prune.target: L}
  Prune_L: {prune.target: largest, prune.layers.0.amount: 0.3}
"""


def test_variant_names_may_have_capitals():
    # The paper's own notation: configuration ids name configurations, never files.
    plan = plan_of(PAPER_NAMES)
    assert [c.id for c in plan.configs] == ["S", "L", "Prune_L"]
    assert [c.schedules[0].target for c in plan.configs] == ["smallest", "largest", "largest"]
    assert errors_of(PAPER_NAMES.replace("  L:", "  -L:"))  # still a name: no leading punctuation
    bad = errors_of(PAPER_NAMES.replace("  L:", "  Big L:"))
    assert any("expected a name matching [A-Za-z0-9][A-Za-z0-9._-]*" in e for e in bad), bad
    assert any("[a-z0-9][a-z0-9._-]*" in e for e in errors_of(PAPER_NAMES.replace("name: caps", "name: Caps")))


SWEPT_EVERY = spec_with("swept", "{arch: resnet20, width: 0.25}", 100,
                        '{select: "layer3.*.conv2", amount: 0.5, schedule: {start: 10, end: 90}}') + """\
sweep:
  prune.layers[0].schedule.every: [30, 60]
"""


def test_a_base_may_leave_a_field_to_its_sweep():
    # Figure 4's natural form: the schedule's `every` comes from the sweep only.
    plan = plan_of(SWEPT_EVERY)
    assert [c.id for c in plan.configs] == ["default[prune.layers[0].schedule.every=30]",
                                            "default[prune.layers[0].schedule.every=60]"]
    assert [c.schedules[0].epochs for c in plan.configs] == [[10, 40, 70], [10, 70]]


def test_an_incomplete_base_names_the_configurations_left_incomplete():
    # `every` from one variant only: the error stands at the base's schedule node and names the others,
    # not the baseline (which has no pruning, so no schedule).
    text = SWEPT_EVERY.split("sweep:")[0] + ("variants:\n  every30: {prune.layers.0.schedule.every: 30}\n"
                                             "  left: {}\n  also: {train.epochs: 95}\n  baseline: {prune: null}\n")
    (error,) = errors_of(text)
    assert error.startswith("t.yaml:8:57: error: prune.layers[0].schedule: `every` is needed for events from 10 to 90")
    assert error.endswith("(in configurations left and also)")
    # Missing in every configuration: the base's error, said once without a configuration.
    (error,) = errors_of(SWEPT_EVERY.split("sweep:")[0])
    assert error.endswith("`every` is needed for events from 10 to 90"), error


def test_override_paths_with_dotted_indices_need_no_quotes_in_flow_style():
    text = SMALL_SPEC.replace("  large: {prune.target: largest}\n", "  heavy: {prune.layers.1.amount: 0.8}\n")
    plan = plan_of(text)
    heavy = {s.layer: s.amount for s in plan.config("heavy").schedules}
    assert heavy == {"conv5": 0.5, "conv7": 0.8, "conv8": 0.8}
    # the same override as prune.layers[1].amount (block style) is the same configuration, same runs
    bracket = SMALL_SPEC.replace("  large: {prune.target: largest}\n", "  heavy:\n    prune.layers[1].amount: 0.8\n")
    assert [r.id for r in plan_of(bracket).runs] == [r.id for r in plan.runs]
    swept = plan_of(SMALL_SPEC + "sweep: {prune.layers.1.amount: [0.6, 0.7]}\n")
    assert "small[prune.layers[1].amount=0.6]" in [c.id for c in swept.configs]  # ids spell paths one way


# --- architectures and datasets from outside ----------------------------------------------

OWN = """\
gstc: 1
name: own
model: {arch: "mylab.nets:WideVGG", args: {depth: 16}, layers: own.layers.json}
data: {dataset: cifar10}
train: {epochs: 4, optimizer: {name: adam, lr: 0.001}}
prune: {schedule: {start: 1}, layers: [{select: "features.*", amount: 0.5}]}
"""


def own_layers(folder, filters=(32, 64)):
    from gstc.archs import layer_file_text

    rows = [{"name": f"features.{3 * i}", "filters": f, "after": "bn", "groups": 1} for i, f in enumerate(filters)]
    cost = {"params": [[9, [0, {"features.0": 1}], [3, {}]]], "macs": []}  # what the compiler reads of it, not checked
    (folder / "own.layers.json").write_text(layer_file_text(
        [{"arch": "mylab.nets:WideVGG", "args": {"depth": 16}, "input": [3, 32, 32], "classes": 10, "layers": rows,
          "cost": cost}]))


def test_an_import_path_architecture_plans_from_its_layer_file(tmp_path):
    own_layers(tmp_path)
    plan = compile_file(str(write(tmp_path, OWN)))
    assert [(l.name, l.filters) for l in plan.layers] == [("features.0", 32), ("features.3", 64)]
    assert [s.kept[-1] for s in plan.configs[0].schedules] == [16, 32]
    assert plan.paths == [str(tmp_path.resolve())]  # the runtime imports mylab from the spec's folder first


@pytest.mark.parametrize("change, message", [
    ('args: {depth: 16}, layers: own.layers.json', "needs a layer file: add `layers: NAME.layers.json`"),
    ('args: {depth: 16}, layers: own.layers.json, width: 0.5', "width applies to the built-in architectures"),
    ('args: {depth: 12}, layers: own.layers.json', "has no table for mylab.nets:WideVGG with args {\"depth\": 12}"),
])
def test_own_architecture_errors_say_what_to_do(tmp_path, change, message):
    own_layers(tmp_path)
    text = OWN.replace("args: {depth: 16}, layers: own.layers.json", change)
    if "needs a layer file" in message:
        text = text.replace(", layers: own.layers.json", "")
    errors = errors_of(text.replace("own.layers.json", str(tmp_path / "own.layers.json")))
    assert any(message in e for e in errors), errors


def test_built_in_architectures_refuse_args_and_layer_files():
    assert any("args apply to non-built-in architectures" in e
               for e in errors_of(SMALL_SPEC.replace("arch: vgg11_bn", "arch: vgg11_bn, args: {x: 1}")))
    assert any("unknown architecture 'vgg16'" in e and "torchvision.NAME" in e
               for e in errors_of(SMALL_SPEC.replace("arch: vgg11_bn", "arch: vgg16")))


def test_datasets_check_their_own_fields():
    base = SMALL_SPEC.replace("dataset: digits", "dataset: imagefolder")
    assert any("imagefolder needs image_size" in e for e in errors_of(base))
    assert plan_of(base.replace("dataset: imagefolder", "dataset: imagefolder, image_size: 24"))
    assert any("image_size and channels apply to imagefolder" in e
               for e in errors_of(SMALL_SPEC.replace("dataset: digits", "dataset: mnist, image_size: 24")))
    assert any("unknown dataset 'minst'" in e and 'did you mean "mnist"' in e
               for e in errors_of(SMALL_SPEC.replace("dataset: digits", "dataset: minst")))
    assert plan_of(SMALL_SPEC.replace("dataset: digits", 'dataset: "mylab.data:images", args: {n: 3}'))


def test_a_non_finite_base_value_that_every_configuration_overrides_compiles():
    """Rule: the spec hash of a base left to its configurations hashes what it says, .inf included (strict JSON
    has no infinity: the hash writes it as text)."""
    text = """\
gstc: 1
name: r
model: {arch: vgg11_bn, width: 0.25}
data: {dataset: digits}
train: {epochs: 4, optimizer: {name: adam, lr: 0.001}}
prune: {layers: [{select: conv8, amount: .inf, schedule: {epochs: [1, 3]}}]}
sweep: {prune.layers.0.amount: [0.3, 0.6]}
"""
    plan, errors = check(load_text(text, "r.yaml"))
    assert errors == [] and len(plan.configs) == 2
    other, _ = check(load_text(text.replace(".inf", "-.inf"), "r.yaml"))
    assert other.spec_hash != plan.spec_hash


def test_a_plan_stores_each_configurations_events_once_and_its_runs_get_them_back(small_spec):
    """A sweep of 22,000 runs repeated every configuration's events in each run (a 125 MB plan): the JSON holds them
    once per configuration, and a plan read from JSON gives each run its configuration's events again. A plan
    written the old way (events in every run) still loads, to the same plan."""
    import json

    from gstc.plan import Plan

    plan = compile_file(str(small_spec))
    doc = json.loads(plan.model_dump_json())
    assert all("events" not in r for r in doc["runs"])
    with_events = {c["id"] for c in doc["configs"] if c.get("events")}
    assert with_events == {c.id for c in plan.configs if c.schedules} and "baseline" not in with_events
    back = Plan.model_validate_json(plan.model_dump_json())
    assert back == plan and sum(len(r.events) for r in back.runs) == sum(len(r.events) for r in plan.runs) > 0
    for run in back.runs:
        if run.events:  # one list per configuration, shared by its runs
            assert run.events is back.config(run.config).events
    old = json.loads(plan.model_dump_json())
    events = {c["id"]: c.pop("events", []) for c in old["configs"]}
    for r in old["runs"]:
        r["events"] = events[r["config"]]
    assert Plan.model_validate(old) == plan
