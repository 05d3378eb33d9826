"""The torch-free CLI: validate, plan, layers, schema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.plan import Plan
from gstc.spec import VARIANT_PATTERN
from tests.conftest import REPO, SMALL_SPEC, write

runner = CliRunner()


def test_validate_ok_and_failing_files(tmp_path, small_spec):
    bad = write(tmp_path, SMALL_SPEC.replace("epochs: 10", "epochs: ten"), "bad.yaml")
    ok = runner.invoke(app, ["validate", str(small_spec)])
    assert ok.exit_code == 0 and "ok (3 configurations, 6 runs)" in ok.stdout
    both = runner.invoke(app, ["validate", str(small_spec), str(bad)])
    assert both.exit_code == 1
    assert f"{bad}:8:11: error: train.epochs: expected a valid integer, found \"ten\"" in both.stderr
    assert "1 error in 1 of 2 file(s)" in both.stderr


def test_validate_walks_a_folder_for_yaml_and_yml_files(tmp_path):
    """A CI job validates a folder of specs: every *.yaml and *.yml under it, nested ones too, in a stable order."""
    write(tmp_path / "specs", SMALL_SPEC, "a.yaml")
    write(tmp_path / "specs" / "more", SMALL_SPEC.replace("name: small", "name: b"), "b.yml")
    write(tmp_path / "specs" / "more", SMALL_SPEC.replace("epochs: 10", "epochs: ten"), "c.yaml")
    (tmp_path / "specs" / "notes.txt").write_text("not a spec")
    out = runner.invoke(app, ["validate", str(tmp_path / "specs")])
    assert out.exit_code == 1
    assert [line.split(":")[0] for line in out.stdout.splitlines()] == [
        str(tmp_path / "specs" / "a.yaml"), str(tmp_path / "specs" / "more" / "b.yml")]
    assert f"{tmp_path / 'specs' / 'more' / 'c.yaml'}:8:11: error" in out.stderr and "in 1 of 3 file(s)" in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(app, ["validate", str(empty)])
    assert none.exit_code == 1 and f"{empty} holds no *.yaml or *.yml file" in none.stderr


def test_validate_json_and_github_formats(tmp_path, small_spec):
    bad = write(tmp_path, SMALL_SPEC.replace("dataset: digits", "dataset: digit"), "bad.yaml")
    out = runner.invoke(app, ["validate", "--format", "json", str(small_spec), str(bad)])
    assert out.exit_code == 1
    doc = json.loads(out.stdout)
    assert doc[0] == {"file": str(small_spec), "valid": True, "errors": [], "configs": 3, "runs": 6}
    (error,) = doc[1]["errors"]
    assert (error["line"], error["col"], error["path"]) == (6, 17, "data.dataset")
    assert 'did you mean "digits"' in error["message"]
    gh = runner.invoke(app, ["validate", "--format", "github", str(bad)])
    assert gh.exit_code == 1
    assert gh.stdout.startswith(f"::error file={bad},line=6,col=17::data.dataset: unknown dataset")


def test_plan_json_is_the_compiled_plan(small_spec):
    out = runner.invoke(app, ["plan", str(small_spec), "--json"])
    assert out.exit_code == 0
    assert Plan.model_validate_json(out.stdout) == compile_file(str(small_spec))


def test_plan_table_shows_configurations_and_schedules(small_spec):
    out = runner.invoke(app, ["plan", str(small_spec)], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert "3 configurations x 2 seeds (0, 1) = 6 runs" in out.stdout
    for text in ("baseline", "large: per-layer schedule", "conv5", "1, 3, 5, 7", "l2/largest/prune"):
        assert text in out.stdout


def test_plan_shows_config_ids_with_brackets(tmp_path):
    spec = write(tmp_path, SMALL_SPEC + "sweep:\n  train.batch_size: [32, 64]\n")
    out = runner.invoke(app, ["plan", str(spec), "--config", "small[train.batch_size=32]"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.stderr
    assert "small[train.batch_size=32]: per-layer schedule" in out.stdout
    missing = runner.invoke(app, ["plan", str(spec), "--config", "nope"])
    assert missing.exit_code == 1 and "no configuration 'nope'" in missing.stderr


def test_plan_set_overrides(small_spec):
    out = runner.invoke(app, ["plan", str(small_spec), "--json", "--set", "train.epochs=9", "--set", "train.optimizer.lr=1e-2"])
    assert out.exit_code == 0, out.stderr
    plan = Plan.model_validate_json(out.stdout)
    assert {r.epochs for r in plan.runs} == {9}
    assert plan.configs[0].resolved.train.optimizer.lr == 0.01
    bad = runner.invoke(app, ["plan", str(small_spec), "--set", "train.epochs"])
    assert bad.exit_code == 1 and bad.stderr == "error: --set: expected PATH=VALUE, found 'train.epochs'\n"


@pytest.mark.parametrize("value, expected", [
    ("train.epochs=abc", '--set train.epochs=abc: error: train.epochs: expected a valid integer, found "abc"'),
    ("prune.nosuch=1", "--set prune.nosuch=1: error: prune.nosuch: unknown key 'nosuch' in prune"),
    ("prune.layers.0.amount=2", "--set prune.layers.0.amount=2: error: prune.layers[0].amount: expected less than 1"),
])
def test_an_overrides_error_names_the_override_not_a_line_of_the_file(small_spec, value, expected):
    """A value given by --set is on no line of the spec: its error is reported at the option that gave it."""
    out = runner.invoke(app, ["plan", str(small_spec), "--set", value])
    assert out.exit_code == 1 and out.stderr.startswith(expected), out.stderr
    assert str(small_spec) not in out.stderr


@pytest.mark.parametrize("args, expected", [
    (["--pack", "abc"], "error: --pack: expected a positive integer or 'auto', found 'abc'\n"),
    (["--device", "tpu"], "error: --device: expected auto, cpu, cuda or cuda:N, found 'tpu'\n"),
    (["--out", "FILE"], "error: --out: FILE is a file; the results go in a folder\n"),
])
def test_bad_run_options_are_clear_errors_before_anything_runs(tmp_path, small_spec, args, expected):
    """Bad input on the command line exits 1 with the option and what it expects, never an internal error."""
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    out = runner.invoke(app, ["run", str(small_spec), *args])
    assert out.exit_code == 1 and out.stderr == expected.replace("FILE", str(tmp_path / "FILE")), out.stderr


def test_layers_lists_names_and_counts():
    out = runner.invoke(app, ["layers", "resnet20", "--json", "--width", "0.5"])
    assert out.exit_code == 0
    table = json.loads(out.stdout)
    assert len(table) == 18 and table[0] == {"name": "layer1.0.conv1", "filters": 8, "after": "bn", "groups": 1} and table[-1]["filters"] == 32
    unknown = runner.invoke(app, ["layers", "resnet50"])
    assert unknown.exit_code == 1 and 'did you mean "resnet56"' in unknown.stderr


def test_schema_command_matches_the_committed_file(tmp_path):
    # Both forms, byte for byte: what editors load (schema/gstc.schema.json) is what `gstc schema` prints.
    committed = (REPO / "schema" / "gstc.schema.json").read_text()
    out = runner.invoke(app, ["schema", "--out", str(tmp_path / "s.json")])
    assert out.exit_code == 0
    assert (tmp_path / "s.json").read_text() == committed
    printed = runner.invoke(app, ["schema"])
    assert printed.exit_code == 0 and printed.stdout == committed
    assert json.loads(committed)["properties"]["variants"]["propertyNames"]["pattern"] == VARIANT_PATTERN


@pytest.mark.parametrize("args", [["validate", "{missing}"], ["plan", "{missing}"]])
def test_real_process_exit_status_and_no_traceback(tmp_path, args):
    argv = [a.format(missing=tmp_path / "nope.yaml") for a in args]
    proc = subprocess.run([sys.executable, "-m", "gstc", *argv], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "cannot read the file" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("spec", ["examples/quickstart.yaml", "examples/lottery.yaml", "examples/moving-masks.yaml"])
def test_plan_tables_keep_names_and_ids_whole_in_80_columns(spec):
    """In an 80-column terminal the plan's tables fit, and no configuration, layer, scoring, run id or count is cut
    across lines (`scoring/t arget/mod e` was)."""
    plan = compile_file(str(REPO / spec))
    out = runner.invoke(app, ["plan", str(REPO / spec)], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.stderr
    table_lines = [line for line in out.stdout.splitlines() if "  " in line.strip()]  # rows: cells apart
    assert table_lines and max(map(len, table_lines)) <= 80
    words = set(out.stdout.split())
    scheduled = [s for c in plan.configs if not c.chain for s in c.schedules]  # a lottery shows its levels instead
    whole = {c.id for c in plan.configs} | {s.layer for s in scheduled}
    whole |= {f"{s.scoring}/{s.target}/{s.mode.kind}" for s in scheduled}
    whole |= {ids[0] for c in plan.configs if c.chain for ids in c.chain}  # each level's run (first seed)
    assert whole <= words, whole - words
