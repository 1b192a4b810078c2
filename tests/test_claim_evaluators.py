"""Each claim evaluator on constructed summaries: passes, fails, or is not evaluable (never passes on no evidence).

Expected values are worked out by hand from the constructed numbers. Layers in measured values count
from 1 (the paper's convention): a curve whose minimum is at 0-based window centre 3 reports at_layer=4.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowcheck.analyses.accuracy import AccuracyUnderKnockout
from flowcheck.analyses.answer_probability import ProbabilityCurves
from flowcheck.analyses.curves import Curve
from flowcheck.analyses.logit_lens import LensSummary
from flowcheck.analyses.pruning import PruningSummary
from flowcheck.analyses.summary import TaskSummary
from flowcheck.analyses.sweep import Curves
from flowcheck.claims import Evidence, NotEvaluable, load_registry
from flowcheck.claims import evaluate as evaluate_claim

L = 8
CENTERS = list(range(L))


def curve(condition: str, mean: list[float], n: int = 20) -> Curve:
    return Curve(condition, CENTERS, mean, mean, mean, n)


def summary(
    n: int = 20,
    n_correct: int = 20,
    *,
    model: str = "m",
    curves=None,
    accuracy=None,
    answer=None,
    lens=None,
    pruning=None,
    lens_problem: str = "",
) -> TaskSummary:
    """A summary with the given analyses' summaries (names as registered: sweep, accuracy, ...)."""
    found = {
        "sweep": Curves(curves) if curves is not None else None,
        "accuracy": accuracy,
        "answer_probability": answer,
        "logit_lens": lens,
        "pruning": pruning,
    }
    problems = {"logit_lens": lens_problem} if lens_problem else {}
    return TaskSummary(model, "d", "t", L, n, n_correct, {k: v for k, v in found.items() if v is not None}, problems)


def evaluate(registry, claim: str, s: TaskSummary, others=None, settings=None):
    """Evaluate `claim` as the session does: thresholds for the model, its settings, other models' summaries."""
    return evaluate_claim(
        registry,
        claim,
        Evidence(
            s,
            registry.thresholds(claim, s.model),
            lambda key: (settings or {}).get(key),
            lambda name: (others or {})[name],
        ),
    )


def change(values: dict[str, int]) -> AccuracyUnderKnockout:
    """An accuracy summary carrying only the per-sample correctness change the paired claim reads."""
    return AccuracyUnderKnockout("cross_frame", list(range(4)), len(values), 100.0, 0.0, 0.0, dict(values))


@pytest.fixture(scope="module")
def registry():
    return load_registry()


EARLY_DIP = [0, -2, -4, -30, -6, -1, 0, 0]  # minimum -30 at 0-based centre 3 = layer 4


def test_cross_frame_early_reports_layers_from_1_and_decides_by_the_first_half(registry):
    result = evaluate(registry, "cross_frame_early", summary(curves={"cross_frame": curve("cross_frame", EARLY_DIP)}))
    assert result.passed is True
    assert result.measured["at_layer"] == 4 and result.measured["latest_early_layer"] == 4  # ceil(0.5 * 8)
    assert "at_layer=4" in result.message
    late = [0, 0, 0, 0, -30, 0, 0, 0]  # minimum at layer 5: past the first half
    result = evaluate(registry, "cross_frame_early", summary(curves={"cross_frame": curve("cross_frame", late)}))
    assert result.passed is False and result.measured["at_layer"] == 5


def test_late_flat_counts_the_last_quarter(registry):
    flat_late = [0, -20, -30, 0, 0, 0, 2.5, -2.9]  # windows at 0-based 6, 7 (layers 7, 8): |.| <= 3
    result = evaluate(
        registry, "cross_frame_late_flat", summary(curves={"cross_frame": curve("cross_frame", flat_late)})
    )
    assert result.passed is True and result.measured["from_layer"] == 7 and result.measured["max_abs_late_pct"] == 2.9


@pytest.mark.parametrize(
    "claim",
    [
        "cross_frame_early",
        "cross_frame_late_flat",
        "route_video_to_question",
        "route_question_to_last",
        "route_no_direct_video_to_last",
        "route_last_to_last_flat",
    ],
)
def test_curve_claims_are_not_evaluable_on_too_few_or_no_correct_samples(registry, claim):
    curves = {c: curve(c, EARLY_DIP, n=3) for c in ("cross_frame", "video->question", "question->last")}
    curves |= {c: curve(c, [0.0] * L, n=3) for c in ("video->last", "last->last")}
    with pytest.raises(NotEvaluable, match=r"3 correctly answered samples.*at least 10 are needed"):
        evaluate(registry, claim, summary(n=50, n_correct=3, curves=curves))
    with pytest.raises(NotEvaluable, match="0 correctly answered"):
        evaluate(registry, claim, summary(n=50, n_correct=0))


def test_accuracy_drop_needs_samples_and_a_correct_answer(registry):
    zero = AccuracyUnderKnockout("cross_frame", list(range(4)), 40, 0.0, 0.0, 0.0)
    with pytest.raises(NotEvaluable, match="none of the 40 samples"):
        evaluate(registry, "cross_frame_accuracy_drop", summary(n=40, n_correct=0, accuracy=zero))
    few = AccuracyUnderKnockout("cross_frame", list(range(4)), 4, 100.0, 50.0, 50.0)
    with pytest.raises(NotEvaluable, match="4 samples"):
        evaluate(registry, "cross_frame_accuracy_drop", summary(n=4, n_correct=4, accuracy=few))
    drop = AccuracyUnderKnockout("cross_frame", list(range(4)), 40, 90.0, 60.0, 60.0)
    result = evaluate(registry, "cross_frame_accuracy_drop", summary(n=40, n_correct=36, accuracy=drop))
    assert result.passed is True and result.measured["drop_points"] == -30.0


def test_pruning_never_passes_on_zero_accuracy(registry):
    zero = PruningSummary(300, 0.0, 0.0, 0.0, 100.0, 40.0, 40.0)
    for claim in ("pruning_parity", "random_pruning_hurts"):
        with pytest.raises(NotEvaluable, match="none of the 300 samples correctly with full attention"):
            evaluate(registry, claim, summary(n=300, n_correct=0, pruning=zero))
    kept = evaluate(registry, "pruning_edges_kept", summary(n=300, n_correct=0, pruning=zero))
    assert kept.passed is True and kept.measured["kept_fraction"] == 0.4  # an edge count needs no accuracy
    good = PruningSummary(300, 80.0, 79.5, 50.0, 100.0, 40.0, 40.0)
    assert evaluate(registry, "pruning_parity", summary(n=300, n_correct=240, pruning=good)).passed is True
    assert evaluate(registry, "random_pruning_hurts", summary(n=300, n_correct=240, pruning=good)).passed is True


def test_logit_lens_claim_reports_the_keyword_problem_and_layers_from_1(registry):
    problem = "no word of the keyword list(s) 'temporal' is a token of this model's vocabulary (temporal: before)"
    with pytest.raises(NotEvaluable, match=r"cannot run.*'temporal'.*before"):
        evaluate(registry, "temporal_concepts_late", summary(lens_problem=problem))
    lens = LensSummary([(0, 4), (4, 8)], {}, {"spatial": 1.0, "temporal": 5.5}, {"spatial": 3, "temporal": 9}, {}, 20)
    result = evaluate(registry, "temporal_concepts_late", summary(lens=lens))
    assert result.passed is True
    assert result.measured["temporal_mean_layer"] == 6.5 and result.measured["spatial_mean_layer"] == 2.0


def test_answer_claims_need_samples_and_layers(registry):
    answer = ProbabilityCurves(CENTERS, [5, 5, 5, 5, 60, 80, 90, 95], [1] * L, [10] * L, [0.5] * L, 20)
    curves = {"video->question": curve("video->question", EARLY_DIP)}  # minimum at 0-based 3
    ready = evaluate(registry, "answer_ready_after_integration", summary(curves=curves, answer=answer))
    assert ready.passed is True and ready.measured["video_to_question_at"] == 4
    beats = evaluate(registry, "true_option_beats_false", summary(curves=curves, answer=answer))
    assert beats.passed is True and beats.measured["from_layer"] == 6  # ceil(0.625 * 8) = 5, 0-based -> 6
    few = ProbabilityCurves(CENTERS, [5] * L, [1] * L, [10] * L, [0.5] * L, 2)
    with pytest.raises(NotEvaluable, match="2 correctly answered samples"):
        evaluate(registry, "true_option_beats_false", summary(curves=curves, answer=few))


def test_video_vs_image_needs_paired_samples(registry):
    pair = {"image_model": "img"}
    video = summary(n=3, n_correct=3, accuracy=change({"a": -1, "b": -1, "c": -1}))
    image = summary(n=3, n_correct=1, model="img", accuracy=change({"a": 0, "b": 0, "c": 0}))
    with pytest.raises(NotEvaluable, match="3 samples answered by both"):
        evaluate(registry, "cross_frame_video_vs_image", video, {"img": image}, pair)
    with pytest.raises(NotEvaluable, match="no paired image model is registered for m"):
        evaluate(registry, "cross_frame_video_vs_image", video, {"img": image})
    ids = [f"s{i}" for i in range(12)]
    video = summary(n=12, n_correct=12, accuracy=change(dict.fromkeys(ids, -1)))
    image = summary(n=12, n_correct=6, model="img", accuracy=change(dict.fromkeys(ids, 0)))
    result = evaluate(registry, "cross_frame_video_vs_image", video, {"img": image}, pair)
    # 12 pairs where only the video model loses: one-sided sign test p = 0.5 ** 12 (3 significant digits, never 0)
    assert result.passed is True and result.measured["p_value"] == pytest.approx(0.5**12, rel=1e-2)
    same = summary(n=12, n_correct=12, model="img", accuracy=change(dict.fromkeys(ids, -1)))
    result = evaluate(registry, "cross_frame_video_vs_image", video, {"img": same}, pair)
    assert result.passed is False and result.measured["p_value"] == 1.0  # no pair differs: p = 1


def test_verdicts_and_measured_values_are_json_types(registry):
    """numpy booleans and floats used to reach results.json as the strings "True"/"False" (json default=str)."""
    c = Curve("cross_frame", CENTERS, list(np.asarray(EARLY_DIP, dtype=np.float64)), EARLY_DIP, EARLY_DIP, 20)
    result = evaluate(registry, "cross_frame_early", summary(curves={"cross_frame": c}))
    data = json.loads(json.dumps(result.to_dict()))  # no default=str: a numpy value would raise here
    assert data["passed"] is True and isinstance(data["measured"]["minimum_pct"], float)
