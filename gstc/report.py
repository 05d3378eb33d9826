"""`gstc report SPEC`: tables and PNG plots of a spec's results.

Everything comes from the run folders (through `build_manifest` and the epoch files),
never from a run's memory, and is deterministic: the same files give byte-identical
tables, JSON and PNGs (fixed bootstrap seed; PNG metadata without dates or versions).
Partial results are reported as such: the tables say how many runs of each
configuration are done, failed or damaged, and damaged runs are listed with the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as st

from gstc.manifest import SUMMARY_FIELDS, DamagedFile, ResultsDir, build_manifest, read_json, read_jsonl
from gstc.plan import Plan

UNITS = {"best_test_acc": "%", "best_epoch": "epoch", "gen_gap": "points", "mean_stability": "%", "final_params": ""}


def build(plan: Plan, results: ResultsDir) -> dict:
    """The report's numbers: per configuration metrics, rates, removed parameters; correlations."""
    manifest = build_manifest(plan, results)
    by_config = {c["id"]: c for c in manifest["configs"]}
    # Parameters of an unpruned run: the reference for "parameters removed".
    baseline = next((r["summary"]["final_params"] for r in manifest["runs"]
                     if r["status"] == "done" and not plan.config(r["config"]).schedules), None)
    configs = []
    for c in plan.configs:
        runs = [r for r in manifest["runs"] if r["config"] == c.id]
        params = by_config[c.id]["metrics"]["final_params"]["mean"]
        configs.append({
            "id": c.id,
            "runs": len(runs),
            "done": sum(r["status"] == "done" for r in runs),
            "failed": sum(r["status"] == "failed" for r in runs),
            "damaged": sum(r["status"] == "damaged" for r in runs),
            "max_rate": max((s.rate for s in c.schedules), default=None),
            "params_removed": (1 - params / baseline) if baseline and params is not None else None,
            "metrics": by_config[c.id]["metrics"],
        })
    done = sum(c["done"] for c in configs)
    damaged = [{"id": r["id"], "config": r["config"], "seed": r["seed"], **(r.get("error") or {})}
               for r in manifest["runs"] if r["status"] == "damaged"]
    return {"spec": plan.spec, "runs": len(plan.runs), "done": done, "partial": done < len(plan.runs),
            "configs": configs, "damaged": damaged, "correlations": manifest["correlations"], "manifest": manifest}


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1000:
        return str(int(value))
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def tables(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    header = ["configuration", "done", "max rate", "params removed"] + [f"{m} ({UNITS[m]})" if UNITS[m] else m
                                                                      for m in SUMMARY_FIELDS]
    rows = []
    for c in report["configs"]:
        problems = [f"{c[k]} {k}" for k in ("failed", "damaged") if c[k]]
        cells = [c["id"], f"{c['done']}/{c['runs']}" + (f" ({', '.join(problems)})" if problems else ""),
                 "-" if c["max_rate"] is None else f"{100 * c['max_rate']:.1f}%",
                 "-" if c["params_removed"] is None else f"{100 * c['params_removed']:.1f}%"]
        for m in SUMMARY_FIELDS:
            s = c["metrics"][m]
            cells.append("-" if s["mean"] is None else f"{_f(s['mean'])} [{_f(s['ci_low'])}, {_f(s['ci_high'])}]")
        rows.append(cells)
    corr = [[c["x"], c["y"], "all runs" if c["point"] is None else ", ".join(f"{k}={v}" for k, v in c["point"].items()),
             str(c["n"]), _f(c["pearson_r"], 3), _f(c["pearson_p"], 4) if c["pearson_p"] is None or c["pearson_p"] >= 1e-4
             else f"{c['pearson_p']:.1e}", _f(c["kendall_tau"], 3),
             _f(c["kendall_p"], 4) if c["kendall_p"] is None or c["kendall_p"] >= 1e-4 else f"{c['kendall_p']:.1e}"]
            for c in report["correlations"]]
    return [("Configurations (mean [95% bootstrap CI] over done runs)", header, rows),
            ("Correlations over runs", ["x", "y", "over", "n", "pearson r", "p", "kendall tau", "p"], corr)]


def markdown(report: dict) -> str:
    lines = [f"# {report['spec']}", ""]
    if report["partial"]:
        lines += [f"Partial results: {report['done']} of {report['runs']} runs done.", ""]
    for title, header, rows in tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------


def _png(fig: Any, path: Path) -> Path:
    """Write `fig` atomically as a PNG and close it."""
    import io

    import matplotlib.pyplot as plt

    from gstc.atomic import write_bytes

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


def plot(plan: Plan, results: ResultsDir, report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # 1. Test accuracy per epoch: mean over done runs with a 95% t-interval band.
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, c in enumerate(plan.configs):
        curves = [cv for cv in (_epochs(results, r["id"]) for r in report["manifest"]["runs"]
                                if r["config"] == c.id and r["status"] == "done") if cv]
        if not curves:
            continue
        n = min(len(cv) for cv in curves)
        acc = np.array([[e["test_acc"] for e in cv[:n]] for cv in curves])
        epochs = [e["epoch"] for e in curves[0][:n]]
        mean = acc.mean(axis=0)
        color = colors[i % len(colors)]
        ax.plot(epochs, mean, color=color, label=f"{c.id} (n={len(curves)})")
        if len(curves) > 1:
            half = st.t.ppf(0.975, len(curves) - 1) * acc.std(axis=0, ddof=1) / math.sqrt(len(curves))
            # Accuracy lies in [0, 100]: a t-interval of few runs (t = 12.7 for n = 2) can overshoot.
            ax.fill_between(epochs, np.clip(mean - half, 0, 100), np.clip(mean + half, 0, 100), color=color,
                            alpha=0.2, linewidth=0)
        for e in sorted({e for s in c.schedules for e, p in zip(s.epochs, s.pruned) if p > 0}):
            ax.axvline(e, color=color, alpha=0.15, linewidth=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(top=100.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{plan.spec}: test accuracy (mean, 95% CI band; thin lines: pruning epochs)")
    ax.legend(fontsize="small")
    written.append(_png(fig, out / "test_accuracy.png"))
    # 2. Stability vs best test accuracy, one point per run, with the regression line.
    fig, ax = plt.subplots(figsize=(7, 5))
    xs, ys = [], []
    for i, c in enumerate(plan.configs):
        pts = [(r["summary"]["mean_stability"], r["summary"]["best_test_acc"]) for r in report["manifest"]["runs"]
               if r["config"] == c.id and r["status"] == "done"]
        if pts:
            ax.scatter(*zip(*pts), color=colors[i % len(colors)], label=c.id, s=25)
            xs += [p[0] for p in pts]
            ys += [p[1] for p in pts]
    overall = next((c for c in report["correlations"] if c["x"] == "mean_stability" and c["y"] == "best_test_acc"
                    and c["point"] is None), None)
    if len(set(xs)) > 1:
        fit = st.linregress(xs, ys)
        grid = np.linspace(min(xs), max(xs), 2)
        r = overall["pearson_r"] if overall else fit.rvalue
        ax.plot(grid, fit.intercept + fit.slope * grid, color="black", linewidth=1,
                label=f"fit: r = {r:.2f}, p = {overall['pearson_p']:.2g}" if overall and overall["pearson_p"] is not None
                else f"fit: r = {r:.2f}")
    ax.set_xlabel("mean stability over pruning epochs (%)")
    ax.set_ylabel("best test accuracy (%)")
    ax.set_title(f"{plan.spec}: stability vs generalization (one point per run)")
    ax.legend(fontsize="small")
    written.append(_png(fig, out / "stability_vs_accuracy.png"))
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
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
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
