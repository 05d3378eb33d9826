"""`gstc export-model`: a run's model with its removed channels cut out, saved, loadable without gstc, and measured;
and the counts that the plan shows, the run records and the exported model has are one number."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gstc.cli import app
from gstc.jsonio import read_jsonl
from gstc.paths import ResultsDir
from tests.runtime.conftest import compile_text, run_plan, spec_text

torch = pytest.importorskip("torch")

from gstc.runtime.export_run import find_run, load_run_model  # noqa: E402

SPEC = spec_text(width=0.125, epochs=2, prune="""\
    prune:
      scoring: l1
      schedule: {start: 1}
      layers: [{select: "conv[5-8]", amount: 0.5}]
    variants: {pruned: {}, kept_bn: {prune.mode: {kind: prune, include_bn: false}}}
    """)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    (folder / "t.yaml").write_text(SPEC)
    plan = compile_text(SPEC)
    results = ResultsDir(folder / "results")
    run_plan(plan, results)
    return folder, plan, results


def test_an_exported_model_loads_without_gstc_and_computes_what_the_masked_one_did(trained):
    folder, plan, results = trained
    run = next(r for r in plan.runs if r.config == "pruned")
    out = CliRunner().invoke(app, ["export-model", run.id, "--out", str(results.root), "--batch", "4"])
    assert out.exit_code == 0, out.output
    report = json.loads((results.export_dir(run.id) / "export.json").read_text())
    last = read_jsonl(results.epochs_jsonl(run.id))[-1]
    # the run recorded, gstc counts, and the exported model has the same parameters and MACs
    assert report["params"]["exported"] == report["params"]["counted"] == last["params"] < report["params"]["unpruned"]
    assert report["macs"]["exported"] == report["macs"]["counted"] == last["macs"] < report["macs"]["unpruned"]
    assert report["removed"] == {f"conv{i}": 32 for i in (5, 6, 7, 8)}  # half of 64 (width 0.125)
    assert report["max_output_difference"] < 1e-12
    program = torch.export.load(str(results.export_dir(run.id) / "model.pt2")).module()
    masked, _, shape = load_run_model(plan, run, results)
    x = torch.randn(7, *shape)  # another batch size than the one it was exported with
    with torch.no_grad():
        assert torch.allclose(program(x), masked(x), atol=1e-5, rtol=1e-5)
    assert "parameters" in out.stdout and "CPU ms per batch of 4" in out.stdout


def test_filters_pruned_without_their_bn_are_not_removed(trained):
    """Their channel still carries the BN's shift: the exported model keeps them, and the counts say so."""
    folder, plan, results = trained
    run = next(r for r in plan.runs if r.config == "kept_bn")
    last = read_jsonl(results.epochs_jsonl(run.id))[-1]
    first = read_jsonl(results.epochs_jsonl(run.id))[0]
    assert last["params"] == first["params"] and last["kept"]["conv5"] == 32


def test_the_plans_counts_are_the_runs(trained):
    folder, plan, results = trained
    out = CliRunner().invoke(app, ["plan", str(folder / "t.yaml"), "--json"])
    counts = {c["id"]: c["counts"] for c in json.loads(out.stdout)["configs"]}
    for run in plan.runs:
        last = read_jsonl(results.epochs_jsonl(run.id))[-1]
        assert [counts[run.config]["params"][1], counts[run.config]["macs"][1]] == [last["params"], last["macs"]]


def test_an_unknown_run_is_an_error_that_says_where_it_looked(trained):
    folder, plan, results = trained
    out = CliRunner().invoke(app, ["export-model", "0123456789ab", "--out", str(results.root)])
    assert out.exit_code == 1 and "no run 0123456789ab" in out.stderr and "Traceback" not in out.output
    assert find_run(results, plan.runs[0].id)[1] == plan.runs[0]
