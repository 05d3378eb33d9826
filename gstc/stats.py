"""Statistics for reports and diffs (docs/design.md, "Measurements and statistics").

Everything here delegates to `scipy.stats`; this module only fixes the choices that make
reports reproducible, JSON-safe and honest about small samples:

- Bootstrap CIs use a generator seeded from `seed`, so the same values give bit-identical
  floats on every call (reports and manifests can be diffed byte for byte).
- The bootstrap method is "percentile", not scipy's default "BCa". Configurations have
  few runs (the paper uses 5 or 10 seeds), and BCa's two corrections are estimated from
  those same few points: the acceleration from a jackknife over n values and the bias
  correction from the share of resampled means below the observed one, which is a
  coarse, discrete quantity for small n and for integer metrics with ties (best_epoch,
  final_params). That makes BCa intervals jumpy for small n, and BCa is undefined
  (scipy warns and returns NaN) for degenerate samples. The percentile interval is
  defined for every non-constant sample, is what most papers report, and is easy to
  check by hand. Neither method reaches its nominal coverage at n = 5; the CI is a
  description of seed-to-seed spread, not a guarantee.
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
  procedure is three lines) or Benjamini-Hochberg (`scipy.stats.false_discovery_control`).
- Undefined results (the CI of a constant sample, a correlation with a constant input
  or fewer than 3 pairs) are handled explicitly: a degenerate CI is [mean, mean] and an
  undefined statistic is None rather than NaN, so JSON stays valid (allow_nan=False).

No torch here (gstc/ never imports it): numpy and scipy only.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any, Sequence

import numpy as np
from scipy import optimize as _opt
from scipy import special as _sp
from scipy import stats as _st

# Correlations are undefined below this many pairs: with 2 points Pearson's r is always +-1
# (p = 1) and Kendall's tau carries no information.
MIN_CORRELATION_PAIRS = 3

# scipy >= 1.15 takes `rng`; older versions only `random_state`. Both accept a
# numpy Generator, and both give the same resamples from the same Generator.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(_st.bootstrap).parameters else "random_state"

RESAMPLES = 10_000  # bootstrap resamples; permutation tests are exact when they have at most this many arrangements
CONFIDENCE = 0.95
ALPHA = 0.05  # a comparison whose adjusted p is below ALPHA is marked significant (*)
CORRECTIONS = ("holm", "bh", "none")
# A spread below this share of the values' size is rounding error (float64 carries about 16 digits).
SPREAD_RTOL = 1e-9


def _sample(values: Sequence[float], name: str) -> np.ndarray:
    data = np.asarray(list(values), dtype=float)
    if data.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence of numbers, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name}: values must be finite numbers, got {data.tolist()}")
    return data


def _number(value: Any) -> float | None:
    """A finite float, or None for NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def summarize(values: Sequence[float], seed: int = 0, confidence: float = 0.95,
              resamples: int = 10_000) -> dict:
    """n, mean, sample std (ddof=1) and a bootstrap CI of the mean (percentile method).

    `seed` fixes the resampling generator: identical inputs give identical floats.
    n == 0 gives None for every statistic; n == 1 gives std 0.0 and CI [mean, mean];
    a constant sample gives CI [mean, mean] (its bootstrap distribution is one point).
    """
    data = _sample(values, "summarize")
    n = int(data.size)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = float(np.mean(data))
    std = float(np.std(data, ddof=1)) if n > 1 else 0.0
    if n == 1 or np.ptp(data) == 0:
        low = high = mean
    else:
        result = _st.bootstrap(
            (data,), np.mean, n_resamples=resamples, confidence_level=confidence,
            method="percentile", vectorized=True, **{_RNG_KEYWORD: np.random.default_rng(seed)},
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high}




def _rng(seed: int) -> dict:
    return {_RNG_KEYWORD: np.random.default_rng(seed)}


def _tau_b(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Kendall's tau-b of the last axis, vectorized over the others, for the bootstrap.

    tau-b = sum sign(dx) sign(dy) / sqrt(sum sign(dx)^2 * sum sign(dy)^2) over all pairs:
    the concordant minus discordant pairs over the pairs untied in x and in y, which is
    scipy's definition (tests/gstc/test_stats.py checks it against `kendalltau`, ties
    included). scipy's `kendalltau` loops over a batch in Python: 10,000 resamples take
    about 1 s there and milliseconds here. NaN where x or y is constant.
    """
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    num = (sx * sy).sum(axis=(-2, -1))
    den = np.sqrt((sx * sx).sum(axis=(-2, -1)) * (sy * sy).sum(axis=(-2, -1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def correlate(x: Sequence[float], y: Sequence[float], seed: int = 0, confidence: float = CONFIDENCE,
              resamples: int = RESAMPLES) -> dict:
    """Pearson r and Kendall tau-b with two-sided p-values and confidence intervals.

    Pearson's interval is scipy's (Fisher's z transform, `PearsonRResult.confidence_interval`).
    Kendall's is a percentile bootstrap over the (x, y) pairs (seeded by `seed`); a
    resample whose x or y is constant has no tau and is left out, and the share left out
    is `kendall_ci_undefined` (with n = 6 distinct values, about 0.1% of resamples).
    None for every value when it is undefined: fewer than 3 pairs, or x or y constant (to
    rounding: where scipy warns that the input is nearly constant).
    """
    xs, ys = _sample(x, "correlate x"), _sample(y, "correlate y")
    if xs.size != ys.size:
        raise ValueError(f"correlate: x has {xs.size} values, y has {ys.size}")
    n = int(xs.size)
    out: dict[str, Any] = {"n": n, "pearson_r": None, "pearson_p": None, "pearson_ci_low": None,
                           "pearson_ci_high": None, "kendall_tau": None, "kendall_p": None,
                           "kendall_ci_low": None, "kendall_ci_high": None, "kendall_ci_undefined": None}
    # Checked up front, so scipy never warns about (or returns NaN for) a constant input.
    if n < MIN_CORRELATION_PAIRS or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pearson = _st.pearsonr(xs, ys)
    if any(issubclass(w.category, getattr(_st, "NearConstantInputWarning", ())) for w in caught):
        return out  # constant up to rounding (a gap of 1.0 computed as 0.99999 and 1.00001): no correlation to speak of
    with np.errstate(divide="ignore", invalid="ignore"):  # n = 3: Fisher's z has infinite spread, CI [-1, 1]
        pci = pearson.confidence_interval(confidence_level=confidence)
    kendall = _st.kendalltau(xs, ys)
    with warnings.catch_warnings():
        # scipy warns when a resample's statistic is NaN (a constant resample): handled below
        warnings.simplefilter("ignore", getattr(_st, "DegenerateDataWarning", RuntimeWarning))
        boot = _st.bootstrap((xs, ys), _tau_b, paired=True, vectorized=True, n_resamples=resamples,
                             method="percentile", batch=max(1, 4_000_000 // (n * n)), **_rng(seed))
    dist = boot.bootstrap_distribution
    defined = dist[np.isfinite(dist)]
    alpha = 1 - confidence
    if defined.size:
        # scipy's percentile interval (np.percentile, linear interpolation) over the defined resamples
        low, high = np.percentile(defined, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        out.update(kendall_ci_low=_number(low), kendall_ci_high=_number(high))
    out.update(pearson_r=_number(pearson.statistic), pearson_p=_number(pearson.pvalue),
               pearson_ci_low=_number(pci.low), pearson_ci_high=_number(pci.high),
               kendall_tau=_number(kendall.statistic), kendall_p=_number(kendall.pvalue),
               kendall_ci_undefined=float(1 - defined.size / dist.size))
    return out


# --- comparisons -----------------------------------------------------------------------


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
    xa, xb = _sample(a, "compare A"), _sample(b, "compare B")
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
                               method="percentile", vectorized=True, **_rng(seed)).confidence_interval
            low, high = float(ci.low), float(ci.high)
        if np.all(d == 0):
            p = p_rank = 1.0  # identical pairs: scipy's Wilcoxon would divide by zero
        else:
            p = float(_st.permutation_test((xa, xb), _mean_diff, permutation_type="samples", alternative="two-sided",
                                           n_resamples=resamples, vectorized=True, **_rng(seed)).pvalue)
            p_rank = float(_st.wilcoxon(xb, xa).pvalue)
        effect = effect_paired(d, confidence)
    else:
        if np.ptp(xa) == 0 and np.ptp(xb) == 0:
            low = high = out["diff"]  # both sides constant: every resample gives the same difference
        else:
            ci = _st.bootstrap((xa, xb), _mean_diff, n_resamples=resamples, confidence_level=confidence,
                               method="percentile", vectorized=True, **_rng(seed)).confidence_interval
            low, high = float(ci.low), float(ci.high)
        p = float(_st.permutation_test((xa, xb), _mean_diff, permutation_type="independent", alternative="two-sided",
                                       n_resamples=resamples, vectorized=True, **_rng(seed)).pvalue)
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
