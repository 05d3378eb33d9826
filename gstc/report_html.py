"""`gstc report SPEC --format html`: the report as one self-contained HTML file.

Everything is inside the file: the tables as HTML, the plots as PNGs in `data:` URLs, the
style sheet inline, no script and no font or image from elsewhere, so it opens offline,
as a mail attachment or from an artifact store, and shows the same thing years later.
Like the other outputs it is deterministic: the same run folders give the same bytes
(no date inside; the plots' PNGs carry no version or time).
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from gstc import render
from gstc.atomic import write_text
from gstc.plan import Plan
from gstc.provenance import PROVENANCE, tally
from gstc.report import tables

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { font-size: 1.2em; margin-top: 2em; }
p.lead { color: #555; margin-top: 0; } p.warn { background: #fff4e5; padding: 0.5em 0.8em; border-left: 4px solid #f0a020; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; text-align: left; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { background: #f4f4f6; } tr:hover td { background: #fafafc; }
.caption { color: #555; font-size: 0.85em; white-space: pre-line; margin: 0.4em 0 0; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85em; }
.scroll { overflow-x: auto; }
"""

FIGURES = {
    "test_accuracy": "Test accuracy per epoch, one panel per configuration: each run (thin), their mean (thick), "
                     "the pruning epochs (dotted), the baseline's mean (grey).",
    "stability_vs_accuracy": "Stability against best test accuracy: one small point per run, each configuration's "
                             "mean with its 95% bootstrap CI on both axes, the least-squares line over all runs "
                             "(Pearson's r with its CI in the legend), as the paper's Figure 2.",
    "flatness_vs_stability": "Flatness at each run's last measured epoch against stability (lower is flatter).",
}


def _table(title: str, header: list[str], rows: list[list[str]], caption: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    note = f'<p class="caption">{escape(caption)}</p>' if caption else ""
    return (f'<h2>{escape(title)}</h2>\n<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>{note}\n")


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    stem = path.stem
    text = FIGURES.get(stem) or ("The paper's Figure 3 for one numeric sweep axis: best test accuracy and mean "
                                 "stability (mean, 95% CI) and their Pearson correlation (95% CI) at each value, one "
                                 "line per value of the other axes; the tick labels give the largest per-event rate.")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(stem.replace("_", " "))}">'
            f"<figcaption>{escape(text)}</figcaption></figure>\n")


def _runs(report: dict) -> str:
    rows = []
    for r in report["manifest"]["runs"]:
        s = r.get("summary") or {}
        fmt = lambda k: "-" if s.get(k) is None else f"{s[k]:.2f}"  # noqa: E731
        rows.append([r["config"], str(r["seed"]), r["id"], r["status"], fmt("best_test_acc"), fmt("gen_gap"),
                     fmt("mean_stability"), "-" if r.get("seconds") is None else f"{r['seconds']:.1f}"])
    return _table("Runs", ["configuration", "seed", "run", "status", "best test acc (%)", "gen gap", "stability (%)",
                           "seconds"], rows, "")


def _environment(report: dict) -> str:
    counts = tally(report["manifest"])
    rows = [[f, "; ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in counts[f].items()) or "-"] for f in PROVENANCE]
    return _table("Environment and code version of the runs", ["field", "values (runs)"], rows,
                  "From each finished run's run.json: the gstc version and source commit that trained it, and its machine.")


def page(plan: Plan, report: dict, pngs: list[Path]) -> str:
    """The whole HTML document."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>gstc report: {escape(plan.spec)}</title><style>{STYLE}</style></head><body>\n",
             f"<h1>{escape(plan.spec)}</h1>\n<p class=\"lead\">{escape(plan.description or '')} "
             f"&middot; {report['done']} of {report['runs']} runs done &middot; spec hash {escape(plan.spec_hash[:12])}</p>\n"]
    if report["partial"]:
        parts.append(f'<p class="warn">Partial results: {report["done"]} of {report["runs"]} runs done; the numbers '
                     "below are over the done runs only.</p>\n")
    for d in report["damaged"]:
        parts.append(f'<p class="warn">Run {escape(d["id"])} ({escape(d["config"])}, seed {d["seed"]}) is damaged and '
                     f"left out: {escape(str(d.get('file')))} {escape(str(d.get('reason')))}</p>\n")
    found = tables(report, wide=True)
    parts.append(_table(*found[0]))
    by_stem = {p.stem: p for p in pngs}
    for stem in ("test_accuracy", "stability_vs_accuracy"):
        if stem in by_stem:
            parts.append(_figure(by_stem[stem]))
    for t in found[1:]:
        parts.append(_table(*t))
    for p in pngs:
        if p.stem.startswith("sweep_"):
            parts.append("<h2>" + escape(f"Sweep: {p.stem[len('sweep_'):]}") + "</h2>\n" + _figure(p))
    if "flatness_vs_stability" in by_stem:
        parts.append("<h2>Flatness</h2>\n" + _figure(by_stem["flatness_vs_stability"]))
    if not report["comparisons"]:
        parts.append("<p class=\"caption\">" + escape(
            "No comparison with a baseline: the spec has no configuration that never prunes."
            if report["baseline"] is None else f"No comparison with {report['baseline']}: no finished runs to compare.")
            + "</p>\n")
    parts.append(_runs(report))
    parts.append(_environment(report))
    parts.append(f"<p class=\"caption\">{escape(render.LEGEND)}</p>\n</body></html>\n")
    return "".join(parts)


def write(plan: Plan, report: dict, folder: Path, pngs: list[Path]) -> Path:
    """Write `report.html` into `folder` (atomically) and return its path."""
    path = Path(folder) / "report.html"
    write_text(path, page(plan, report, pngs))
    return path


__all__ = ["page", "write"]
