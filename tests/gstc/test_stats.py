"""gstc.stats against scipy.stats called directly: same numbers, reproducible, JSON-safe."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats as st

from hypothesis import given, settings
from hypothesis import strategies as st_h

from gstc.stats import _tau_b, correlate, summarize

VALUES = [85.2, 84.9, 85.7, 86.1, 84.4, 85.0, 85.9, 84.8, 85.5, 86.0]


def scipy_ci(values, seed=0, confidence=0.95, resamples=10_000):
    res = st.bootstrap((np.asarray(values, dtype=float),), np.mean, n_resamples=resamples,
                       confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high


def test_summarize_matches_scipy():
    s = summarize(VALUES)
    assert s["n"] == len(VALUES)
    assert s["mean"] == pytest.approx(np.mean(VALUES), abs=1e-12)
    assert s["std"] == pytest.approx(np.std(VALUES, ddof=1), abs=1e-12)
    low, high = scipy_ci(VALUES)
    assert (s["ci_low"], s["ci_high"]) == (low, high)  # same generator, same resamples: exact
    assert s["ci_low"] < s["mean"] < s["ci_high"]


def test_summarize_other_seed_confidence_resamples():
    s = summarize(VALUES, seed=7, confidence=0.9, resamples=2000)
    assert (s["ci_low"], s["ci_high"]) == scipy_ci(VALUES, seed=7, confidence=0.9, resamples=2000)
    wide = summarize(VALUES, seed=7, confidence=0.99, resamples=2000)
    assert wide["ci_low"] <= s["ci_low"] and wide["ci_high"] >= s["ci_high"]


def test_summarize_is_deterministic():
    a, b = summarize(VALUES, seed=3), summarize(list(VALUES), seed=3)
    assert a == b
    assert json.dumps(a) == json.dumps(b)


def test_summarize_single_value():
    assert summarize([83.5]) == {"n": 1, "mean": 83.5, "std": 0.0, "ci_low": 83.5, "ci_high": 83.5}


def test_summarize_constant_values_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = summarize([5493642] * 4)
    assert s == {"n": 4, "mean": 5493642.0, "std": 0.0, "ci_low": 5493642.0, "ci_high": 5493642.0}


def test_summarize_two_values():
    s = summarize([1.0, 2.0])
    assert s["std"] == pytest.approx(np.std([1.0, 2.0], ddof=1))
    assert (s["ci_low"], s["ci_high"]) == scipy_ci([1.0, 2.0])


def test_summarize_empty_is_all_none():
    assert summarize([]) == {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}


def test_summarize_rejects_non_finite():
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, float("nan")])


def test_correlate_matches_scipy():
    x = [90.1, 93.4, 95.0, 97.2, 98.8, 99.5]
    y = [86.0, 85.7, 85.1, 85.4, 84.6, 84.2]
    c = correlate(x, y)
    p, k = st.pearsonr(x, y), st.kendalltau(x, y)
    ci = p.confidence_interval(confidence_level=0.95)
    assert (c["n"], c["pearson_r"], c["pearson_p"], c["kendall_tau"], c["kendall_p"]) == (
        6, float(p.statistic), float(p.pvalue), float(k.statistic), float(k.pvalue))
    assert (c["pearson_ci_low"], c["pearson_ci_high"]) == (float(ci.low), float(ci.high))
    assert c["pearson_r"] < 0 and c["kendall_tau"] < 0 and c["pearson_ci_low"] < c["pearson_r"] < c["pearson_ci_high"]
    assert correlate(x, y) == c


def test_kendall_interval_is_scipys_bootstrap_of_scipys_tau():
    """Kendall's CI is scipy's percentile bootstrap over the pairs, with scipy's own kendalltau as the
    statistic (the slow loop gstc's vectorized statistic replaces), seed 0: the same bounds."""
    x = [90.1, 93.4, 95.0, 97.2, 98.8, 99.5, 96.0, 91.0]
    y = [86.0, 85.7, 85.1, 85.4, 84.6, 84.2, 85.9, 85.0]
    c = correlate(x, y, resamples=2000)
    ref = st.bootstrap((np.array(x), np.array(y)), lambda a, b: st.kendalltau(a, b).statistic, paired=True,
                       vectorized=False, n_resamples=2000, method="percentile", rng=np.random.default_rng(0))
    dist = ref.bootstrap_distribution
    defined = dist[np.isfinite(dist)]  # resamples with a constant x or y have no tau
    assert c["kendall_ci_low"] == pytest.approx(np.percentile(defined, 2.5), abs=1e-12)
    assert c["kendall_ci_high"] == pytest.approx(np.percentile(defined, 97.5), abs=1e-12)
    assert c["kendall_ci_undefined"] == pytest.approx(1 - defined.size / dist.size)
    if defined.size == dist.size:  # nothing left out: scipy's own interval
        assert (c["kendall_ci_low"], c["kendall_ci_high"]) == pytest.approx(
            (ref.confidence_interval.low, ref.confidence_interval.high), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st_h.lists(st_h.tuples(st_h.integers(0, 4), st_h.integers(0, 4)), min_size=2, max_size=12))
def test_vectorized_tau_b_is_scipys_with_ties(pairs):
    """The bootstrap's vectorized tau-b equals scipy.stats.kendalltau (variant b), ties included."""
    x, y = np.array(pairs, dtype=float).T
    ours = float(_tau_b(x[None, :], y[None, :])[0])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(st.kendalltau(x, y).statistic, abs=1e-12)


def test_kendall_interval_with_few_pairs_leaves_out_constant_resamples():
    # 3 pairs: 3 of the 27 equally likely resamples are constant, about 11% of them
    c = correlate([1.0, 2.0, 3.0], [2.0, 1.0, 4.0])
    assert 0.08 < c["kendall_ci_undefined"] < 0.14
    assert (c["pearson_ci_low"], c["pearson_ci_high"]) == (-1.0, 1.0)  # Fisher's z has no spread left at n = 3


@pytest.mark.parametrize("x, y", [
    ([], []),
    ([1.0], [2.0]),
    ([1.0, 2.0], [2.0, 1.0]),                 # n < 3
    ([100.0, 100.0, 100.0], [1.0, 2.0, 3.0]),  # constant x: every run unpruned
    ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]),        # constant y
])
def test_correlate_undefined_is_none(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning: never reaches scipy
        c = correlate(x, y)
    assert c["n"] == len(x) and {k: v for k, v in c.items() if k != "n"} == dict.fromkeys(
        ["pearson_r", "pearson_p", "pearson_ci_low", "pearson_ci_high", "kendall_tau", "kendall_p", "kendall_ci_low",
         "kendall_ci_high", "kendall_ci_undefined"])


def test_correlate_length_mismatch():
    with pytest.raises(ValueError, match="3 values"):
        correlate([1, 2, 3], [1, 2])


def test_results_serialize_as_strict_json():
    for obj in (summarize(VALUES), summarize([1.0]), summarize([]), summarize([2.0, 2.0]),
                correlate([1, 2, 3, 4], [2, 1, 4, 3]), correlate([1, 1, 1], [1, 2, 3])):
        text = json.dumps(obj, allow_nan=False)
        assert json.loads(text) == obj
        assert all(v is None or isinstance(v, (int, float)) for v in obj.values())
