"""Statistics for reports (docs/design.md, "Measurements and statistics"): summaries and correlations.

Everything here delegates to `scipy.stats`; this module only fixes the choices that make
reports reproducible and JSON-safe:

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
  undefined correlation is None rather than NaN, so JSON stays valid (allow_nan=False).

No torch here (gstc/ never imports it): numpy and scipy only.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as _st

# Metrics are undefined below this many pairs: with 2 points Pearson's r is always +-1
# (p = 1) and Kendall's tau carries no information.
MIN_CORRELATION_PAIRS = 3

# scipy >= 1.15 takes `rng`; older versions only `random_state`. Both accept a
# numpy Generator, and both give the same resamples from the same Generator.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(_st.bootstrap).parameters else "random_state"


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


def correlate(x: Sequence[float], y: Sequence[float]) -> dict:
    """Pearson r and Kendall tau-b with their two-sided p-values (scipy.stats).

    None for every value when it is undefined: fewer than 3 pairs, or x or y constant.
    """
    xs, ys = _sample(x, "correlate x"), _sample(y, "correlate y")
    if xs.size != ys.size:
        raise ValueError(f"correlate: x has {xs.size} values, y has {ys.size}")
    n = int(xs.size)
    out: dict[str, Any] = {"n": n, "pearson_r": None, "pearson_p": None, "kendall_tau": None, "kendall_p": None}
    # Checked up front, so scipy never warns about (or returns NaN for) a constant input.
    if n < MIN_CORRELATION_PAIRS or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out
    pearson = _st.pearsonr(xs, ys)
    kendall = _st.kendalltau(xs, ys)
    out.update(pearson_r=_number(pearson.statistic), pearson_p=_number(pearson.pvalue),
               kendall_tau=_number(kendall.statistic), kendall_p=_number(kendall.pvalue))
    return out
