"""Curves, bootstrap CIs, accuracy under knockout and answer-probability curves on hand-built records."""

from __future__ import annotations

import pytest

from flowcheck.analyses.accuracy import accuracy_under_knockout
from flowcheck.analyses.answer_probability import probability_curves
from flowcheck.analyses.curves import relative_change_curves
from flowcheck.analyses.records import Baseline, KnockoutRecord
from flowcheck.evaluators import paired_drop_test
from flowcheck.stats import sign_test_greater

LETTERS = [10, 11, 12, 13]


def baseline(sample: str, predicted: int, true: int, p: float = 0.5) -> Baseline:
    return Baseline(sample, "t", "d", true, LETTERS, [0.1] * 4, LETTERS[predicted], p, {})


def record(
    sample: str,
    center: int | None,
    p_base: float,
    p_new: float,
    condition="cross_frame",
    new_argmax=10,
    style="center",
    layers=(0,),
) -> KnockoutRecord:
    return KnockoutRecord(sample, condition, "cross-frame", center, style, list(layers), p_base, p_new, new_argmax)


def test_relative_change_curve_is_the_mean_over_correct_samples():
    baselines = [baseline("a", 0, 0, 0.8), baseline("b", 1, 1, 0.5), baseline("c", 2, 0, 0.4)]  # c is wrong
    records = [
        record("a", 0, 0.8, 0.4),
        record("b", 0, 0.5, 0.5),
        record("c", 0, 0.4, 0.0),
        record("a", 1, 0.8, 0.8),
        record("b", 1, 0.5, 0.25),
        record("c", 1, 0.4, 0.4),
    ]
    curve = relative_change_curves(baselines, records, seed=0)["cross_frame"]
    assert curve.centers == [0, 1] and curve.n == 2
    assert curve.mean == pytest.approx([(-50 + 0) / 2, (0 - 50) / 2])
    assert curve.argmin == 0 and curve.minimum == pytest.approx(-25)
    everyone = relative_change_curves(baselines, records, selection="all")["cross_frame"]
    assert everyone.mean[0] == pytest.approx((-50 + 0 - 100) / 3)
    wrong = relative_change_curves(baselines, records, selection="wrong")["cross_frame"]
    assert wrong.mean == pytest.approx([-100, 0]) and wrong.n == 1


def test_accuracy_under_knockout_counts_all_samples_in_points_and_relative():
    baselines = [baseline("a", 0, 0), baseline("b", 1, 1), baseline("c", 2, 0), baseline("d", 3, 3)]
    # after the knockout: a wrong, b right, c right (fixed!), d wrong
    records = [
        record(s, None, 0.5, 0.1, new_argmax=LETTERS[new], style="explicit", layers=(0, 1))
        for s, new in (("a", 1), ("b", 1), ("c", 0), ("d", 0))
    ]
    acc = accuracy_under_knockout(baselines, records, "cross_frame", [0, 1])
    assert (acc.n, acc.base, acc.knocked, acc.knocked_authors) == (4, 75.0, 50.0, 25.0)
    assert acc.drop_points == -25.0 and acc.drop_relative == pytest.approx(-100 / 3)
    with pytest.raises(ValueError, match="have no cross_frame record in layers"):
        accuracy_under_knockout(baselines, records[:3], "cross_frame", [0, 1])


def test_probability_curves_average_true_and_false_options():
    probs_a = [[0.1, 0.2, 0.3], [0.7, 0.1, 0.2]]  # two layers, true option 0
    probs_b = [[0.5, 0.5, 0.0], [0.0, 0.9, 0.1]]  # true option 1
    curves = probability_curves([(probs_a, 0), (probs_b, 1)])
    assert curves.true_mean == pytest.approx([30.0, 80.0])
    assert curves.false_max_mean == pytest.approx([(30 + 50) / 2, (20 + 10) / 2])
    assert curves.false_mean == pytest.approx([(25 + 25) / 2, (15 + 5) / 2])
    assert curves.true_beats_all_false == pytest.approx([0.0, 1.0])


def test_paired_sign_test_on_correctness_changes():
    assert sign_test_greater(5, 0) == pytest.approx(1 / 32)
    assert sign_test_greater(0, 0) == 1.0
    video = {"a": -1, "b": -1, "c": 0, "d": 0}
    image = {"a": 0, "b": 0, "c": 0, "d": -1, "e": -1}
    assert paired_drop_test(video, image) == (2, 1, pytest.approx(0.5))
