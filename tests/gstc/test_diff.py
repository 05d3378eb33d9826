"""`gstc diff`: configuration and plan differences, and metrics checked against scipy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.provenance import PROVENANCE
from gstc.jsonio import write_json
from gstc.manifest import write_manifest
from gstc.paths import ResultsDir
from gstc.stats import summarize
from tests.conftest import SMALL_SPEC, write

runner = CliRunner()
SPEC = SMALL_SPEC.replace("seeds: 2", "seeds: 10")
# Ten seeds' best accuracies spread over 4.5 points: what seed-to-seed variation looks like.
BASE = [80.0, 81.0, 82.0, 80.5, 81.5, 83.0, 79.5, 82.5, 80.2, 84.0]


def fake_results(spec, results: ResultsDir, best: dict[str, list[float]], environment: dict | None = None,
                 stability: dict[str, list[float]] | None = None) -> None:
    """run.json files as a finished `gstc run` leaves them (only what the manifest reads); values by seed."""
    plan = compile_file(str(spec))
    for run in plan.runs:
        acc = best[run.config][run.seed % len(best[run.config])]
        stab = (stability or {}).get(run.config, [95.0] * 10)[run.seed % 10]
        write_json(results.run_json(run.id), {"id": run.id, "config": run.config, "seed": run.seed, "status": "done",
                                              "seconds": 1.0, "environment": environment or {},
                                              "summary": {"best_test_acc": acc, "best_epoch": 9,
                                              "gen_gap": 100 - acc, "mean_stability": stab, "final_params": 1000}})


@pytest.fixture
def two(tmp_path):
    a = write(tmp_path, SPEC, "a.yaml")
    b = write(tmp_path, SPEC.replace("lr: 0.001", "lr: 0.0003").replace("amount: 0.5", "amount: 0.25"), "b.yaml")
    results = ResultsDir(tmp_path / "results")
    fake_results(a, results, {"baseline": BASE, "small": BASE, "large": BASE})
    fake_results(b, results, {"baseline": [x + 5 for x in BASE], "small": BASE, "large": [x - 3 for x in BASE]})
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
    assert len(report["plan"]["runs_only_a"]) == 30 and report["metrics"] == []
    shown = runner.invoke(app, ["diff", str(a), str(b), "--out", str(tmp_path / "none")], env={"COLUMNS": "200"})
    assert "train.optimizer.lr" in shown.stdout and "only in A: large" in shown.stdout


def test_paper_specs_differ_in_scoring_only_where_expected():
    out = runner.invoke(app, ["diff", "specs/paper/fig2-vgg11.yaml", "specs/paper/figB2-vgg11-ebn.yaml", "--format", "json"])
    report = json.loads(out.stdout)
    assert {(r["path"], r["a"], r["b"]) for r in report["config"]} == {("prune.scoring", "l2", "ebn")}
    assert set(report["plan"]["configs_only_a"]) == {"baseline", "prune-r-13pct", "scratch"}


def test_metrics_are_paired_by_seed_and_match_scipy(two):
    a, b, results = two
    out = runner.invoke(app, ["diff", str(a), str(b), "--format", "json", "--out", str(results.root)])
    assert out.exit_code == 0, out.stderr
    report = json.loads(out.stdout)
    rows = {(r["config"], r["metric"]): r for r in report["metrics"]}
    # the default metrics: the outcomes, not the plan-fixed parameter count or the best epoch
    assert {m for _, m in rows} == {"best_test_acc", "gen_gap", "mean_stability"}
    base = np.array(BASE)
    row = rows["baseline", "best_test_acc"]
    assert row["paired"] and row["pairs"] == 10 and row["diff"] == pytest.approx(5.0)
    p = stats.permutation_test((base, base + 5), diff_of_means, permutation_type="samples", vectorized=True,
                               n_resamples=10_000).pvalue  # exact: 2^10 sign flips
    assert row["p"] == pytest.approx(p) == 2 / 1024
    assert row["p_rank"] == stats.wilcoxon(base + 5, base).pvalue
    # Holm over the 9 comparisons: four at the floor 2/1024 (baseline and large, acc and gap), the rest at 1
    assert report["family"] == {"comparisons": 9, "correction": "holm", "alpha": 0.05, "note": None}
    assert row["p_adj"] == pytest.approx(9 * 2 / 1024) and row["significant"]
    assert row["diff_ci_low"] == row["diff_ci_high"] == 5.0  # every seed moved by exactly 5
    assert row["a"]["mean"] == pytest.approx(base.mean()) and row["b"]["n"] == 10
    same = rows["small", "best_test_acc"]
    assert same["diff"] == 0 and same["p"] == 1.0 and same["p_adj"] == 1.0 and not same["significant"]
    chosen = runner.invoke(app, ["diff", str(a), str(b), "--format", "json", "--out", str(results.root),
                                 "--metric", "final_params", "--correction", "bh"])
    report = json.loads(chosen.stdout)
    assert [r["metric"] for r in report["metrics"]] == ["final_params"] * 3 and report["family"]["correction"] == "bh"
    bad = runner.invoke(app, ["diff", str(a), str(b), "--metric", "accuracy"])
    assert bad.exit_code == 1 and "unknown metric 'accuracy'" in bad.stderr


def diff_of_means(x, y, axis=-1):
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def test_pairing_finds_what_unpaired_misses_and_falls_back_when_seeds_differ(tmp_path):
    """B is 0.4 points better than A in every seed, within seed-to-seed spread of 4.5 points: the paired test
    sees it, an unpaired test of the same numbers does not; with other seeds on B, diff falls back and says so."""
    a = write(tmp_path, SPEC, "a.yaml")
    b = write(tmp_path, SPEC.replace("lr: 0.001", "lr: 0.0003"), "b.yaml")
    other = write(tmp_path, SPEC.replace("lr: 0.001", "lr: 0.0003").replace("seeds: 10", "seeds: [10, 11, 12, 13, 14, "
                                                                                      "15, 16, 17, 18, 19]"), "c.yaml")
    results = ResultsDir(tmp_path / "results")
    noise = [0.1, -0.05, 0.0, 0.12, -0.1, 0.05, 0.02, -0.08, 0.1, -0.02]
    better = [x + 0.4 + e for x, e in zip(BASE, noise)]
    fake_results(a, results, {c: BASE for c in ("baseline", "small", "large")})
    fake_results(b, results, {c: better for c in ("baseline", "small", "large")})
    fake_results(other, results, {c: better for c in ("baseline", "small", "large")})
    paired = json.loads(runner.invoke(app, ["diff", str(a), str(b), "--format", "json", "--out", str(results.root),
                                            "--metric", "best_test_acc"]).stdout)
    unpaired = json.loads(runner.invoke(app, ["diff", str(a), str(other), "--format", "json", "--out",
                                              str(results.root), "--metric", "best_test_acc"]).stdout)
    p, u = paired["metrics"][0], unpaired["metrics"][0]
    assert p["paired"] and p["significant"] and p["p_adj"] == pytest.approx(3 * 2 / 1024)
    assert not u["paired"] and not u["significant"] and u["p"] > 0.3
    assert u["pairing"] == "seeds differ: only A has seeds 0, 1, 2, 3, 4, 5, 6, 7, 8, 9; only B has seeds 10, 11, 12, 13, 14, 15, 16, 17, 18, 19"
    indep = stats.permutation_test((np.array(BASE), np.array(better)), diff_of_means, permutation_type="independent",
                                   vectorized=True, n_resamples=10_000, rng=np.random.default_rng(0)).pvalue
    assert u["p"] == indep
    text = runner.invoke(app, ["diff", str(a), str(other), "--out", str(results.root)], env={"COLUMNS": "80"}).stdout
    assert "9 unpaired (seeds differ: only A has seeds 0, 1" in " ".join(text.split())


def test_fail_if_worse_and_markdown(two):
    a, b, results = two
    # B's baseline is better (+5) and its `large` worse (-3) in every one of 10 seeds: significant after Holm.
    worse = runner.invoke(app, ["diff", str(a), str(b), "--out", str(results.root), "--fail-if-worse", "best_test_acc"])
    assert worse.exit_code == 1 and "large: best_test_acc is significantly worse in B" in worse.stderr
    assert "adjusted 0.018" in worse.stderr
    better = runner.invoke(app, ["diff", str(b), str(a), "--out", str(results.root), "--fail-if-worse", "gen_gap"])
    assert better.exit_code == 1 and "baseline: gen_gap is significantly worse in B" in better.stderr
    md = runner.invoke(app, ["diff", str(a), str(b), "--out", str(results.root), "--format", "md", "--precision", "3"])
    assert md.exit_code == 0
    assert "| config | metric | A | B | B - A | effect | p | p adj | rank test p | runs |  |" in md.stdout
    s, t = summarize(BASE), summarize([x + 5 for x in BASE])
    ci = lambda s: f"{s['mean']:.3g} [{s['ci_low']:.3g}, {s['ci_high']:.3g}]"  # noqa: E731
    assert f"| baseline | best_test_acc | {ci(s)} | {ci(t)} | +5 [5, 5] | - | 0.002 | 0.018 | 0.002 | paired, 10 | * |" in md.stdout
    bad = runner.invoke(app, ["diff", str(a), str(b), "--fail-if-worse", "best_epoch"])
    assert bad.exit_code == 1 and "no better direction" in bad.stderr


def test_fail_if_worse_is_never_set_off_by_chance_alone_with_five_seeds(tmp_path):
    """With 5 seeds no paired difference can reach p < 0.05 (2/2^5 = 0.0625): --fail-if-worse passes, and
    the output says why rather than silently reporting `not significant`."""
    five = SPEC.replace("seeds: 10", "seeds: 5")
    a, b = write(tmp_path, five, "a.yaml"), write(tmp_path, five.replace("lr: 0.001", "lr: 0.0003"), "b.yaml")
    results = ResultsDir(tmp_path / "results")
    fake_results(a, results, {c: BASE for c in ("baseline", "small", "large")})
    fake_results(b, results, {c: [x - 3 for x in BASE] for c in ("baseline", "small", "large")})
    out = runner.invoke(app, ["diff", str(a), str(b), "--out", str(results.root), "--fail-if-worse", "best_test_acc"],
                        env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert "with 5 pairs an exact paired test cannot give p below 0.0625" in " ".join(out.stdout.split())


def test_diff_tables_fit_80_columns(two):
    a, b, results = two
    out = runner.invoke(app, ["diff", str(a), str(b), "--out", str(results.root)], env={"COLUMNS": "80"})
    assert out.exit_code == 0
    lines = out.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    # one line per comparison: the row starts with its configuration and carries its p-values
    rows = [line for line in lines if line.split()[:2] in (["baseline", "acc"], ["baseline", "gap"])]
    assert len(rows) == 2 and all("±" in r and r.rstrip().endswith("*") for r in rows)


ENV = {"gstc": "0.1.0", "source": {"commit": "a" * 40, "dirty": False}, "python": "3.11.7", "host": "node1",
       "torch": "2.14.1", "cuda": "13.0", "cudnn": 92400, "device": "cuda: NVIDIA H200", "threads": 16}


def test_results_from_different_code_show_in_a_provenance_section(tmp_path):
    # The same spec run twice, by two commits of gstc (the second with uncommitted changes) and two torch
    # versions: the numbers alone would hide it; the provenance section shows it, and nothing else differs.
    spec = write(tmp_path, SPEC, "a.yaml")
    manifests = []
    for name, env in (("A", ENV), ("B", {**ENV, "source": {"commit": "b" * 40, "dirty": True}, "torch": "2.15.0"})):
        results = ResultsDir(tmp_path / name)
        fake_results(spec, results, {"baseline": BASE, "small": BASE, "large": BASE}, env)
        manifests.append(write_manifest(compile_file(str(spec)), results))
    out = runner.invoke(app, ["diff", *map(str, manifests), "--format", "json"])
    assert out.exit_code == 0, out.stderr
    rows = {r["field"]: r for r in json.loads(out.stdout)["provenance"]}
    assert set(rows) == {"source", "torch"}
    assert rows["source"]["a"] == {"aaaaaaaaaaaa": 30} and rows["source"]["b"] == {"bbbbbbbbbbbb (uncommitted changes)": 30}
    text = runner.invoke(app, ["diff", *map(str, manifests)], env={"COLUMNS": "250"}).stdout
    assert "Provenance" in text and "aaaaaaaaaaaa (30 runs)" in text and "bbbbbbbbbbbb (uncommitted changes) (30 runs)" in text
    same = runner.invoke(app, ["diff", str(manifests[0]), str(manifests[0]), "--format", "json"])
    assert json.loads(same.stdout)["provenance"] == []  # one code, one environment: no section
    every = runner.invoke(app, ["diff", str(manifests[0]), str(manifests[0]), "--format", "json", "--all"])
    assert [r["field"] for r in json.loads(every.stdout)["provenance"]] == list(PROVENANCE)


def test_runs_without_provenance_read_as_unknown(tmp_path):
    # results of gstc 0.1.0 recorded no version or commit
    spec = write(tmp_path, SPEC, "a.yaml")
    base = BASE
    old, new = ResultsDir(tmp_path / "old"), ResultsDir(tmp_path / "new")
    fake_results(spec, old, {"baseline": base, "small": base, "large": base}, {"torch": "2.14.1"})
    fake_results(spec, new, {"baseline": base, "small": base, "large": base}, ENV)
    plan = compile_file(str(spec))
    out = runner.invoke(app, ["diff", str(write_manifest(plan, old)), str(write_manifest(plan, new)), "--format", "json"])
    rows = {r["field"]: r for r in json.loads(out.stdout)["provenance"]}
    assert rows["gstc"]["a"] == {"unknown": 30} and rows["source"]["a"] == {"unknown": 30} and "torch" not in rows
