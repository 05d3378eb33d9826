"""The lottery part of `gstc report`: accuracy against sparsity level by level, and the rewinding choices and
controls compared by seed.

For each lottery configuration (a chain: gstc.stages) and level: the level's sparsity (of
the pruned layers' weights, from the plan) and the best test accuracy of its done runs
(mean and 95% bootstrap CI over seeds). Then, at every level >= 1, each lottery
configuration against the first one (e.g. rewinding to init against the other rewinding
choices and the controls), paired by seed, corrected together (`gstc.comparisons.family`).
Level 0 is one run per seed, shared by every configuration: nothing to compare there.
"""

from __future__ import annotations

from typing import Any

from gstc import render
from gstc.comparisons import family
from gstc.diff import compare_runs
from gstc.manifest import BOOTSTRAP_SEED
from gstc.plan import Plan
from gstc.stats import summarize

METRIC = "best_test_acc"


def build(plan: Plan, manifest: dict, correction: str = "holm", paired: bool = True) -> dict | None:
    """{"levels": [...], "comparisons": [...], "family", "reference"}; None for a plan without lottery chains."""
    chains = [c for c in plan.configs if c.chain is not None]
    if not chains:
        return None
    runs = {r["id"]: r for r in manifest["runs"]}
    by_id = {r.id: r for r in plan.runs}

    def values(ids: list[str]) -> tuple[list[float], list[int]]:
        done = [runs[i] for i in ids if runs[i]["status"] == "done" and runs[i].get("summary")]
        return [float(r["summary"][METRIC]) for r in done], [int(r["seed"]) for r in done]

    levels = []
    for c in chains:
        for level, ids in enumerate(c.chain):
            accs, _ = values(ids)
            levels.append({"config": c.id, "level": level, "sparsity": by_id[ids[0]].stage.sparsity,
                           "runs": len(ids), "done": len(accs),
                           "acc": summarize(accs, seed=BOOTSTRAP_SEED) if accs else None})
    reference, comparisons = chains[0], []
    for c in chains[1:]:
        for level in range(1, min(len(c.chain), len(reference.chain))):
            (a, sa), (b, sb) = values(reference.chain[level]), values(c.chain[level])
            if a and b:
                comparisons.append({"config": f"L{level} {c.id}", "metric": METRIC,
                                    "a": summarize(a, seed=BOOTSTRAP_SEED), "b": summarize(b, seed=BOOTSTRAP_SEED),
                                    **compare_runs(a, b, sa, sb, paired)})
    return {"levels": levels, "comparisons": comparisons, "family": family(comparisons, correction),
            "reference": reference.id}


def tables(lottery: dict, wide: bool, fmt: Any) -> list[render.Table]:
    """Best test accuracy by level (a column per configuration), and the comparisons with the first one."""
    configs = list(dict.fromkeys(row["config"] for row in lottery["levels"]))
    by = {(row["config"], row["level"]): row for row in lottery["levels"]}
    depth = max(row["level"] for row in lottery["levels"])
    rows = []
    for level in range(depth + 1):
        sparsity = next(by[c, level]["sparsity"] for c in configs if (c, level) in by)
        cells = [str(level), f"{100 * sparsity:.1f}%"]
        for c in configs:
            row = by.get((c, level))
            s = row["acc"] if row else None
            cells.append("-" if s is None else render.estimate(s["mean"], s["ci_low"], s["ci_high"], wide, None)
                         + ("" if row["done"] == row["runs"] else f" ({row['done']}/{row['runs']})"))
        rows.append(cells)
    header = ["level", "sparsity"] + [c if wide else render.short_id(c) for c in configs]
    out = [("Lottery: best test accuracy (%) by level", header, rows,
            "mean [95% bootstrap CI] over seeds; sparsity: of the pruned layers' weights; level 0 (dense) is one run "
            "per seed, shared by every configuration")]
    if lottery["comparisons"]:
        out.append(render.comparisons(lottery["comparisons"], lottery["family"], wide, fmt, lottery["reference"],
                                      "config", f"Level by level (Ln: level n), compared with {lottery['reference']} "
                                      "(by seed)"))
    return out


def figure(plan: Plan, lottery: dict, colors: list[str]) -> Any:
    """The lottery-ticket figure: best test accuracy against the weights remaining (log scale, sparser to the
    right), one line per configuration with its 95% CI over seeds."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    configs = list(dict.fromkeys(row["config"] for row in lottery["levels"]))
    for i, c in enumerate(configs):
        pts = [row for row in lottery["levels"] if row["config"] == c and row["acc"] is not None]
        if not pts:
            continue
        x = [100 * (1 - row["sparsity"]) for row in pts]
        mean = [row["acc"]["mean"] for row in pts]
        err = [[row["acc"]["mean"] - row["acc"]["ci_low"] for row in pts],
               [row["acc"]["ci_high"] - row["acc"]["mean"] for row in pts]]
        ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, color=colors[i % len(colors)], label=c)
    ax.set_xscale("log")
    remaining = sorted({100 * (1 - row["sparsity"]) for row in lottery["levels"]}, reverse=True)
    ax.set_xticks(remaining, [f"{x:.3g}" for x in remaining], fontsize="small")  # the levels', not powers of 10
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining in the pruned layers (%)")
    ax.set_ylabel("best test accuracy (%), mean and 95% CI over seeds")
    ax.set_title(f"{plan.spec}: accuracy by lottery level", fontsize="medium")
    ax.legend(fontsize="small")
    return fig
