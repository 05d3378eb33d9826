"""`gstc report SPEC`: tables and PNG plots of a spec's results.

Everything comes from the run folders (through `build_manifest` and the epoch files),
never from a run's memory, and is deterministic: the same files give byte-identical
tables, JSON and PNGs (fixed bootstrap seed; PNG metadata without dates or versions).
Partial results are reported as such: the tables say how many runs of each
configuration are done, failed or damaged, and damaged runs are listed with the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as st

from gstc import render, report_lottery
from gstc.comparisons import family
from gstc.diff import compare_runs
from gstc.jsonio import DamagedFile, read_json, read_jsonl
from gstc.manifest import BOOTSTRAP_SEED, build_manifest, metric_values
from gstc.paths import ResultsDir
from gstc.plan import Plan, PlanConfig
from gstc.render import estimate, number, pvalue, short_id
from gstc.stats import summarize
from gstc.summary import OUTCOMES, SUMMARY_FIELDS

UNITS = {"best_test_acc": "%", "best_epoch": "epoch", "gen_gap": "points", "mean_stability": "%", "final_params": "",
         "final_nonzero": ""}
# Decimals of each metric in the tables: accuracies and gaps to 0.01 points, as the paper reports them.
DECIMALS = {"best_test_acc": 2, "best_epoch": 1, "gen_gap": 2, "mean_stability": 2, "final_params": 0,
            "final_nonzero": 0}


def _fmt(metric: str) -> render.Format:
    return render.decimals(DECIMALS[metric])


def baseline(plan: Plan) -> PlanConfig | None:
    """The configuration the others are compared with: the first that never prunes."""
    return next((c for c in plan.configs if not c.schedules), None)


def build(plan: Plan, results: ResultsDir, metrics: tuple[str, ...] = OUTCOMES, correction: str = "holm",
          paired: bool = True) -> dict:
    """The report's numbers: per configuration metrics, rates, removed parameters; comparisons
    with the baseline (paired by seed where the seeds match), corrected together; correlations."""
    manifest = build_manifest(plan, results)
    by_config = {c["id"]: c for c in manifest["configs"]}
    base = baseline(plan)
    # Parameters of an unpruned run: the reference for "parameters removed".
    base_params = next((r["summary"]["final_params"] for r in manifest["runs"]
                        if r["status"] == "done" and not plan.config(r["config"]).schedules), None)
    configs = []
    for c in plan.configs:
        mine = set(by_config[c.id]["runs"])
        runs = [r for r in manifest["runs"] if r["id"] in mine]
        found = by_config[c.id]["metrics"]
        # Weight and N:M granularity remove no parameter but hold some at zero: those count as removed here.
        params = found["final_nonzero"]["mean"] if found["final_nonzero"]["n"] else found["final_params"]["mean"]
        configs.append({
            "id": c.id,
            "point": dict(c.point),
            "runs": len(runs),
            "done": sum(r["status"] == "done" for r in runs),
            "failed": sum(r["status"] == "failed" for r in runs),
            "damaged": sum(r["status"] == "damaged" for r in runs),
            # the equal curve's step (a linear or cubic curve's events differ: no one rate)
            "max_rate": max((s.rate for s in c.schedules if s.curve == "equal"), default=None),
            "params_removed": (1 - params / base_params) if base_params and params is not None else None,
            "metrics": by_config[c.id]["metrics"],
        })
    comparisons = []
    for c in plan.configs:
        if base is None or c.id == base.id:
            continue
        for metric in metrics:
            (a, sa), (b, sb) = metric_values(manifest, base.id, metric), metric_values(manifest, c.id, metric)
            if a and b:
                comparisons.append({"config": c.id, "metric": metric, "a": summarize(a, seed=BOOTSTRAP_SEED),
                                    "b": summarize(b, seed=BOOTSTRAP_SEED), **compare_runs(a, b, sa, sb, paired)})
    done = sum(c["done"] for c in configs)
    damaged = [{"id": r["id"], "config": r["config"], "seed": r["seed"], **(r.get("error") or {})}
               for r in manifest["runs"] if r["status"] == "damaged"]
    return {"spec": plan.spec, "runs": len(plan.runs), "done": done, "partial": done < len(plan.runs),
            "configs": configs, "damaged": damaged, "baseline": base.id if base else None,
            "comparisons": comparisons, "family": family(comparisons, correction),
            "correlations": manifest["correlations"], "lottery": report_lottery.build(plan, manifest, correction, paired),
            "manifest": manifest}


def _group(point: dict | None, over: str = "all") -> str:
    if point is None:
        return "pruned runs" if over == "pruned" else "all runs"
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())


def tables(report: dict, wide: bool = True) -> list[render.Table]:
    """(title, header, rows, caption) of every table: configurations, comparisons, correlations."""
    shown = list(SUMMARY_FIELDS) if wide else [m for m in SUMMARY_FIELDS if m in OUTCOMES]
    header = ["configuration", "done", "max rate", "params removed" if wide else "removed"]
    header += [f"{m} ({UNITS[m]})" if UNITS[m] else m for m in shown] if wide else [render.SHORT[m] for m in shown]
    rows = []
    for c in report["configs"]:
        problems = [f"{c[k]} {k}" for k in ("failed", "damaged") if c[k]]
        cells = [c["id"] if wide else short_id(c["id"]),
                 f"{c['done']}/{c['runs']}" + (f" ({', '.join(problems)})" if problems else ""),
                 "-" if c["max_rate"] is None else f"{100 * c['max_rate']:.1f}%",
                 "-" if c["params_removed"] is None else f"{100 * c['params_removed']:.1f}%"]
        for m in shown:
            s = c["metrics"][m]
            cells.append(estimate(s["mean"], s["ci_low"], s["ci_high"], wide, _fmt(m)))
        rows.append(cells)
    legend = "mean [95% bootstrap CI] over done runs" if wide else \
        "mean ±half the 95% bootstrap CI over done runs; " + render.LEGEND.split("; epoch")[0]
    out = [("Configurations", header, rows, legend)]
    if report["lottery"]:
        out += report_lottery.tables(report["lottery"], wide, _fmt)
    if report["comparisons"]:
        out.append(render.comparisons(report["comparisons"], report["family"], wide, _fmt, report["baseline"], "config",
                                      f"Compared with {report['baseline']} (by seed where the seeds match)"))
    corr = []
    for c in report["correlations"]:
        pair = f"{c['x']} / {c['y']}" if wide else f"{render.SHORT[c['x']]}~{render.SHORT[c['y']]}"
        sep = ", " if wide else ","
        cells = [pair, _group(c["point"], c.get("over", "all")), str(c["n"])]
        for stat, low, high, p in (("pearson_r", "pearson_ci_low", "pearson_ci_high", "pearson_p"),
                                   ("kendall_tau", "kendall_ci_low", "kendall_ci_high", "kendall_p")):
            value = "-" if c[stat] is None else f"{c[stat]:+.2f}"
            if c[low] is not None:
                value += f" [{c[low]:+.2f}{sep}{c[high]:+.2f}]"
            cells += [value, pvalue(c[p])]
        corr.append(cells)
    header = ["x / y" if wide else "x~y", "over", "n", "pearson r [95% CI]" if wide else "r [95% CI]", "p",
              "kendall tau [95% CI]" if wide else "tau [95% CI]", "p"]
    pruned = next((c["configs"] for c in report["correlations"] if c.get("over") == "pruned"), None)
    covers = (f"; pruned runs: those of {', '.join(pruned)} (a configuration that never prunes may peak at any "
              "epoch, a pruned run only from its last event on)" if pruned else "")
    out.append(("Correlations over runs", header, corr,
                "Pearson's CI from Fisher's z; Kendall's from a percentile bootstrap over runs" + covers))
    return out


def markdown(report: dict) -> str:
    lines = [f"# {report['spec']}", ""]
    if report["partial"]:
        lines += [f"Partial results: {report['done']} of {report['runs']} runs done.", ""]
    for title, header, rows, caption in tables(report, wide=True):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
        if caption:
            lines += [line + "  " for line in caption.splitlines()] + [""]
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------


def _png(fig: Any, path: Path) -> Path:
    """Write `fig` atomically as a PNG and close it."""
    import io

    import matplotlib.pyplot as plt

    from gstc.atomic import write_bytes

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None})  # no version: byte-identical reruns
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path


def _epochs(results: ResultsDir, run_id: str) -> list[dict]:
    """A done run's epoch records; [] when its epochs.jsonl is damaged (run.json's summary still counts)."""
    try:
        return read_jsonl(results.epochs_jsonl(run_id))
    except DamagedFile:
        return []


def _done_runs(report: dict, config_id: str) -> list[dict]:
    mine = set(next(c["runs"] for c in report["manifest"]["configs"] if c["id"] == config_id))
    return [r for r in report["manifest"]["runs"] if r["id"] in mine and r["status"] == "done"]


def _accuracy_curves(plan: Plan, results: ResultsDir, report: dict, colors: list[str]):
    """One panel per configuration: each run's test accuracy per epoch (thin), their mean (thick),
    pruning epochs (dashed), and the baseline's mean (grey) for reference."""
    import matplotlib.pyplot as plt

    curves = {c.id: [cv for cv in (_epochs(results, r["id"]) for r in _done_runs(report, c.id)) if cv]
              for c in plan.configs}
    shown = [c for c in plan.configs if curves[c.id]]
    cols = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows + 0.6), sharex=True, sharey=True, squeeze=False,
                             layout="constrained")  # room for the suptitle, which tight_layout ignores
    base = baseline(plan)

    def mean_curve(config_id: str) -> tuple[list[int], np.ndarray]:
        n = min(len(cv) for cv in curves[config_id])
        return ([e["epoch"] for e in curves[config_id][0][:n]],
                np.array([[e["test_acc"] for e in cv[:n]] for cv in curves[config_id]]).mean(axis=0))

    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for i, (ax, c) in enumerate(zip(axes.flat, shown)):
        color = colors[plan.configs.index(c) % len(colors)]
        if base is not None and base.id != c.id and curves.get(base.id):
            ax.plot(*mean_curve(base.id), color="0.6", linewidth=1, linestyle="--", label=f"{base.id} (mean)")
        for cv in curves[c.id]:
            ax.plot([e["epoch"] for e in cv], [e["test_acc"] for e in cv], color=color, alpha=0.3, linewidth=0.8)
        ax.plot(*mean_curve(c.id), color=color, linewidth=1.8, label=f"mean of {len(curves[c.id])} runs")
        for e in sorted({e for s in c.schedules for e, p in zip(s.epochs, s.pruned) if p > 0}):
            ax.axvline(e, color="crimson", alpha=0.45, linewidth=0.7, linestyle=":")
        ax.set_title(short_id(c.id), fontsize="small")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if i % cols == 0:
            ax.set_ylabel("test accuracy (%)")
        if i >= len(shown) - cols:  # the lowest panel of its column: sharex hid its ticks if a row is short
            ax.set_xlabel("epoch")
            ax.tick_params(labelbottom=True)
        ax.legend(fontsize="x-small", loc="lower right")
    fig.suptitle(f"{plan.spec}: test accuracy per epoch (thin: runs; dotted red: pruning epochs)", fontsize="medium")
    return fig


def _stability_scatter(plan: Plan, report: dict, colors: list[str]):
    """Stability against best test accuracy: one point per run, each configuration's mean with
    its 95% bootstrap CI on both axes, and the least-squares line over all runs."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    xs, ys = [], []
    for i, c in enumerate(plan.configs):
        pts = [(r["summary"]["mean_stability"], r["summary"]["best_test_acc"]) for r in _done_runs(report, c.id)]
        if not pts:
            continue
        color = colors[i % len(colors)]
        ax.scatter(*zip(*pts), color=color, s=14, alpha=0.45, linewidths=0)
        xs += [p[0] for p in pts]
        ys += [p[1] for p in pts]
        m = next(k for k in report["configs"] if k["id"] == c.id)["metrics"]
        sx, sy = m["mean_stability"], m["best_test_acc"]
        ax.errorbar(sx["mean"], sy["mean"], xerr=[[sx["mean"] - sx["ci_low"]], [sx["ci_high"] - sx["mean"]]],
                    yerr=[[sy["mean"] - sy["ci_low"]], [sy["ci_high"] - sy["mean"]]], fmt="o", color=color,
                    markersize=6, capsize=3, markeredgecolor="black", markeredgewidth=0.6, label=short_id(c.id))
    overall = next((c for c in report["correlations"] if c["x"] == "mean_stability" and c["y"] == "best_test_acc"
                    and c["point"] is None), None)
    if len(set(xs)) > 1:
        fit = st.linregress(xs, ys)
        grid = np.linspace(min(xs), max(xs), 2)
        label = f"least squares over {len(xs)} runs"
        if overall and overall["pearson_r"] is not None:
            label += (f": r = {overall['pearson_r']:.2f} [{overall['pearson_ci_low']:.2f}, {overall['pearson_ci_high']:.2f}],"
                      f" p = {pvalue(overall['pearson_p'])}")
        ax.plot(grid, fit.intercept + fit.slope * grid, color="black", linewidth=1, label=label)
    ax.set_xlabel("mean stability over pruning epochs (%)")
    ax.set_ylabel("best test accuracy (%)")
    ax.set_title(f"{plan.spec}: stability vs generalization\n(small: one run; large: configuration mean, 95% CI)",
                 fontsize="medium")
    ax.legend(fontsize="x-small")
    return fig


def sweep_axes(plan: Plan) -> list[str]:
    """Swept paths whose values are all numbers, with at least two of them: the x axes of sweep plots."""
    axes: dict[str, list] = {}
    for c in plan.configs:
        for k, v in c.point.items():
            axes.setdefault(k, [])
            if v not in axes[k]:
                axes[k].append(v)
    return [k for k, vs in axes.items() if len(vs) > 1
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs)]


def _sweep(plan: Plan, report: dict, axis: str, colors: list[str]):
    """The paper's Figure 3 for one numeric sweep axis: best test accuracy, mean stability and
    their correlation against the axis, one line per value of the other axes (the baseline dashed)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    configs = {c["id"]: c for c in report["configs"]}
    lines: dict[str, list] = {}
    for c in plan.configs:
        if axis in c.point:
            # one line per variant and value of the other axes
            label = ", ".join([c.id.partition("[")[0]] + [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in c.point.items()
                                                          if k != axis])
            lines.setdefault(label, []).append((c.point[axis], configs[c.id]))
    values = sorted({v for pts in lines.values() for v, _ in pts})
    rates: dict = {}
    for pts in lines.values():
        for v, c in pts:
            if c["max_rate"] is not None:
                rates.setdefault(v, []).append(c["max_rate"])
    base = configs.get(report["baseline"]) if report["baseline"] else None
    for ax, metric in zip(axes[:2], ("best_test_acc", "mean_stability")):
        for i, (label, pts) in enumerate(lines.items()):
            pts = sorted(((v, c["metrics"][metric]) for v, c in pts if c["metrics"][metric]["mean"] is not None),
                         key=lambda vs: vs[0])
            if not pts:
                continue
            x = [v for v, _ in pts]
            mean = np.array([s["mean"] for _, s in pts])
            err = [mean - [s["ci_low"] for _, s in pts], [s["ci_high"] for _, s in pts] - mean]
            ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, color=colors[i % len(colors)], label=label)
        if base is not None and base["metrics"][metric]["mean"] is not None and metric != "mean_stability":
            s = base["metrics"][metric]
            ax.axhline(s["mean"], color="0.4", linestyle="--", linewidth=1, label=f"{base['id']} (mean)")
            ax.axhspan(s["ci_low"], s["ci_high"], color="0.6", alpha=0.15, linewidth=0)
        ax.set_ylabel(f"{metric.replace('_', ' ')} ({UNITS[metric]}), mean and 95% CI")
    corr = {json_key(c["point"]): c for c in report["correlations"]
            if c["point"] is not None and list(c["point"]) == [axis] and c["x"] == "mean_stability" and c["y"] == "best_test_acc"}
    pts = [(v, corr[json_key({axis: v})]) for v in values if json_key({axis: v}) in corr]
    pts = [(v, c) for v, c in pts if c["pearson_r"] is not None]
    if pts:
        r = np.array([c["pearson_r"] for _, c in pts])
        err = [r - [c["pearson_ci_low"] for _, c in pts], [c["pearson_ci_high"] for _, c in pts] - r]
        axes[2].errorbar([v for v, _ in pts], r, yerr=err, marker="o", capsize=3, color="black")
    axes[2].axhline(0, color="0.6", linewidth=0.8)
    axes[2].set_ylim(-1.05, 1.05)
    axes[2].set_ylabel("Pearson r, stability vs best test accuracy (95% CI)")
    ticks = [f"{number(v)}\n({100 * max(rates[v]):.3g}%)" if v in rates else number(v) for v in values]
    for ax in axes:
        if values and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        ax.set_xticks(values, ticks, fontsize="small")
        ax.minorticks_off()
        ax.set_xlabel(f"{axis} (largest per-event rate)")
    axes[0].legend(fontsize="x-small")
    fig.suptitle(f"{plan.spec}: over {axis}, as the paper's Figure 3", fontsize="medium")
    return fig


def json_key(point: dict) -> str:
    import json

    return json.dumps(point, sort_keys=True)


def plot(plan: Plan, results: ResultsDir, report: dict, out: Path) -> list[Path]:
    """Write the report's PNGs into `out`: accuracy curves, stability vs accuracy, one plot per
    numeric sweep axis, and flatness vs stability where flatness was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    written = [_png(_accuracy_curves(plan, results, report, colors), out / "test_accuracy.png"),
               _png(_stability_scatter(plan, report, colors), out / "stability_vs_accuracy.png")]
    if report["lottery"]:
        written.append(_png(report_lottery.figure(plan, report["lottery"], colors), out / "lottery.png"))
    for axis in sweep_axes(plan):
        name = re.sub(r"[^A-Za-z0-9]+", "_", axis).strip("_")
        written.append(_png(_sweep(plan, report, axis, colors), out / f"sweep_{name}.png"))
    # 3. When measured: flatness (at each run's last measured epoch) vs stability.
    panels = [("hessian_top_sum", "sum of top Hessian eigenvalues"), ("grad_cov_trace", "Tr(C), gradient covariance")]
    points: dict[str, list[tuple[float, dict]]] = {}
    for r in report["manifest"]["runs"]:
        path = results.flatness_json(r["id"])
        if r["status"] == "done" and path.exists():
            try:
                epochs = read_json(path)["epochs"]
            except DamagedFile:
                continue
            if epochs:
                last = epochs[max(epochs, key=int)]
                points.setdefault(r["config"], []).append((r["summary"]["mean_stability"], last))
    if points:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
        for ax, (key, label) in zip(axes, panels):
            for i, c in enumerate(plan.configs):
                pts = [(x, m[key]) for x, m in points.get(c.id, []) if m.get(key) is not None]
                if pts:
                    ax.scatter(*zip(*pts), color=colors[i % len(colors)], label=c.id, s=25)
            ax.set_xlabel("mean stability over pruning epochs (%)")
            ax.set_ylabel(f"{label} (test loss, fixed subset)")
            ax.set_title(label)
            ax.legend(fontsize="small")
        fig.suptitle(f"{plan.spec}: flatness at each run's last measured epoch vs stability (one point per run; lower is flatter)")
        written.append(_png(fig, out / "flatness_vs_stability.png"))
    return written
