"""`gstc report`: tables from the run folders, PNG plots, partial results, reproducibility."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gstc.cli import app
from gstc.compile import compile_file
from gstc.manifest import ResultsDir, append_jsonl, write_json
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
    assert "partial results: 4 of 6 runs done" in text.stdout and "69.50" in text.stdout


def test_report_without_results_says_so(tmp_path):
    spec = write(tmp_path, SMALL_SPEC, "s.yaml")
    out = runner.invoke(app, ["report", str(spec), "--out", str(tmp_path / "none")])
    assert out.exit_code == 1 and "no finished runs" in out.stderr
