"""`gstc diff A B`: what changed between two specs (or manifests), and did it matter.

Four parts, computed from plans and run folders only:

1. configuration differences: the resolved configurations of matched configurations,
   flattened to dotted paths (`train.optimizer.lr: 0.001 -> 0.0003`);
2. plan differences: configurations and runs only on one side, per-layer event
   schedules that differ;
3. metrics, where both sides have finished runs: per matched configuration and tested
   metric (`OUTCOMES` unless chosen), A's and B's mean with a 95% bootstrap CI and
   `gstc.comparisons.compare`: runs paired by seed where both sides ran the same seeds (else
   unpaired, saying why), the difference B - A with a bootstrap CI, a permutation test
   and a rank test, an effect size with its CI; the p-values of all rows corrected
   together (`gstc.comparisons.family`: Holm by default), `*` on the adjusted p;
4. provenance, where both sides have runs: which code (gstc version, source commit and
   whether it had uncommitted changes) and which environment (Python, torch, CUDA,
   cuDNN, device, host, threads) computed them, each value with its number of runs,
   shown where the two sides differ: two result sets from different code cannot pass
   for one.

Configurations match by id; when no id matches and each side has exactly one
configuration, those two are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gstc import render
from gstc.comparisons import ALPHA, compare, family
from gstc.jsonio import read_json
from gstc.manifest import build_manifest, metric_values
from gstc.paths import ResultsDir
from gstc.plan import Plan, PlanConfig
from gstc.provenance import PROVENANCE, tally
from gstc.stats import summarize
from gstc.summary import OUTCOMES, SUMMARY_FIELDS

SEED = 0  # resampling seed of the difference CI and the permutation test
# Which direction is better, for --fail-if-worse (best_epoch has none).
BETTER = {"best_test_acc": "higher", "gen_gap": "lower", "mean_stability": "higher", "final_params": "lower",
          "final_nonzero": "lower"}


@dataclass
class Side:
    label: str
    plan: Plan
    manifest: dict | None  # None: no results yet


def load_side(path: str, results: ResultsDir) -> Side:
    """A spec (compiled; results read from `results`) or a manifest.json."""
    if path.endswith(".json"):
        manifest = read_json(path)
        return Side(path, Plan.model_validate(manifest["plan"]), manifest)
    from gstc.compile import compile_file

    plan = compile_file(path)
    has_runs = any(results.run_json(r.id).exists() for r in plan.runs)
    return Side(path, plan, build_manifest(plan, results) if has_runs else None)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings (and lists of mappings) -> {dotted path: leaf value}."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


def match(a: Plan, b: Plan) -> list[tuple[PlanConfig, PlanConfig]]:
    ids_b = {c.id: c for c in b.configs}
    pairs = [(c, ids_b[c.id]) for c in a.configs if c.id in ids_b]
    if not pairs and len(a.configs) == 1 and len(b.configs) == 1:
        pairs = [(a.configs[0], b.configs[0])]
    return pairs


def _change(x: Any, y: Any) -> Any:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
    return y - x if numeric else None


def config_rows(pairs: list[tuple[PlanConfig, PlanConfig]], show_all: bool) -> list[dict]:
    rows = []
    for ca, cb in pairs:
        fa, fb = flatten(ca.resolved.model_dump(mode="json")), flatten(cb.resolved.model_dump(mode="json"))
        for path in list(fa) + [p for p in fb if p not in fa]:
            x, y = fa.get(path), fb.get(path)
            if x != y or show_all:
                rows.append({"config": ca.id if ca.id == cb.id else f"{ca.id} / {cb.id}", "path": path,
                             "a": x, "b": y, "change": _change(x, y) if x != y else 0 if show_all and _change(x, y) is not None else None,
                             "changed": x != y})
    return rows


def plan_diff(a: Plan, b: Plan, pairs: list[tuple[PlanConfig, PlanConfig]]) -> dict:
    runs_a, runs_b = {r.id: r for r in a.runs}, {r.id: r for r in b.runs}
    matched_a, matched_b = {p[0].id for p in pairs}, {p[1].id for p in pairs}
    schedules = []
    for ca, cb in pairs:
        sa, sb = {s.layer: s for s in ca.schedules}, {s.layer: s for s in cb.schedules}
        for layer in list(sa) + [l for l in sb if l not in sa]:
            x, y = sa.get(layer), sb.get(layer)
            key = lambda s: None if s is None else {"epochs": s.epochs, "pruned": s.pruned, "scoring": s.scoring.model_dump(mode="json"),  # noqa: E731
                                                    "target": s.target, "mode": s.mode.model_dump(mode="json")}
            if key(x) != key(y):
                schedules.append({"config": ca.id, "layer": layer, "a": key(x), "b": key(y)})
    return {
        "configs_only_a": [c.id for c in a.configs if c.id not in matched_a],
        "configs_only_b": [c.id for c in b.configs if c.id not in matched_b],
        "runs_only_a": [{"id": r.id, "config": r.config, "seed": r.seed} for i, r in runs_a.items() if i not in runs_b],
        "runs_only_b": [{"id": r.id, "config": r.config, "seed": r.seed} for i, r in runs_b.items() if i not in runs_a],
        "runs_shared": sum(1 for i in runs_a if i in runs_b),
        "schedules": schedules,
    }


UNPAIRED = "--unpaired given"


def compare_runs(a: list[float], b: list[float], seeds_a: list[int], seeds_b: list[int], paired: bool = True) -> dict:
    """`gstc.comparisons.compare` of two configurations' runs, by seed unless `paired` is False."""
    if paired:
        return compare(a, b, seeds_a, seeds_b, seed=SEED)
    return compare(a, b, seed=SEED) | {"pairing": UNPAIRED}


def metric_rows(side_a: Side, side_b: Side, pairs: list[tuple[PlanConfig, PlanConfig]],
                metrics: tuple[str, ...] = OUTCOMES, paired: bool = True) -> list[dict]:
    if side_a.manifest is None or side_b.manifest is None:
        return []
    rows = []
    for ca, cb in pairs:
        for metric in metrics:
            (a, sa), (b, sb) = metric_values(side_a.manifest, ca.id, metric), metric_values(side_b.manifest, cb.id, metric)
            if not a and not b:
                continue
            rows.append({"config": ca.id if ca.id == cb.id else f"{ca.id} / {cb.id}", "metric": metric,
                         "a": summarize(a, seed=SEED) if a else None, "b": summarize(b, seed=SEED) if b else None,
                         **compare_runs(a, b, sa, sb, paired)})
    return rows


def provenance_rows(side_a: Side, side_b: Side, show_all: bool) -> list[dict]:
    """Fields whose values differ between the runs of A and those of B (all fields with --all)."""
    if side_a.manifest is None or side_b.manifest is None:
        return []
    pa, pb = tally(side_a.manifest), tally(side_b.manifest)
    return [{"field": f, "a": pa[f], "b": pb[f], "changed": pa[f].keys() != pb[f].keys()}
            for f in PROVENANCE if show_all or pa[f].keys() != pb[f].keys()]


def diff(path_a: str, path_b: str, results: ResultsDir, show_all: bool = False,
         metrics: tuple[str, ...] = OUTCOMES, correction: str = "holm", paired: bool = True) -> dict:
    side_a, side_b = load_side(path_a, results), load_side(path_b, results)
    pairs = match(side_a.plan, side_b.plan)
    rows = metric_rows(side_a, side_b, pairs, metrics, paired)
    seeds_a, seeds_b = sorted({r.seed for r in side_a.plan.runs}), sorted({r.seed for r in side_b.plan.runs})
    return {
        "a": {"label": side_a.label, "spec": side_a.plan.spec, "results": side_a.manifest is not None},
        "b": {"label": side_b.label, "spec": side_b.plan.spec, "results": side_b.manifest is not None},
        "seeds": {"a": seeds_a, "b": seeds_b, "changed": seeds_a != seeds_b},
        "matched": [[ca.id, cb.id] for ca, cb in pairs],
        "config": config_rows(pairs, show_all),
        "plan": plan_diff(side_a.plan, side_b.plan, pairs),
        "metrics": rows,
        "family": family(rows, correction),
        "provenance": provenance_rows(side_a, side_b, show_all),
    }


def worse(report: dict, metric: str) -> list[dict]:
    """Metric rows where B is significantly worse than A."""
    if metric not in BETTER:
        raise ValueError(f"--fail-if-worse: {metric!r} has no better direction; choose from {', '.join(BETTER)}")
    sign = 1 if BETTER[metric] == "higher" else -1
    return [r for r in report["metrics"] if r["metric"] == metric and r["significant"] and sign * r["diff"] < 0]


# --- rendering -----------------------------------------------------------------------


def fmt(value: Any, precision: int) -> str:
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, separators=(",", ":"))
    return render.number(value, precision)


def _epochs(s: dict | None, precision: int) -> str:
    if s is None:
        return "(not pruned)"
    e = s["epochs"]
    when = ", ".join(map(str, e)) if len(e) <= 4 else f"{e[0]}, {e[1]}, ..., {e[-1]} ({len(e)} events)"
    return f"{s['target']} {s['scoring']} at {when}; pruned {sum(s['pruned'])}"


def tables(report: dict, precision: int, wide: bool = True) -> list[render.Table]:
    """(title, header, rows, caption) of every table, shared by the terminal and markdown formats."""
    p = precision
    out = []
    cfg = [[r["config"], r["path"], fmt(r["a"], p), fmt(r["b"], p), fmt(r["change"], p)] for r in report["config"]]
    if report["seeds"]["changed"]:
        cfg.insert(0, ["(spec)", "seeds", fmt(report["seeds"]["a"], p), fmt(report["seeds"]["b"], p), "-"])
    out.append(("Configuration", ["config", "path", "A", "B", "change"], cfg, ""))
    plan = report["plan"]
    rows = [[f"only in A: {c}", "", ""] for c in plan["configs_only_a"]] + [[f"only in B: {c}", "", ""] for c in plan["configs_only_b"]]
    rows += [[f"{s['config']}: {s['layer']}", _epochs(s["a"], p), _epochs(s["b"], p)] for s in plan["schedules"]]
    out.append(("Plan", ["what", "A", "B"], rows, f"runs: {plan['runs_shared']} shared, {len(plan['runs_only_a'])} "
                f"only in A, {len(plan['runs_only_b'])} only in B"))
    if report["metrics"]:
        out.append(render.comparisons(report["metrics"], report["family"], wide,
                                      lambda m: render.significant(p) if wide else None, "A", "B",
                                      "Metrics (mean with 95% bootstrap CI; B - A by seed where seeds match)"))
    if report.get("provenance"):
        values = lambda counts: "; ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in counts.items()) or "-"  # noqa: E731
        rows = [[r["field"], values(r["a"]), values(r["b"]), "differs" if r["changed"] else ""]
                for r in report["provenance"]]
        out.append(("Provenance (the code and environment that computed the runs)", ["field", "A", "B", ""], rows, ""))
    return out


def markdown(report: dict, precision: int) -> str:
    lines = [f"**A**: `{report['a']['label']}`  **B**: `{report['b']['label']}`", ""]
    for title, header, rows, caption in tables(report, precision):
        lines += [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows] or []
        if not rows:
            lines.append("| " + " | ".join(["(no differences)"] + [""] * (len(header) - 1)) + " |")
        lines.append("")
        if caption:
            lines += [line + "  " for line in caption.splitlines()] + [""]
    return "\n".join(lines)


__all__ = ["diff", "worse", "tables", "markdown", "flatten", "Path", "SUMMARY_FIELDS", "ALPHA"]
