"""flowcheck.stats: bootstrap intervals (plain, clustered, paired) and exact McNemar / sign tests."""

import math

import numpy as np
import pytest

from flowcheck.analyses.specs import NO_INTERVAL, interval_text
from flowcheck.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap_ci, sign_test_greater


def test_bootstrap_ci_is_seeded_and_near_the_normal_interval():
    values = np.random.default_rng(1).normal(3.0, 2.0, size=400)
    lo, hi = bootstrap_ci(values, seed=7)
    assert (lo, hi) == bootstrap_ci(values, seed=7)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert lo == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(values.mean() + half, abs=0.1 * half)


def test_constant_and_empty_values():
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert all(np.isnan(bootstrap_ci([])))
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])


def test_a_cluster_of_identical_questions_counts_as_one():
    per_video = np.random.default_rng(2).normal(size=20)
    clustered = np.repeat(per_video, 10)
    labels = np.repeat([f"video{i}" for i in range(20)], 10)
    assert bootstrap_ci(clustered, clusters=list(labels), seed=3) == pytest.approx(
        bootstrap_ci(per_video, seed=3), rel=1e-12
    )
    # Ignoring the clusters treats the 200 values as independent: a much narrower (wrong) interval.
    lo, hi = bootstrap_ci(clustered, seed=3)
    clo, chi = bootstrap_ci(clustered, clusters=list(labels), seed=3)
    assert (chi - clo) > 2.5 * (hi - lo)


def test_cluster_labels_must_match_values():
    with pytest.raises(ValueError, match="one label per value"):
        bootstrap_ci([1.0, 2.0], clusters=["a"])


def test_paired_bootstrap_is_the_interval_of_the_differences():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=50), rng.normal(size=50)
    mean, lo, hi = paired_bootstrap_ci(a, b, seed=1)
    assert mean == pytest.approx(float(np.mean(a - b)))
    assert (lo, hi) == bootstrap_ci(a - b, seed=1)
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap_ci(a, b[:3])


def test_mcnemar_exact_by_hand():
    # 5 discordant pairs, all in favour of a: two-sided p = 2 * (1/2)^5.
    a = [True] * 5 + [True, False] * 3
    b = [False] * 5 + [True, False] * 3
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (5, 0)
    assert result.p_value == pytest.approx(2 / 32)
    assert mcnemar_exact(a, a).p_value == 1.0
    # 3 vs 1 discordant: p = 2 * P(X <= 1 | n=4) = 2 * 5/16.
    assert mcnemar_exact([1, 1, 1, 0], [0, 0, 0, 1]).p_value == pytest.approx(10 / 16)


def test_sign_test_by_hand():
    assert sign_test_greater(5, 0) == pytest.approx(1 / 32)
    assert sign_test_greater(3, 1) == pytest.approx(5 / 16)
    assert sign_test_greater(0, 0) == 1.0


def test_a_single_cluster_has_no_interval():
    """One value, or every value from one video: resampling cannot estimate a spread, so the interval is undefined
    (NaN), not a zero-width interval that reads as certainty; two clusters of equal values do give (v, v)."""
    assert all(math.isnan(x) for x in bootstrap_ci([3.0]))
    assert all(math.isnan(x) for x in bootstrap_ci([1.0, 5.0, 9.0], clusters=["v", "v", "v"]))
    assert bootstrap_ci([2.0, 2.0], clusters=["a", "b"]) == (2.0, 2.0)
    mean, low, high = paired_bootstrap_ci([1.0, 4.0], [0.0, 0.0], clusters=["v", "v"])
    assert mean == 2.5 and math.isnan(low) and math.isnan(high)


def test_interval_text_says_when_there_is_no_interval():
    assert interval_text(-1.234, 2.0) == "[-1.2, +2.0]"
    assert interval_text(float("nan"), float("nan")) == NO_INTERVAL
