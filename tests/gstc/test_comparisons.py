"""gstc.comparisons against scipy.stats called directly: paired by seed where it can be, corrected as a family."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import stats as st
from scipy.special import gamma

from hypothesis import given, settings
from hypothesis import strategies as st_h

from gstc.comparisons import adjust, compare, effect_paired, effect_unpaired, family, seeds_needed

# Ten seeds' accuracies of two configurations: the seeds spread over 20 points, and B is
# 0.3 points better than A in every seed (plus a little noise). An unpaired test sees two
# overlapping clouds; the paired one sees ten positive differences.
A10 = np.linspace(70.0, 90.0, 10)
B10 = A10 + 0.3 + np.random.default_rng(1).normal(0, 0.1, 10)
SEEDS = list(range(10))


def diff(x, y, axis=-1):
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def test_paired_comparison_is_scipys_and_finds_what_the_unpaired_one_misses():
    paired, unpaired = compare(A10, B10, SEEDS, SEEDS), compare(A10, B10)
    assert paired["paired"] and paired["pairs"] == 10 and not unpaired["paired"]
    perm = st.permutation_test((A10, B10), diff, permutation_type="samples", vectorized=True, n_resamples=10_000,
                               rng=np.random.default_rng(0))
    assert perm.null_distribution.size == 2 ** 10  # exact: every sign flip
    assert paired["p"] == perm.pvalue == 2 / 2 ** 10
    assert paired["p_rank"] == st.wilcoxon(B10, A10).pvalue
    boot = st.bootstrap((B10 - A10,), np.mean, n_resamples=10_000, method="percentile", rng=np.random.default_rng(0))
    assert (paired["diff_ci_low"], paired["diff_ci_high"]) == (boot.confidence_interval.low, boot.confidence_interval.high)
    assert paired["diff"] == pytest.approx(np.mean(B10 - A10))
    indep = st.permutation_test((A10, B10), diff, permutation_type="independent", vectorized=True, n_resamples=10_000,
                                rng=np.random.default_rng(0))
    assert unpaired["p"] == indep.pvalue and unpaired["p"] > 0.5
    assert unpaired["p_rank"] == st.mannwhitneyu(B10, A10, alternative="two-sided").pvalue
    both = st.bootstrap((A10, B10), diff, n_resamples=10_000, method="percentile", vectorized=True,
                        rng=np.random.default_rng(0))
    assert (unpaired["diff_ci_low"], unpaired["diff_ci_high"]) == (both.confidence_interval.low,
                                                                   both.confidence_interval.high)
    assert paired["p"] < 0.05 < unpaired["p"]


def test_pairing_follows_seeds_not_order():
    shuffled = [9, 3, 0, 5, 1, 8, 2, 7, 6, 4]
    b = [B10[s] for s in shuffled]
    assert compare(A10, b, SEEDS, shuffled) == compare(A10, B10, SEEDS, SEEDS)


@pytest.mark.parametrize("seeds_b, why", [
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 10], "seeds differ: only A has seed 9; only B has seed 10"),
    ([0, 0, 1, 2, 3, 4, 5, 6, 7, 8], "a seed appears twice on one side"),
])
def test_unmatched_seeds_fall_back_to_unpaired_and_say_why(seeds_b, why):
    c = compare(A10, B10, SEEDS, seeds_b)
    assert not c["paired"] and c["pairing"] == why and c["test"] == "permutation" and c["effect"] == "g"
    assert c["p"] == compare(A10, B10)["p"]


def test_effect_sizes_and_their_noncentral_t_intervals():
    dz, low, high = effect_paired(B10 - A10)
    d = B10 - A10
    assert dz == pytest.approx(d.mean() / d.std(ddof=1))
    n = d.size
    # The interval's ends put the observed t at the 97.5% and 2.5% points of the noncentral t.
    t = dz * np.sqrt(n)
    assert st.nct.cdf(t, n - 1, low * np.sqrt(n)) == pytest.approx(0.975, abs=1e-9)
    assert st.nct.cdf(t, n - 1, high * np.sqrt(n)) == pytest.approx(0.025, abs=1e-9)
    a, b = A10, A10 + 8.0
    g, glow, ghigh = effect_unpaired(a, b)
    na = nb = 10
    pooled = np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    j = gamma(9) / (np.sqrt(9) * gamma(8.5))  # Hedges' exact factor at df = 18
    assert g == pytest.approx(j * 8.0 / pooled, rel=1e-12)
    assert j == pytest.approx(1 - 3 / (4 * (na + nb) - 9), rel=2e-4)  # his approximation
    scale, jx = np.sqrt(1 / na + 1 / nb), g / (8.0 / pooled)
    assert st.nct.cdf(8.0 / pooled / scale, 18, glow / jx / scale) == pytest.approx(0.975, abs=1e-9)
    assert st.nct.cdf(8.0 / pooled / scale, 18, ghigh / jx / scale) == pytest.approx(0.025, abs=1e-9)
    assert glow < g < ghigh
    c = compare(a, b, SEEDS, SEEDS)
    assert c["effect"] == "dz" and c["effect_size"] is None  # every seed +8: no spread, d_z undefined
    assert compare(a, b)["effect_size"] == pytest.approx(g)


def test_large_effects_keep_finite_intervals():
    # t of about 100: scipy's noncentral t gives NaN far from it; the search must still bracket the root
    d = np.array([3.0, 3.1, 2.9, 3.05, 2.95, 3.02, 2.98, 3.01, 2.99, 3.0])
    dz, low, high = effect_paired(d)
    assert np.isfinite([dz, low, high]).all() and low < dz < high


def test_min_p_is_the_floor_of_the_exact_tests():
    five = compare(A10[:5], B10[:5], SEEDS[:5], SEEDS[:5])
    assert five["min_p"] == 2 / 2 ** 5 == five["p"]  # all five differences positive: the floor itself
    assert compare(A10[:5], A10[:5] + 5)["min_p"] == pytest.approx(2 / 252)  # unpaired 5 + 5: C(10, 5) splits


def test_compare_edge_cases():
    assert compare([], [1.0])["diff"] is None
    one = compare([1.0], [2.0])
    assert one["diff"] == 1.0 and one["p"] is None and one["diff_ci_low"] is None
    same = compare([1.0, 1.0], [1.0, 1.0], [0, 1], [0, 1])
    assert same["p"] == 1.0 and same["p_rank"] == 1.0 and same["effect_size"] is None
    shifted = compare([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [0, 1, 2], [0, 1, 2])
    assert (shifted["diff_ci_low"], shifted["diff_ci_high"]) == (1.0, 1.0)
    assert shifted["p"] == st.permutation_test(([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]), diff, permutation_type="samples",
                                               vectorized=True).pvalue
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        json.dumps([compare([5.0] * 4, [5.0] * 4, SEEDS[:4], SEEDS[:4]), compare([1.0, 2.0], [3.0, 3.0])], allow_nan=False)


def holm_step_down(ps, alpha):
    """Holm's procedure as he stated it: reject the smallest p while p_(k) <= alpha / (m - k + 1)."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    rejected = set()
    for k, i in enumerate(order):
        if ps[i] >= alpha / (len(ps) - k):
            break
        rejected.add(i)
    return rejected


@settings(max_examples=200, deadline=None)
@given(st_h.lists(st_h.floats(1e-6, 1.0), min_size=1, max_size=20), st_h.sampled_from([0.01, 0.05, 0.1]))
def test_holm_adjusted_p_values_reject_what_holms_procedure_rejects(ps, alpha):
    adjusted = adjust(ps, "holm")
    assert {i for i, q in enumerate(adjusted) if q < alpha} == holm_step_down(ps, alpha)
    assert all(p <= q <= 1 for p, q in zip(ps, adjusted))


def test_benjamini_hochberg_is_scipys_and_none_passes_through():
    ps = [0.001, 0.04, None, 0.03, 0.5, 0.012]
    given_ = [p for p in ps if p is not None]
    bh = adjust(ps, "bh")
    assert [q for q in bh if q is not None] == list(st.false_discovery_control(given_, method="bh"))
    assert bh[2] is None and adjust(ps, "none") == ps
    assert adjust(ps, "holm") == [0.005, 0.09, None, 0.09, 0.5, 0.048]
    with pytest.raises(ValueError, match="holm, bh, none"):
        adjust(ps, "bonferroni")


def test_family_marks_on_the_adjusted_p_and_says_when_nothing_can_be_marked():
    rows = [compare(A10, B10, SEEDS, SEEDS) for _ in range(3)] + [compare(A10, A10 + 0.01 * np.arange(10), SEEDS, SEEDS)]
    fam = family(rows)
    assert fam["comparisons"] == 4 and fam["note"] is None
    assert [r["p_adj"] for r in rows] == adjust([r["p"] for r in rows], "holm")
    assert [r["significant"] for r in rows] == [r["p_adj"] < 0.05 for r in rows]
    five = [compare(A10[:5], B10[:5], SEEDS[:5], SEEDS[:5]) for _ in range(9)]
    fam = family(five)
    assert not any(r["significant"] for r in five)
    assert fam["note"] == ("no difference can reach p < 0.05: with 5 pairs an exact paired test cannot give p below "
                           "0.0625, and Holm over 9 comparisons multiplies the smallest p by 9; 9 seeds would allow it")
    assert seeds_needed(9) == 9 and 9 * 2 / 2 ** 9 < 0.05 <= 9 * 2 / 2 ** 8
    assert seeds_needed(1) == 6 and seeds_needed(9, method="bh") == 6


def test_differences_equal_up_to_rounding_have_no_effect_size():
    # 99.72 - 99.44 and 100.00 - 99.72 (accuracies out of 360 test images) differ in the 14th digit:
    # d_z would be 0.28 divided by a rounding error, about 1e13
    a, b = [99.44444444444444, 99.72222222222223], [99.72222222222223, 100.0]
    assert np.std(np.subtract(b, a), ddof=1) > 0
    c = compare(a, b, [0, 1], [0, 1])
    assert c["effect_size"] is None and c["diff_ci_low"] == c["diff_ci_high"] == pytest.approx(0.2777777777777)
    assert effect_unpaired(np.array([1.0, 1.0 + 1e-13]), np.array([2.0, 2.0])) is None
