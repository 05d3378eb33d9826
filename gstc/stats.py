"""Estimation for reports and manifests: a sample's mean with its confidence interval, and correlations
(docs/design.md, "Measurements and statistics"). Comparing configurations is `gstc.comparisons`.

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
from scipy import stats as _st

# Correlations are undefined below this many pairs: with 2 points Pearson's r is always +-1
# (p = 1) and Kendall's tau carries no information.
MIN_CORRELATION_PAIRS = 3

# scipy >= 1.15 takes `rng`; older versions only `random_state`. Both accept a
# numpy Generator, and both give the same resamples from the same Generator.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(_st.bootstrap).parameters else "random_state"

RESAMPLES = 10_000  # bootstrap resamples; permutation tests are exact when they have at most this many arrangements
CONFIDENCE = 0.95


def as_sample(values: Sequence[float], name: str) -> np.ndarray:
    """`values` as a flat float array; ValueError naming `name` when they are not all finite numbers."""
    data = np.asarray(list(values), dtype=float)
    if data.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence of numbers, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name}: values must be finite numbers, got {data.tolist()}")
    return data


def seeded(seed: int) -> dict:
    """The keyword that hands scipy's resampling functions a generator seeded by `seed` (`rng` or `random_state`)."""
    return {_RNG_KEYWORD: np.random.default_rng(seed)}


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
    data = as_sample(values, "summarize")
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
            method="percentile", vectorized=True, **seeded(seed),
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high}


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
    xs, ys = as_sample(x, "correlate x"), as_sample(y, "correlate y")
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
                             method="percentile", batch=max(1, 4_000_000 // (n * n)), **seeded(seed))
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
