"""Comparing configurations: B against A, paired by seed where it can be, and a family of such
comparisons corrected together (docs/design.md, "Measurements and statistics").

Every number comes from `scipy.stats` with generators seeded as in `gstc.stats`; this
module fixes the choices:

- Two configurations run with the same seeds share their initialization, data order,
  augmentation and random targets (docs/runtime.md, "Same seed, same randomness"), so `compare`
  pairs their runs by seed: a paired permutation test (sign flips of the per-seed
  differences; exact, every one of the 2^n flips, up to 13 pairs) and the Wilcoxon
  signed-rank test, the mean paired difference with a bootstrap CI, and the paired
  standardized difference d_z. Where the seeds do not match it falls back to unpaired
  tests (permutation of the pooled runs, Mann-Whitney U, Hedges' g) and says why.
- An exact test on n pairs cannot give a two-sided p below 2 / 2^n (0.0625 for 5 seeds):
  `compare` reports that floor as `min_p`, so a report can say when no difference could
  have been marked.
- Effect sizes get confidence intervals from the noncentral t distribution (the
  standard interval for a standardized mean difference, exact under normality); a
  bootstrap of a ratio with a standard deviation underneath is undefined whenever a
  resample repeats one value, which happens often at n = 5.
- `adjust` corrects a family of p-values: Holm's step-down (scipy has no Holm; the
  procedure is three lines) or Benjamini-Hochberg (`scipy.stats.false_discovery_control`);
  `family` applies it to one diff's or report's comparisons.
- An undefined statistic (no spread, one run on a side) is None rather than NaN, so JSON
  stays valid (allow_nan=False).

No torch here (gstc/ never imports it): numpy and scipy only.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import optimize as _opt
from scipy import special as _sp
from scipy import stats as _st

from gstc.stats import CONFIDENCE, RESAMPLES, as_sample, seeded

ALPHA = 0.05  # a comparison whose adjusted p is below ALPHA is marked significant (*)
CORRECTIONS = ("holm", "bh", "none")
# A spread below this share of the values' size is rounding error (float64 carries about 16 digits).
SPREAD_RTOL = 1e-9


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def _ncp_interval(t: float, df: float, confidence: float) -> tuple[float, float]:
    """Noncentrality parameters whose noncentral t puts `t` at its upper and lower (1 - confidence)/2 tails.

    The CDF of the noncentral t at t falls as the noncentrality grows, so each bound is
    the root of one monotone function; the bracket doubles until it holds the root.
    """
    def cdf(ncp: float) -> float:
        with np.errstate(all="ignore"):
            value = float(_st.nct.cdf(t, df, ncp))
        # Far from t scipy's series can give NaN where the CDF is 1 (ncp << t) or 0 (ncp >> t).
        return value if math.isfinite(value) else float(ncp < t)

    def bound(q: float) -> float:
        width = 1.0
        while cdf(t - width) < q or cdf(t + width) > q:
            width *= 2
        return float(_opt.brentq(lambda ncp: cdf(ncp) - q, t - width, t + width, xtol=1e-12))

    alpha = 1 - confidence
    return bound(1 - alpha / 2), bound(alpha / 2)


def hedges_correction(df: float) -> float:
    """J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)): Hedges' exact small-sample factor."""
    return float(np.exp(_sp.gammaln(df / 2) - _sp.gammaln((df - 1) / 2)) / math.sqrt(df / 2))


def _no_spread(sd: float, values: np.ndarray) -> bool:
    """A standard deviation that is rounding error: 100 - 99.72 and 99.72 - 99.44 differ in the 14th digit."""
    return sd <= SPREAD_RTOL * max(1.0, float(np.max(np.abs(values))))


def effect_paired(d: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """d_z = mean(d) / sd(d) of paired differences, with its noncentral-t CI; None when sd(d) is 0
    (to rounding: every seed moved by the same amount, and d_z would be a ratio of rounding errors)."""
    n = d.size
    if n < 2:
        return None
    sd = float(np.std(d, ddof=1))
    if _no_spread(sd, d):
        return None
    dz = float(np.mean(d)) / sd
    low, high = _ncp_interval(dz * math.sqrt(n), n - 1, confidence)
    return dz, low / math.sqrt(n), high / math.sqrt(n)


def effect_unpaired(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """Hedges' g = J (mean(b) - mean(a)) / pooled sd, with its noncentral-t CI; None when the pooled sd is 0
    (to rounding)."""
    na, nb = a.size, b.size
    df = na + nb - 2
    if na < 2 or nb < 2:
        return None
    pooled = math.sqrt(((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / df)
    if _no_spread(pooled, np.concatenate([a, b])):
        return None
    scale = math.sqrt(1 / na + 1 / nb)
    d = (float(np.mean(b)) - float(np.mean(a))) / pooled
    j = hedges_correction(df)
    low, high = _ncp_interval(d / scale, df, confidence)
    return j * d, j * low * scale, j * high * scale


def pair_up(a: Sequence[float], b: Sequence[float], seeds_a: Sequence[int] | None,
            seeds_b: Sequence[int] | None) -> tuple[list[int] | None, str | None]:
    """The seeds to pair A's and B's runs by, or None and why they cannot be paired.

    Runs are paired only when both sides have exactly the same seeds, each once: dropping
    the runs of one side that lack a partner would compare other runs than the means.
    """
    if seeds_a is None or seeds_b is None:
        return None, "no seeds given"
    sa, sb = list(seeds_a), list(seeds_b)
    if len(sa) != len(a) or len(sb) != len(b):
        raise ValueError(f"pair_up: {len(sa)} seeds for {len(a)} values, {len(sb)} for {len(b)}")
    if len(set(sa)) != len(sa) or len(set(sb)) != len(sb):
        return None, "a seed appears twice on one side"
    if set(sa) != set(sb):
        only_a, only_b = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
        parts = [f"only A has seed{'s' * (len(only_a) > 1)} {', '.join(map(str, only_a))}"] if only_a else []
        parts += [f"only B has seed{'s' * (len(only_b) > 1)} {', '.join(map(str, only_b))}"] if only_b else []
        return None, "seeds differ: " + "; ".join(parts)
    return sorted(sa), None


def compare(a: Sequence[float], b: Sequence[float], seeds_a: Sequence[int] | None = None,
            seeds_b: Sequence[int] | None = None, seed: int = 0, confidence: float = CONFIDENCE,
            resamples: int = RESAMPLES) -> dict:
    """B against A: the difference of means with its bootstrap CI, two tests and an effect size.

    Paired by seed when both sides ran the same seeds (`pair_up`): a paired permutation
    test of the mean difference (exact for up to 13 pairs: 2^13 = 8,192 sign flips), the
    Wilcoxon signed-rank test, the bootstrap CI of the mean paired difference and d_z.
    Otherwise unpaired, with `pairing` saying why: a permutation test over the pooled
    runs, Mann-Whitney U, a two-sample bootstrap CI and Hedges' g. Every test is
    two-sided and every number comes from scipy.stats with generators seeded by `seed`.
    """
    xa, xb = as_sample(a, "compare A"), as_sample(b, "compare B")
    seeds, why = pair_up(xa, xb, seeds_a, seeds_b)
    paired = seeds is not None and len(seeds) >= 2
    out: dict[str, Any] = {
        "paired": paired, "pairs": len(seeds) if paired else None,
        "pairing": None if paired else (why or "one run on each side"),
        "diff": None, "diff_ci_low": None, "diff_ci_high": None,
        "test": "paired permutation" if paired else "permutation", "p": None, "min_p": None,
        "rank_test": "wilcoxon" if paired else "mann-whitney", "p_rank": None,
        "effect": "dz" if paired else "g", "effect_size": None, "effect_ci_low": None, "effect_ci_high": None,
    }
    if not xa.size or not xb.size:
        return out
    if paired:
        order_a = {s: i for i, s in enumerate(seeds_a)}  # type: ignore[arg-type]
        order_b = {s: i for i, s in enumerate(seeds_b)}  # type: ignore[arg-type]
        xa = np.array([xa[order_a[s]] for s in seeds])
        xb = np.array([xb[order_b[s]] for s in seeds])
        arrangements = 2 ** xa.size
    out["diff"] = float(xb.mean() - xa.mean())  # after pairing: the same floats whatever the runs' order
    if not paired:
        if xa.size < 2 or xb.size < 2:
            return out  # one run on a side: no spread to resample
        arrangements = math.comb(xa.size + xb.size, xa.size)
    # Two-sided: the extreme arrangement and its mirror; a Monte Carlo test counts the observed one too.
    out["min_p"] = min(1.0, 2 / arrangements if arrangements <= resamples else 2 / (resamples + 1))
    if np.ptp(np.concatenate([xa, xb])) == 0:
        out.update(diff_ci_low=0.0, diff_ci_high=0.0, p=1.0, p_rank=1.0)
        return out
    if paired:
        d = xb - xa
        if _no_spread(float(np.ptp(d)), d):
            low = high = float(np.mean(d))  # every seed moved by the same amount: the bootstrap has one point
        else:
            ci = _st.bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=confidence,
                               method="percentile", vectorized=True, **seeded(seed)).confidence_interval
            low, high = float(ci.low), float(ci.high)
        if np.all(d == 0):
            p = p_rank = 1.0  # identical pairs: scipy's Wilcoxon would divide by zero
        else:
            p = float(_st.permutation_test((xa, xb), _mean_diff, permutation_type="samples", alternative="two-sided",
                                           n_resamples=resamples, vectorized=True, **seeded(seed)).pvalue)
            p_rank = float(_st.wilcoxon(xb, xa).pvalue)
        effect = effect_paired(d, confidence)
    else:
        if np.ptp(xa) == 0 and np.ptp(xb) == 0:
            low = high = out["diff"]  # both sides constant: every resample gives the same difference
        else:
            ci = _st.bootstrap((xa, xb), _mean_diff, n_resamples=resamples, confidence_level=confidence,
                               method="percentile", vectorized=True, **seeded(seed)).confidence_interval
            low, high = float(ci.low), float(ci.high)
        p = float(_st.permutation_test((xa, xb), _mean_diff, permutation_type="independent", alternative="two-sided",
                                       n_resamples=resamples, vectorized=True, **seeded(seed)).pvalue)
        p_rank = float(_st.mannwhitneyu(xb, xa, alternative="two-sided").pvalue)
        effect = effect_unpaired(xa, xb, confidence)
    out.update(diff_ci_low=low, diff_ci_high=high, p=p, p_rank=p_rank)
    if effect is not None:
        out.update(effect_size=effect[0], effect_ci_low=effect[1], effect_ci_high=effect[2])
    return out


def adjust(pvalues: Sequence[float | None], method: str = "holm") -> list[float | None]:
    """Family-wise (Holm) or false-discovery-rate (Benjamini-Hochberg) adjusted p-values.

    None entries (comparisons without a test) are left out of the family and stay None.
    Holm: sort the m p-values, multiply the k-th smallest by m - k + 1, keep the running
    maximum, cap at 1; "reject where adjusted p < alpha" is then exactly Holm's step-down
    procedure. "bh" is `scipy.stats.false_discovery_control(method="bh")`; "none" copies.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}: choose from {', '.join(CORRECTIONS)}")
    index = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if not index:
        return out
    ps = np.array([pvalues[i] for i in index], dtype=float)
    if method == "none":
        adjusted = ps
    elif method == "bh":
        adjusted = _st.false_discovery_control(ps, method="bh")
    else:
        order = np.argsort(ps, kind="stable")
        m = ps.size
        stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * ps[order]))
        adjusted = np.empty(m)
        adjusted[order] = stepped
    for i, value in zip(index, adjusted):
        out[i] = float(value)
    return out


def _floor_factor(comparisons: int, method: str) -> int:
    """What the correction multiplies the family's smallest p by, at worst (Holm: m) or at best (BH, none: 1)."""
    return max(1, comparisons) if method == "holm" else 1


def seeds_needed(comparisons: int, alpha: float = ALPHA, method: str = "holm") -> int:
    """Fewest pairs n for which an exact paired test's smallest p, 2 / 2^n, can still be below
    `alpha` after the correction of a family of `comparisons` (Holm multiplies the smallest
    p by m; Benjamini-Hochberg can leave it as it is, when every p of the family is small)."""
    factor = _floor_factor(comparisons, method)
    n = 1
    while factor * 2 / 2 ** n >= alpha:
        n += 1
    return n


def family(rows: list[dict], correction: str = "holm", alpha: float = ALPHA) -> dict:
    """Correct the p-values of one diff's or report's comparisons together.

    Sets each row's `p_adj` (`adjust` over every row with a p) and `significant`
    (p_adj < alpha), and returns the family: its size, correction, alpha, and a `note`
    when no comparison could have been marked whatever the data (every test's smallest
    possible p, `min_p`, times the correction's factor is at least alpha), with the
    seeds that would allow it when the tests are paired.
    """
    adjusted = adjust([r["p"] for r in rows], correction)
    for row, q in zip(rows, adjusted):
        row["p_adj"] = q
        row["significant"] = q is not None and q < alpha
    tested = [r for r in rows if r["p"] is not None]
    out = {"comparisons": len(tested), "correction": correction, "alpha": alpha, "note": None}
    floor = min((r["min_p"] for r in tested), default=None)
    factor = _floor_factor(len(tested), correction)
    if floor is not None and floor * factor >= alpha:
        pairs = sorted({r["pairs"] for r in tested if r["paired"]})
        what = (f"with {', '.join(map(str, pairs))} pairs an exact paired test cannot give p below {floor:.3g}"
                if pairs and all(r["paired"] for r in tested) else f"these tests cannot give p below {floor:.3g}")
        if factor > 1:
            what += f", and Holm over {len(tested)} comparisons multiplies the smallest p by {factor}"
        note = f"no difference can reach p < {alpha:g}: {what}"
        if pairs and all(r["paired"] for r in tested):
            note += f"; {seeds_needed(len(tested), alpha, correction)} seeds would allow it"
        out["note"] = note
    return out
