"""The commands over results: export (tables), report and diff."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from gstc.cli.common import Correction, _compile, _console, _fail, _metrics, _option_fail, _print_tables, _wide, app
from gstc.errors import SpecError, SpecErrors


class DiffFormat(str, Enum):
    text = "text"
    md = "md"
    json = "json"


class ReportFormat(str, Enum):
    text = "text"
    md = "md"
    json = "json"
    html = "html"


class TableFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


@app.command("export")
def export_tables(
    spec: Path = typer.Argument(..., help="Spec file.", show_default=False),
    format: TableFormat = typer.Option(TableFormat.csv, "--format", help="csv, or parquet (needs pyarrow)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default: $GSTC_RESULTS or ./results)."),
    to: Optional[Path] = typer.Option(None, "--to", help="Folder for the tables (default: <out>/specs/<name>/tables)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override PATH=VALUE (repeatable)."),
) -> None:
    """The results as tables for R or a spreadsheet: runs, epochs, events, flatness (as `gstc.results` gives them)."""
    from gstc.frames import ResultsError, export, results
    from gstc.paths import ResultsDir

    plan_ = _compile(spec, sets)
    where = ResultsDir(out)
    try:
        res = results(plan_, where.root)
        written = export(res, to or where.spec_dir(plan_.spec) / "tables", format.value)
    except ResultsError as exc:
        _fail([SpecError(str(spec), 1, 1, "", str(exc))])
    err = _console(stderr=True)
    if res.missing:
        err.print(f"partial results: {len(res.runs) - len(res.missing)} of {len(res.runs)} runs done (the runs table "
                  "lists every run with its status)", markup=False)
    for path in written:
        err.print(f"wrote {path}", markup=False)


@app.command()
def report(
    spec: Path = typer.Argument(..., help="Spec file.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default: $GSTC_RESULTS or ./results)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for the PNGs and report.html (default: next to the manifest)."),
    format: ReportFormat = typer.Option(ReportFormat.text, "--format", help="text, md, json, or html (one self-contained file)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override PATH=VALUE (repeatable)."),
    metrics: Optional[List[str]] = typer.Option(None, "--metric", help="Metric to compare with the baseline (repeatable; default: best_test_acc, gen_gap, mean_stability)."),
    correction: Correction = typer.Option(Correction.holm, "--correction", help="Multiple-comparison correction over the report's comparisons: holm, bh (Benjamini-Hochberg) or none."),
    unpaired: bool = typer.Option(False, "--unpaired", help="Compare as unpaired samples even where the seeds match (to see what pairing adds)."),
) -> None:
    """Tables (metrics with CIs, comparisons with the baseline, correlations), PNG plots and an HTML report."""
    from gstc import report as r
    from gstc.paths import ResultsDir

    plan_ = _compile(spec, sets)
    results = ResultsDir(out)
    rep = r.build(plan_, results, _metrics(metrics), correction.value, not unpaired)
    if rep["done"] == 0:
        _fail([SpecError(str(spec), 1, 1, "", f"no finished runs in {results.root} yet: run `gstc run {spec}` first")])
    folder = plots or results.spec_dir(plan_.spec)
    written = r.plot(plan_, results, rep, folder)
    if format is ReportFormat.json:
        typer.echo(json.dumps({k: v for k, v in rep.items() if k != "manifest"} | {"plots": [str(p) for p in written]}, indent=2))
        return
    if format is ReportFormat.html:
        from gstc import report_html

        written = [report_html.write(plan_, rep, folder, written)]
    elif format is ReportFormat.md:
        typer.echo(r.markdown(rep))
    else:
        console = _console()
        if rep["partial"]:
            console.print(f"partial results: {rep['done']} of {rep['runs']} runs done", markup=False)
        _print_tables(console, r.tables(rep, wide=_wide(console)))
    err = _console(stderr=True)
    for d in rep["damaged"]:
        err.print(f"run {d['id']} ({d['config']}, seed {d['seed']}) is damaged, left out: {d.get('file')} "
                  f"{d.get('reason')}; `gstc run {spec} --restart {d['id']}` trains it again", markup=False)
    for p in written:
        err.print(f"wrote {p}", markup=False)


@app.command("diff")
def diff_cmd(
    a: Path = typer.Argument(..., help="Spec (or manifest.json) A.", show_default=False),
    b: Path = typer.Argument(..., help="Spec (or manifest.json) B.", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder of specs' runs (default: $GSTC_RESULTS or ./results)."),
    show_all: bool = typer.Option(False, "--all", help="Show unchanged configuration paths too."),
    precision: int = typer.Option(5, "--precision", min=1, max=17, help="Significant digits."),
    format: DiffFormat = typer.Option(DiffFormat.text, "--format", help="text, md (for pull requests) or json."),
    fail_if_worse: Optional[str] = typer.Option(None, "--fail-if-worse", help="Exit 1 when B is significantly worse on this metric (after the correction)."),
    metrics: Optional[List[str]] = typer.Option(None, "--metric", help="Metric to compare (repeatable; default: best_test_acc, gen_gap, mean_stability)."),
    correction: Correction = typer.Option(Correction.holm, "--correction", help="Multiple-comparison correction over the diff's comparisons: holm, bh (Benjamini-Hochberg) or none."),
    unpaired: bool = typer.Option(False, "--unpaired", help="Compare as unpaired samples even where the seeds match (to see what pairing adds)."),
) -> None:
    """Compare two specs: resolved configurations, plans, and results paired by seed, with CIs."""
    from gstc import diff as d
    from gstc.paths import ResultsDir

    for path in (a, b):
        if not path.is_file():
            _fail([SpecError(str(path), 1, 1, "", "cannot read the file: no such file")])
    if fail_if_worse is not None and fail_if_worse not in d.BETTER:
        _option_fail("--fail-if-worse", f"{fail_if_worse!r} has no better direction; "
                         f"choose from {', '.join(d.BETTER)}")
    tested = _metrics(metrics, fail_if_worse)
    try:
        report = d.diff(str(a), str(b), ResultsDir(out), show_all, tested, correction.value, not unpaired)
    except SpecErrors as exc:
        _fail(exc.errors)
    except (ValueError, KeyError) as exc:  # a manifest that is not one
        _fail([SpecError(str(a), 1, 1, "", f"cannot compare: {exc}")])
    if format is DiffFormat.json:
        typer.echo(json.dumps(report, indent=2))
    elif format is DiffFormat.md:
        typer.echo(d.markdown(report, precision))
    else:
        console = _console()
        console.print(f"A: {a}", markup=False, soft_wrap=False)
        console.print(f"B: {b}", markup=False, soft_wrap=False)
        _print_tables(console, d.tables(report, precision, wide=_wide(console)), empty="(no differences)")
    if fail_if_worse:
        bad = d.worse(report, fail_if_worse)
        if bad:
            err = _console(stderr=True)
            for r in bad:
                err.print(f"{r['config']}: {fail_if_worse} is significantly worse in B ({r['diff']:+.4g}, p = {r['p']:.2g}, "
                          f"adjusted {r['p_adj']:.2g})", markup=False)
            raise typer.Exit(1)
