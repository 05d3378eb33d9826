"""`gstc report`: tables from the run folders, PNG plots, partial results, reproducibility."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.jsonio import append_jsonl, write_json
from gstc.manifest import build_manifest, metric_values
from gstc.paths import ResultsDir
from gstc.report import sweep_axes
from gstc.comparisons import adjust, compare
from gstc.stats import summarize
from tests.conftest import SMALL_SPEC, write

runner = CliRunner()


def fake_run(results: ResultsDir, run, accs: list[float], params: int, stabilities: list[float]) -> None:
    for epoch, acc in enumerate(accs, start=1):
        append_jsonl(results.epochs_jsonl(run.id), {"epoch": epoch, "train_loss": 0.1, "train_acc": acc + 1, "test_loss": 0.2,
                                                    "test_acc": acc, "lr": 0.001, "kept": {}, "params": params, "seconds": 0.1})
    for ev, stab in zip(sorted({e.epoch for e in run.events}), stabilities):
        append_jsonl(results.events_jsonl(run.id), {"epoch": ev, "pre_acc": 50.0, "post_acc": 50.0 * stab / 100,
                                                    "instability": 100 - stab, "stability": stab, "layers": []})
    write_json(results.run_json(run.id), {"id": run.id, "config": run.config, "seed": run.seed, "status": "done"})
    write_json(results.flatness_json(run.id), {"subset": [0, 1], "epochs": {
        "9": {"hessian_top_sum": 10.0 + run.seed, "grad_cov_trace": 2.0}, "10": {"hessian_top_sum": 5.0 + run.seed, "grad_cov_trace": 1.0}}})


def test_report_tables_plots_and_partial_results(tmp_path):
    spec = write(tmp_path, SMALL_SPEC, "s.yaml")
    plan = compile_file(str(spec))
    results = ResultsDir(tmp_path / "r")
    accs = {"baseline": [50.0 + i for i in range(10)], "small": [60.0 + i for i in range(10)]}
    for run in plan.runs:
        if run.config in accs:  # `large` not run yet: partial results
            fake_run(results, run, [a + run.seed for a in accs[run.config]], 1000 if run.config == "baseline" else 600,
                     [90.0 + run.seed] * 4)
    out = runner.invoke(app, ["report", str(spec), "--out", str(results.root), "--format", "json"])
    assert out.exit_code == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["partial"] and rep["done"] == 4 and rep["runs"] == 6
    small = next(c for c in rep["configs"] if c["id"] == "small")
    assert small["done"] == 2 and abs(small["params_removed"] - 0.4) < 1e-12
    assert small["max_rate"] == max(s.rate for s in plan.config("small").schedules)
    # Best accuracy from the last pruning epoch (7) on: 69 and 70 for seeds 0 and 1.
    assert small["metrics"]["best_test_acc"] == summarize([69.0, 70.0], seed=0)
    pngs = [tmp_path / "r" / "specs" / "small" / name
            for name in ("test_accuracy.png", "stability_vs_accuracy.png", "flatness_vs_stability.png")]
    assert rep["plots"] == [str(p) for p in pngs]
    first = [p.read_bytes() for p in pngs]
    assert all(b.startswith(b"\x89PNG") for b in first)
    md1 = runner.invoke(app, ["report", str(spec), "--out", str(results.root), "--format", "md"]).stdout
    md2 = runner.invoke(app, ["report", str(spec), "--out", str(results.root), "--format", "md"]).stdout
    assert md1 == md2 and "Partial results: 4 of 6 runs done." in md1
    assert [p.read_bytes() for p in pngs] == first  # byte-identical when run again
    text = runner.invoke(app, ["report", str(spec), "--out", str(results.root)], env={"COLUMNS": "250"})
    assert "partial results: 4 of 6 runs done" in text.stdout and "69.50 [69.00, 70.00]" in text.stdout
    # `large` has no done run: it is in the table, and not among the comparisons with the baseline
    assert {c["config"] for c in rep["comparisons"]} == {"small"}


def test_comparisons_with_the_baseline_are_paired_and_corrected(tmp_path):
    """Every configuration is compared with the baseline seed by seed, on the outcomes, the p-values
    corrected together; the numbers are gstc.comparisons.compare's on the runs' summaries."""
    spec = write(tmp_path, SMALL_SPEC.replace("seeds: 2", "seeds: 8"), "s.yaml")
    plan = compile_file(str(spec))
    results = ResultsDir(tmp_path / "r")
    offset = {"baseline": 0.0, "small": 0.5, "large": -0.2}
    for run in plan.runs:
        spread = [3.0, -1.0, 2.0, 0.0, -2.5, 1.5, -0.5, 4.0][run.seed]  # seed-to-seed spread, shared by all configs
        fake_run(results, run, [50.0 + i + spread + offset[run.config] + 0.01 * run.seed * (run.config == "small")
                                for i in range(10)], 1000, [90.0 + run.seed] * 4)
    out = runner.invoke(app, ["report", str(spec), "--out", str(results.root), "--format", "json"])
    rep = json.loads(out.stdout)
    assert rep["baseline"] == "baseline" and rep["family"]["comparisons"] == 6 and rep["family"]["correction"] == "holm"
    rows = {(r["config"], r["metric"]): r for r in rep["comparisons"]}
    assert set(rows) == {(c, m) for c in ("small", "large") for m in ("best_test_acc", "gen_gap", "mean_stability")}
    manifest = build_manifest(plan, results)
    a, sa = metric_values(manifest, "baseline", "best_test_acc")
    b, sb = metric_values(manifest, "small", "best_test_acc")
    expected = compare(a, b, sa, sb, seed=0)
    assert {k: rows["small", "best_test_acc"][k] for k in expected} == expected
    assert rows["small", "best_test_acc"]["paired"] and rows["small", "best_test_acc"]["p"] == 2 / 2 ** 8
    assert [r["p_adj"] for r in rep["comparisons"]] == adjust([r["p"] for r in rep["comparisons"]], "holm")
    assert rows["small", "best_test_acc"]["significant"] and not rows["small", "gen_gap"]["significant"]
    bh = json.loads(runner.invoke(app, ["report", str(spec), "--out", str(results.root), "--format", "json",
                                        "--correction", "bh"]).stdout)
    assert [r["p_adj"] for r in bh["comparisons"]] == adjust([r["p"] for r in bh["comparisons"]], "bh")


def test_report_fits_80_columns_one_line_per_row(tmp_path):
    spec = write(tmp_path, SMALL_SPEC.replace("seeds: 2", "seeds: 3"), "s.yaml")
    plan = compile_file(str(spec))
    results = ResultsDir(tmp_path / "r")
    for run in plan.runs:
        fake_run(results, run, [50.0 + i + 0.7 * run.seed for i in range(10)], 1000, [90.0 + run.seed] * 4)
    out = runner.invoke(app, ["report", str(spec), "--out", str(results.root)], env={"COLUMNS": "80"})
    lines = out.stdout.splitlines()
    assert out.exit_code == 0 and max(map(len, lines)) <= 80
    # every configuration row, comparison row and correlation row is one line: no cell wraps
    for config in ("baseline", "small", "large"):
        assert sum(line.startswith(config + " ") for line in lines) == (1 if config == "baseline" else 4)
    assert sum(line.startswith("stab~") for line in lines) == 4  # over all runs, and over the pruned runs alone
    assert sum("pruned runs" in line for line in lines if line.startswith("stab~")) == 2
    wide = runner.invoke(app, ["report", str(spec), "--out", str(results.root)], env={"COLUMNS": "200"}).stdout
    assert "best_test_acc (%)" in wide and "[" in wide.split("best_test_acc (%)")[1].splitlines()[2]


def test_sweep_over_a_rate_axis_gets_a_figure_3_plot_and_per_value_correlations(tmp_path):
    spec = write(tmp_path, SMALL_SPEC.replace("  large: {prune.target: largest}\n", "")
                 + "sweep:\n  prune.target: [smallest, largest]\n  prune.layers[0].amount: [0.25, 0.5, 0.75]\n", "s.yaml")
    plan = compile_file(str(spec))
    assert sweep_axes(plan) == ["prune.layers[0].amount"]
    results = ResultsDir(tmp_path / "r")
    for run in plan.runs:
        amount = run.config.count("0.75") * 3 + run.config.count("0.5") * 2 + run.config.count("0.25")
        fake_run(results, run, [50.0 + i - amount + run.seed for i in range(10)], 1000, [90.0 - amount + run.seed] * 4)
    out = runner.invoke(app, ["report", str(spec), "--out", str(results.root), "--format", "json"])
    rep = json.loads(out.stdout)
    assert str(tmp_path / "r" / "specs" / "small" / "sweep_prune_layers_0_amount.png") in rep["plots"]
    groups = [c["point"] for c in rep["correlations"] if c["x"] == "mean_stability" and c["y"] == "best_test_acc"]
    # overall, the 6 sweep points, then each value of each axis (the paper's Figure 3 correlates at each rate)
    assert groups[:2] == [None, None] and len(groups) == 2 + 6 + 2 + 3  # all runs, pruned runs, then the points
    assert {"prune.layers[0].amount": 0.5} in groups and {"prune.target": "largest"} in groups
    at = next(c for c in rep["correlations"] if c["point"] == {"prune.layers[0].amount": 0.5} and c["y"] == "best_test_acc")
    assert at["n"] == 4  # two targets x two seeds


def test_report_without_results_says_so(tmp_path):
    spec = write(tmp_path, SMALL_SPEC, "s.yaml")
    out = runner.invoke(app, ["report", str(spec), "--out", str(tmp_path / "none")])
    assert out.exit_code == 1 and "no finished runs" in out.stderr
