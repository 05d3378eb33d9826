"""What a spec may prune of a model: refused layers are errors with their reason, coupled layers are one group.

The layer file here is written by hand (the compiler reads it without torch): a stem and a
block's projection that a residual sum couples, an expansion conv with followers, a
depthwise conv and a conv whose channels reach a LayerNorm, both refused.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from gstc.archs import layer_file_text
from gstc.compile import check, compile_file
from gstc.errors import SpecErrors
from gstc.load import load_file

LAYERS = [
    {"name": "stem", "filters": 16, "after": "bn", "groups": 1, "coupled": ["project"]},
    {"name": "expand", "filters": 32, "after": "bn", "groups": 1, "followers": ["dw", "dw_bn"]},
    {"name": "dw", "filters": 32, "after": "bn", "groups": 32, "refused": "a depthwise conv: its channels are expand's"},
    {"name": "project", "filters": 16, "after": "bn", "groups": 1, "coupled": ["stem"]},
    {"name": "head", "filters": 8, "after": "conv", "groups": 1,
     "refused": "norm (LayerNorm) normalizes over channels: it re-centres a zeroed channel"},
]
COST = {"params": [[9, [0, {"stem": 1}], [3, {}]], [1, [0, {"expand": 1}], [0, {"stem": 1}]], [11, [0, {"expand": 1}], None],
                   [1, [0, {"stem": 1}], [0, {"expand": 1}]], [2, [0, {"stem": 1}], None], [72, None, [0, {"stem": 1}]]],
        "macs": [[9216, [0, {"stem": 1}], [3, {}]], [1024, [0, {"expand": 1}], [0, {"stem": 1}]]]}


def spec(tmp_path, layers: str, extra: str = "", **prune) -> str:
    (tmp_path / "m.layers.json").write_text(layer_file_text(
        [{"arch": "mylab:Net", "args": {}, "input": [3, 32, 32], "classes": 10, "layers": LAYERS, "cost": COST}]))
    path = tmp_path / "s.yaml"
    options = "".join(f"\n  {k}: {v}" for k, v in prune.items())
    path.write_text(textwrap.dedent("""\
        gstc: 1
        name: s
        model: {arch: "mylab:Net", layers: m.layers.json}
        data: {dataset: cifar10}
        train: {epochs: 4, optimizer: {name: sgd, lr: 0.1}}
        prune:
          schedule: {start: 1, end: 3, every: 2}""") + options + "\n  layers:\n"
                    + "".join(f"    - {entry}\n" for entry in layers.split(";")) + extra)
    return str(path)


def errors(path: str) -> list[str]:
    _, errs = check(load_file(path))
    return [e.format() for e in errs]


def test_a_refused_layer_is_an_error_with_its_reason_on_the_select(tmp_path):
    errs = errors(spec(tmp_path, "{select: dw, amount: 0.5}"))
    assert len(errs) == 1 and ":9:" in errs[0] and "prune.layers[0].select" in errs[0]
    assert "layer dw cannot be pruned: a depthwise conv: its channels are expand's" in errs[0]
    many = errors(spec(tmp_path, "{select: '*', amount: 0.5}"))
    assert "2 of the 5 layers this selects cannot be pruned (dw: a depthwise" in many[0] and "head: norm (LayerNorm)" in many[0]


def test_coupled_layers_are_selected_together_with_one_schedule(tmp_path):
    alone = errors(spec(tmp_path, "{select: stem, amount: 0.5}"))
    assert len(alone) == 1 and "stem writes the same channels as project (a residual sum adds them)" in alone[0]
    assert "select all 2 of them with one schedule; not selected: project" in alone[0]
    differ = errors(spec(tmp_path, "{select: stem, amount: 0.5};{select: project, amount: 0.25}"))
    assert len(differ) == 1 and "prune.layers[1].select" in differ[0] and "project differ from stem" in differ[0]
    plan = compile_file(spec(tmp_path, "{select: stem, amount: 0.5};{select: project, amount: 0.5};{select: expand, amount: 0.5}"))
    events = [(e.epoch, e.layer, e.prune) for e in plan.runs[0].events]
    assert events == [(1, "stem", 4), (1, "expand", 8), (1, "project", 4), (3, "stem", 4), (3, "expand", 8), (3, "project", 4)]


@pytest.mark.parametrize("option, words", [("scoring: activation_l1", "activation_l1 reads one conv's output"),
                                           ("mode: {kind: gaussian, duration: {batches: 2}}", "gaussian noise perturbs")])
def test_a_coupled_group_takes_no_scoring_or_mode_of_one_conv(tmp_path, option, words):
    key, value = option.split(": ", 1)
    errs = errors(spec(tmp_path, "{select: stem, amount: 0.5};{select: project, amount: 0.5}", **{key: value}))
    assert len(errs) == 1 and words in errs[0]


def test_what_a_layer_prunes_with_it_is_in_its_run_ids_only_where_it_prunes(tmp_path):
    """Rule: a layer pruned alone hashes as it always did; followers and coupled layers name what else it prunes."""
    base = {r.config: r.id for r in compile_file(spec(tmp_path, "{select: expand, amount: 0.5}",
                                                      "variants: {pruned: {}, dense: {prune: null}}\n")).runs}
    changed = [dict(l, followers=["dw"]) if l["name"] == "expand" else l for l in LAYERS]
    (tmp_path / "m.layers.json").write_text(layer_file_text(
        [{"arch": "mylab:Net", "args": {}, "input": [3, 32, 32], "classes": 10, "layers": changed, "cost": COST}]))
    plan = compile_file(str(tmp_path / "s.yaml"))
    after = {r.config: r.id for r in plan.runs}
    assert after["dense"] == base["dense"] and after["pruned"] != base["pruned"]


def test_gstc_plan_shows_the_counts_of_the_layer_files_cost(tmp_path):
    from typer.testing import CliRunner

    from gstc.cli import app

    path = spec(tmp_path, "{select: expand, amount: 0.5}")
    out = CliRunner().invoke(app, ["plan", path, "--json"])
    assert out.exit_code == 0, out.output
    counts = json.loads(out.stdout)["configs"][0]["counts"]
    # 16 stem, 32 -> 16 expand filters: 9*16*3 + 16*32 + 11*32 + 32*16 + 2*16 + 72*16 before (MACs alike)
    assert counts["params"] == [432 + 512 + 352 + 512 + 32 + 1152, 432 + 256 + 176 + 256 + 32 + 1152]
    assert counts["macs"] == [9216 * 48 + 1024 * 512, 9216 * 48 + 1024 * 256]


def test_an_old_layer_file_asks_to_be_rewritten(tmp_path):
    path = spec(tmp_path, "{select: expand, amount: 0.5}")
    data = json.loads((tmp_path / "m.layers.json").read_text())
    (tmp_path / "m.layers.json").write_text(json.dumps({**data, "gstc_layers": 1}))
    with pytest.raises(SpecErrors) as info:
        compile_file(path)
    message = info.value.errors[0].message
    assert "written by an older gstc (format 1)" in message and f"gstc layers {path} --write" in message
