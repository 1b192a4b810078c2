"""Pruning summaries: accuracies on the validation half only, the random control's mean over seeds and its CI."""

from __future__ import annotations

import pytest

from flowcheck.analyses.base import TaskView
from flowcheck.analyses.pruning import Pruning, PruningSample, random_seeds, summarise_pruning
from flowcheck.stats import bootstrap_ci


def sample(i: int, full: bool, effective: bool, random: list[bool], video: str = "") -> PruningSample:
    return PruningSample(f"s{i}", full, effective, random, 100, 40, 40, video or f"t/v{i}.mp4")


def test_random_accuracy_is_the_mean_over_seeds_with_a_clustered_ci():
    samples = [
        sample(0, True, True, [True, True, False, False, False]),  # 40%
        sample(1, True, True, [True, True, True, True, True]),  # 100%
        sample(2, True, False, [False] * 5),  # 0%
        sample(3, False, False, [True, False, False, False, False], video="t/v2.mp4"),  # 20%, same video as s2
    ]
    s = summarise_pruning(samples, seed=7, n_boot=500)
    assert (s.n, s.full_accuracy, s.effective_accuracy) == (4, 75.0, 50.0)
    assert s.random_accuracy == pytest.approx((40 + 100 + 0 + 20) / 4)
    assert s.random_per_seed == [75.0, 50.0, 25.0, 25.0, 25.0]  # its mean is the mean over samples
    expected = bootstrap_ci(
        [40.0, 100.0, 0.0, 20.0], clusters=["t/v0.mp4", "t/v1.mp4", "t/v2.mp4", "t/v2.mp4"], seed=7, n_boot=500
    )
    assert (s.random_lo, s.random_hi) == pytest.approx(expected)
    assert s.kept_fraction == 0.4


def test_results_stored_before_several_seeds_read_as_one_seed():
    old = PruningSample("s", True, True, True, 100, 40, 40)
    assert old.random_correct == [True] and old.random_accuracy == 1.0


def test_seeds_follow_the_run_seed():
    assert random_seeds(3) == [3, 4, 5, 6, 7]  # [random_control] seeds = 5
    with pytest.raises(ValueError, match="at least one seed"):
        random_seeds(0, 0)


def view(samples, discovery):
    from flowcheck.analyses.records import Baseline

    baselines = [Baseline(s.sample_id, "t", "d", 0, [1, 2], [0.9, 0.1], 1, 0.9, {}) for s in samples]
    return TaskView(
        "m",
        "d",
        "all",
        8,
        baselines,
        {b.sample_id for b in baselines},
        {"pruning": {s.sample_id: s for s in samples}},
        {"pruning": {"spec": "video->question@2-5", "source": "discovered", "discovery_samples": discovery}},
    )


def test_claims_read_the_validation_half_and_the_discovery_half_is_reported_beside():
    samples = [sample(i, True, i % 2 == 0, [False] * 5) for i in range(6)]
    summary = Pruning.summarise(view(samples, ["s0", "s2", "s4"]))  # discovery: every sample the pathways keep
    assert summary.half == "validation" and summary.n == 3 and summary.effective_accuracy == 0.0
    assert summary.discovery_half["n"] == 3 and summary.discovery_half["effective_accuracy"] == 100.0
    assert summary.spec == "video->question@2-5" and summary.source == "discovered"
    everything = Pruning.summarise(view(samples, []))  # a registered spec: validated on every sample
    assert everything.half == "all" and everything.n == 6 and everything.effective_accuracy == 50.0
