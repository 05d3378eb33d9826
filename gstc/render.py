"""Cells and tables shared by `gstc report` and `gstc diff`: terminal, markdown and HTML.

A table is (title, header, rows, caption). Two widths: `wide` (the markdown and HTML
outputs, and terminals of at least WIDE columns) shows every interval as
`mean [low, high]` and every test; the narrow form fits an 80-column terminal with
one line per row: `mean ±h`, where h is half the 95% interval's width, short metric
names, and the intervals of effect sizes left out (the caption says where to find them).
"""

from __future__ import annotations

import math
from typing import Any, Callable

WIDE = 120  # terminal columns from which the terminal shows the wide tables
SHORT = {"best_test_acc": "acc", "best_epoch": "epoch", "gen_gap": "gap", "mean_stability": "stab",
         "final_params": "params", "final_nonzero": "nonzero"}
LEGEND = ("acc: best test accuracy (%); gap: generalization gap, train - test (points); stab: mean stability "
          "over pruning epochs (%); epoch: epoch of the best test accuracy; params: final parameters; nonzero: final "
          "parameters not held at zero (weight and N:M granularity)")
EFFECT = {"dz": "d_z", "g": "g"}
CORRECTION = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no correction"}

Table = tuple[str, list[str], list[list[str]], str]


def number(value: Any, precision: int = 4) -> str:
    """A number in `precision` significant digits; counts (integral floats) as integers; None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))  # counts (parameters, epochs) read as counts, not 5.791e+05
        return f"{value:.{precision}g}"
    return str(value)


Format = Callable[[float], str]


def significant(precision: int) -> Format:
    """Numbers in `precision` significant digits (`number`)."""
    return lambda v: number(v, precision)


def decimals(digits: int) -> Format:
    """Numbers with `digits` decimals; integral values of at least 1000 (parameter counts) as integers."""
    return lambda v: str(int(v)) if float(v).is_integer() and abs(v) >= 1000 else f"{v:.{digits}f}"


def matched(mean: float, h: float) -> tuple[str, str]:
    """`mean` and `h` to the decimal of h's second significant digit (96.7 and 2.4; 99.694 and 0.083):
    no digit of the mean finer than its uncertainty, as measurements are written."""
    if h == 0 or not math.isfinite(h):
        return number(mean, 5), "0"
    places = max(0, 1 - math.floor(math.log10(abs(h))))
    return f"{mean:.{places}f}", f"{h:.{places}f}"


def estimate(mean: float | None, low: float | None, high: float | None, wide: bool, fmt: Format | None,
             sign: bool = False) -> str:
    """`mean [low, high]` (wide) or `mean ±h` (narrow), h half the interval's width; '-' without a mean.

    `fmt` None: the narrow form rounds both to h's second significant digit (`matched`), and
    the wide form writes 5 significant digits."""
    if mean is None:
        return "-"
    if fmt is None and not wide and low is not None and high is not None:
        m, h = matched(mean, (high - low) / 2)
        return ("+" + m if sign and not m.startswith("-") else m) + f" ±{h}"
    fmt = fmt or significant(5)
    m = fmt(mean)
    if sign and not m.startswith("-"):
        m = "+" + m
    if low is None or high is None:
        return m
    if wide:
        return f"{m} [{fmt(low)}, {fmt(high)}]"
    return f"{m} ±{fmt((high - low) / 2).lstrip('+')}"


def pvalue(p: float | None) -> str:
    """Two significant digits; below 1e-4 in scientific notation; '-' when untested."""
    if p is None:
        return "-"
    return f"{p:.1e}" if 0 < p < 1e-4 else f"{p:.2g}"


def comparisons(rows: list[dict], fam: dict, wide: bool, fmt: Callable[[str], Format | None], a_label: str, b_label: str,
                title: str) -> Table:
    """The table of a family of comparisons (`gstc.comparisons.compare` rows with `config`, `metric`, `a`, `b`);
    `fmt(metric)` formats that metric's numbers."""
    side = lambda s, f: "-" if not s else estimate(s["mean"], s["ci_low"], s["ci_high"], wide, f)  # noqa: E731
    body = []
    for r in rows:
        f = fmt(r["metric"])
        d = estimate(r["diff"], r["diff_ci_low"], r["diff_ci_high"], wide, f, sign=True)
        effect = "-" if r["effect_size"] is None else f"{r['effect_size']:+.2f}"
        if wide and r["effect_size"] is not None:
            effect = f"{EFFECT[r['effect']]} {effect} [{r['effect_ci_low']:+.2f}, {r['effect_ci_high']:+.2f}]"
        cells = [r["config"] if wide else short_id(r["config"]),
                 r["metric"] if wide else SHORT.get(r["metric"], r["metric"]), side(r["a"], f), side(r["b"], f),
                 d, effect, pvalue(r["p"]), pvalue(r["p_adj"])]
        if wide:
            cells += [pvalue(r["p_rank"]), f"paired, {r['pairs']}" if r["paired"] else "unpaired"]
        body.append(cells + ["*" if r["significant"] else ""])
    correction = CORRECTION[fam["correction"]]
    header = ["config", "metric", a_label, b_label, f"{b_label} - {a_label}" if wide else "diff", "effect", "p",
              "p adj" if wide else "adj"]
    if wide:
        header += ["rank test p", "runs"]
    header.append("")
    paired = [r for r in rows if r["p"] is not None and r["paired"]]
    unpaired = [r for r in rows if r["p"] is not None and not r["paired"]]
    notes = []
    if paired:
        notes.append(f"{len(paired)} paired by seed ({', '.join(sorted({str(r['pairs']) for r in paired}))} pairs): "
                     "p from a paired permutation test, rank test Wilcoxon signed-rank, effect d_z")
    if unpaired:
        why = sorted({r["pairing"] for r in unpaired})
        notes.append(f"{len(unpaired)} unpaired ({'; '.join(why)}): p from a permutation test of the pooled runs, "
                     "rank test Mann-Whitney U, effect Hedges' g")
    notes.append(f"* adjusted p < {fam['alpha']:g}, {correction} over {fam['comparisons']} comparisons"
                 if fam["correction"] != "none" else f"* p < {fam['alpha']:g}, {correction}")
    if fam.get("note"):
        notes.append(fam["note"])
    if not wide:
        notes.append("±: half the 95% CI; --format md or a wider terminal shows the intervals, effect CIs and rank tests")
    return title, header, body, "\n".join(notes)


def short_id(config_id: str) -> str:
    """`prune[prune.target=largest,prune.schedule.every=40]` -> `prune[target=largest,every=40]`:
    each swept path by its last part, unless two parts would read the same."""
    name, bracket, rest = config_id.partition("[")
    if not bracket or not rest.endswith("]"):
        return config_id
    items = [item.partition("=") for item in rest[:-1].split(",")]
    if any(not eq for _, eq, _ in items):
        return config_id
    last = [key.rsplit(".", 1)[-1] for key, _, _ in items]
    if len(set(last)) != len(last):
        return config_id
    return f"{name}[{','.join(f'{k}={v}' for k, (_, _, v) in zip(last, items))}]"
