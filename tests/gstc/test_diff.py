"""`gstc diff`: configuration and plan differences, and metrics checked against scipy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.diff import PROVENANCE, compare
from gstc.manifest import ResultsDir, write_json, write_manifest
from tests.conftest import SMALL_SPEC, write

runner = CliRunner()
SPEC = SMALL_SPEC.replace("seeds: 2", "seeds: 5")


def fake_results(spec, results: ResultsDir, best: dict[str, list[float]], environment: dict | None = None) -> None:
    """run.json files as a finished `gstc run` leaves them (only what the manifest reads)."""
    plan = compile_file(str(spec))
    for run in plan.runs:
        acc = best[run.config][run.seed]
        write_json(results.run_json(run.id), {"id": run.id, "config": run.config, "seed": run.seed, "status": "done",
                                              "seconds": 1.0, "environment": environment or {},
                                              "summary": {"best_test_acc": acc, "best_epoch": 9,
                                              "gen_gap": 100 - acc, "mean_stability": 95.0, "final_params": 1000}})


@pytest.fixture
def two(tmp_path):
    a = write(tmp_path, SPEC, "a.yaml")
    b = write(tmp_path, SPEC.replace("lr: 0.001", "lr: 0.0003").replace("amount: 0.5", "amount: 0.25"), "b.yaml")
    results = ResultsDir(tmp_path / "results")
    base = [80.0, 81.0, 82.0, 80.5, 81.5]
    fake_results(a, results, {"baseline": base, "small": base, "large": base})
    fake_results(b, results, {"baseline": [x + 5 for x in base], "small": base, "large": [x - 3 for x in base]})
    return a, b, results


def test_configuration_and_plan_differences_without_results(tmp_path):
    a = write(tmp_path, SPEC, "a.yaml")
    b = write(tmp_path, SPEC.replace("lr: 0.001", "lr: 0.0003").replace("  large: {prune.target: largest}\n", ""), "b.yaml")
    out = runner.invoke(app, ["diff", str(a), str(b), "--format", "json", "--out", str(tmp_path / "none")])
    assert out.exit_code == 0, out.stderr
    report = json.loads(out.stdout)
    assert {(r["config"], r["path"], r["a"], r["b"]) for r in report["config"]} == {
        (c, "train.optimizer.lr", 0.001, 0.0003) for c in ("baseline", "small")}
    assert report["plan"]["configs_only_a"] == ["large"] and report["plan"]["runs_shared"] == 0
    assert len(report["plan"]["runs_only_a"]) == 15 and report["metrics"] == []
    shown = runner.invoke(app, ["diff", str(a), str(b), "--out", str(tmp_path / "none")], env={"COLUMNS": "200"})
    assert "train.optimizer.lr" in shown.stdout and "only in A: large" in shown.stdout


def test_paper_specs_differ_in_scoring_only_where_expected():
    out = runner.invoke(app, ["diff", "specs/paper/fig2-vgg11.yaml", "specs/paper/figB2-vgg11-ebn.yaml", "--format", "json"])
    report = json.loads(out.stdout)
    assert {(r["path"], r["a"], r["b"]) for r in report["config"]} == {("prune.scoring", "l2", "ebn")}
    assert set(report["plan"]["configs_only_a"]) == {"baseline", "prune-r-13pct", "scratch"}


def test_metrics_match_scipy_and_mark_significance(two):
    a, b, results = two
    out = runner.invoke(app, ["diff", str(a), str(b), "--format", "json", "--out", str(results.root)])
    assert out.exit_code == 0, out.stderr
    rows = {(r["config"], r["metric"]): r for r in json.loads(out.stdout)["metrics"]}
    base = np.array([80.0, 81.0, 82.0, 80.5, 81.5])
    row = rows["baseline", "best_test_acc"]
    assert row["diff"] == pytest.approx(5.0)
    diff = lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis)  # noqa: E731
    p = stats.permutation_test((base, base + 5), diff, permutation_type="independent", vectorized=True,
                               n_resamples=10_000).pvalue  # exact: C(10, 5) = 252 splits
    assert row["p"] == pytest.approx(p) and row["significant"]
    assert row["diff_ci_low"] <= 5.0 <= row["diff_ci_high"]
    assert row["a"]["mean"] == pytest.approx(base.mean()) and row["b"]["n"] == 5
    same = rows["small", "best_test_acc"]
    assert same["diff"] == 0 and same["p"] == 1.0 and not same["significant"]
    assert rows["small", "final_params"]["diff"] == 0


def test_fail_if_worse_and_markdown(two):
    a, b, results = two
    # B's baseline is better (+5) and its `large` worse (-3) in every seed: both significant (exact p = 0.008).
    worse = runner.invoke(app, ["diff", str(a), str(b), "--out", str(results.root), "--fail-if-worse", "best_test_acc"])
    assert worse.exit_code == 1 and "large: best_test_acc is significantly worse in B" in worse.stderr
    better = runner.invoke(app, ["diff", str(b), str(a), "--out", str(results.root), "--fail-if-worse", "gen_gap"])
    assert better.exit_code == 1 and "baseline: gen_gap is significantly worse in B" in better.stderr
    md = runner.invoke(app, ["diff", str(a), str(b), "--out", str(results.root), "--format", "md", "--precision", "3"])
    assert md.exit_code == 0
    assert "| config | metric | A | B | B - A | p |  |" in md.stdout
    assert "| baseline | best_test_acc | 81 [80.4, 81.6] n=5 |" in md.stdout
    bad = runner.invoke(app, ["diff", str(a), str(b), "--fail-if-worse", "best_epoch"])
    assert bad.exit_code == 1 and "no better direction" in bad.stderr


def test_compare_edge_cases():
    assert compare([], [1.0])["diff"] is None
    assert compare([1.0], [2.0]) == {"diff": 1.0, "diff_ci_low": None, "diff_ci_high": None, "p": None}
    assert compare([1.0, 1.0], [1.0, 1.0])["p"] == 1.0


ENV = {"gstc": "0.1.0", "source": {"commit": "a" * 40, "dirty": False}, "python": "3.11.7", "host": "node1",
       "torch": "2.14.1", "cuda": "13.0", "cudnn": 92400, "device": "cuda: NVIDIA H200", "threads": 16}


def test_results_from_different_code_show_in_a_provenance_section(tmp_path):
    # The same spec run twice, by two commits of gstc (the second with uncommitted changes) and two torch
    # versions: the numbers alone would hide it; the provenance section shows it, and nothing else differs.
    spec = write(tmp_path, SPEC, "a.yaml")
    manifests = []
    for name, env in (("A", ENV), ("B", {**ENV, "source": {"commit": "b" * 40, "dirty": True}, "torch": "2.15.0"})):
        results = ResultsDir(tmp_path / name)
        base = [80.0, 81.0, 82.0, 80.5, 81.5]
        fake_results(spec, results, {"baseline": base, "small": base, "large": base}, env)
        manifests.append(write_manifest(compile_file(str(spec)), results))
    out = runner.invoke(app, ["diff", *map(str, manifests), "--format", "json"])
    assert out.exit_code == 0, out.stderr
    rows = {r["field"]: r for r in json.loads(out.stdout)["provenance"]}
    assert set(rows) == {"source", "torch"}
    assert rows["source"]["a"] == {"aaaaaaaaaaaa": 15} and rows["source"]["b"] == {"bbbbbbbbbbbb (uncommitted changes)": 15}
    text = runner.invoke(app, ["diff", *map(str, manifests)], env={"COLUMNS": "250"}).stdout
    assert "Provenance" in text and "aaaaaaaaaaaa (15 runs)" in text and "bbbbbbbbbbbb (uncommitted changes) (15 runs)" in text
    same = runner.invoke(app, ["diff", str(manifests[0]), str(manifests[0]), "--format", "json"])
    assert json.loads(same.stdout)["provenance"] == []  # one code, one environment: no section
    every = runner.invoke(app, ["diff", str(manifests[0]), str(manifests[0]), "--format", "json", "--all"])
    assert [r["field"] for r in json.loads(every.stdout)["provenance"]] == list(PROVENANCE)


def test_runs_without_provenance_read_as_unknown(tmp_path):
    # results of gstc 0.1.0 recorded no version or commit
    spec = write(tmp_path, SPEC, "a.yaml")
    base = [80.0, 81.0, 82.0, 80.5, 81.5]
    old, new = ResultsDir(tmp_path / "old"), ResultsDir(tmp_path / "new")
    fake_results(spec, old, {"baseline": base, "small": base, "large": base}, {"torch": "2.14.1"})
    fake_results(spec, new, {"baseline": base, "small": base, "large": base}, ENV)
    plan = compile_file(str(spec))
    out = runner.invoke(app, ["diff", str(write_manifest(plan, old)), str(write_manifest(plan, new)), "--format", "json"])
    rows = {r["field"]: r for r in json.loads(out.stdout)["provenance"]}
    assert rows["gstc"]["a"] == {"unknown": 15} and rows["source"]["a"] == {"unknown": 15} and "torch" not in rows
