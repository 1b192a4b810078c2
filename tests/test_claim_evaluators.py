"""Each claim evaluator on constructed summaries: passes, fails, or is not evaluable (never passes on no evidence).

`CASES` is the table: every claim of specs/claims.toml holds, fails and is not evaluable there, with the
thresholds' edges; per-model threshold overrides and the registry's [evidence] min_samples follow it.

Expected values are worked out by hand from the constructed numbers. Layers in measured values count
from 1 (the paper's convention): a curve whose minimum is at 0-based window centre 3 reports at_layer=4.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest

from flowcheck.analyses.accuracy import AccuracyUnderKnockout
from flowcheck.analyses.answer_probability import ProbabilityCurves
from flowcheck.analyses.curves import Curve
from flowcheck.analyses.early_exit import EarlyExitSummary
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
    early_exit=None,
) -> TaskSummary:
    """A summary with the given analyses' summaries (names as registered: sweep, accuracy, ...)."""
    found = {
        "sweep": Curves(curves) if curves is not None else None,
        "accuracy": accuracy,
        "answer_probability": answer,
        "logit_lens": lens,
        "pruning": pruning,
        "early_exit": early_exit,
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
    zero = pruned(0.0, 0.0, 0.0)
    for claim in ("pruning_parity", "random_pruning_hurts"):
        with pytest.raises(NotEvaluable, match="none of the 300 samples correctly with full attention"):
            evaluate(registry, claim, summary(n=300, n_correct=0, pruning=zero))
    kept = evaluate(registry, "pruning_edges_kept", summary(n=300, n_correct=0, pruning=zero))
    assert kept.passed is True and kept.measured["kept_fraction"] == 0.4  # an edge count needs no accuracy
    good = pruned(80.0, 79.5, 50.0)
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


# ----------------------------------------------------------------------------------------------
# Every claim of specs/claims.toml, table-driven: holds, fails, not evaluable, and the thresholds' edges.
#
# Default thresholds (claims.toml), L = 8 layers, [evidence] min_samples = 10. A value exactly at a threshold is
# on the side the claim's title gives: "<=", "at least", "at most", "within" include it; "beats", "a later
# window", "later than" and "stays below" do not. Window centres are 0-based in the summaries and 1-based in the
# measured values (layer = centre + 1). A fraction f of the depth splits the centres c into c < f * L (early,
# before) and c >= f * L (late, from): with L = 8, the first half is layers 1-4, before 0.75 is layers 1-6, the
# last quarter is layers 7-8 and from 0.625 is layers 6-8.


@dataclass(frozen=True)
class Holds:
    """The claim holds (`passed is True`) with exactly these measured values."""

    measured: dict


@dataclass(frozen=True)
class Fails:
    """The claim does not hold (`passed is False`) with exactly these measured values."""

    measured: dict


@dataclass(frozen=True)
class Unevaluable:
    """The claim raises NotEvaluable with a reason matching this regular expression."""

    reason: str


def swept(means: dict[str, list[float]], n: int = 20) -> dict[str, Curve]:
    """Sweep curves over CENTERS (one mean relative change in % per 0-based window centre) per condition."""
    return {condition: curve(condition, values, n) for condition, values in means.items()}


def accuracy(n: int, base: float, after: float) -> AccuracyUnderKnockout:
    """First-half cross-frame accuracy (%) of n samples, before and after the knockout."""
    return AccuracyUnderKnockout("cross_frame", list(range(4)), n, base, after, after)


def knocked(changes: dict[str, int]) -> AccuracyUnderKnockout:
    """Accuracy of len(changes) samples all answered correctly (100 %), then 100 + 100 * sum(changes) / n after the
    knockout, with the per-sample correctness change (-1 lost, 0 kept, 1 gained) the paired claim reads."""
    n = len(changes)
    after = 100.0 + 100.0 * sum(changes.values()) / n
    return AccuracyUnderKnockout("cross_frame", list(range(4)), n, 100.0, after, after, dict(changes))


def answers(true: list[float], false_max: list[float] | None = None, n: int = 20) -> ProbabilityCurves:
    """Mean true-option and best-false-option probability (%) per 0-based layer, over n samples."""
    false_max = false_max if false_max is not None else [0.0] * len(true)
    return ProbabilityCurves(list(range(len(true))), true, false_max, false_max, [1.0] * len(true), n)


def lens_of(spatial: float, temporal: float, samples: int = 20) -> LensSummary:
    """Hit-weighted mean layers (0-based) of the spatial and temporal keyword lists, 3 and 9 hits."""
    mean_layer = {"spatial": spatial, "temporal": temporal}
    return LensSummary([(0, 4), (4, 8)], {}, mean_layer, {"spatial": 3, "temporal": 9}, {}, samples)


def pruned(
    full: float, effective: float, random: float, kept: float = 40.0, n: int = 300, random_hi: float | None = None
) -> PruningSummary:
    """Accuracies (%) with full, effective-pathway and random attention (5 seeds, mean `random`, 95% CI upper bound
    `random_hi`, default `random`); `kept` of 100 edges kept; discovered pathways on the validation half."""
    hi = random if random_hi is None else random_hi
    return PruningSummary(
        n, full, effective, random, 100.0, kept, kept, random, hi, [random] * 5, "", "discovered", "validation"
    )


FACTS = {"spec_source": "discovered", "samples": "validation"}


def randoms(full: float, random: float, hi: float, loss: float) -> dict:
    """The measured values of random_pruning_hurts (5 seeds, n=300)."""
    return {
        "full_acc": full,
        "random_acc": random,
        "random_ci_hi": hi,
        "loss_points_vs_ci_hi": loss,
        "seeds": 5,
        **FACTS,
        "n": 300,
    }


IDS = [f"s{i}" for i in range(10)]
FIVE_LOST = {k: -1 if i < 5 else 0 for i, k in enumerate(IDS)}  # the video model loses s0-s4, keeps s5-s9
NONE_LOST = dict.fromkeys(IDS, 0)
IMG = {"image_model": "img"}


def paired_with(changes: dict[str, int]) -> dict[str, TaskSummary]:
    """The image model's summary, as `Evidence.summary_of("img")` returns it."""
    return {"img": summary(n=len(changes), n_correct=len(changes), model="img", accuracy=knocked(changes))}


def video(changes: dict[str, int], n_correct: int | None = None) -> TaskSummary:
    """The video model's summary: len(changes) samples (all correct unless `n_correct`), accuracy as `knocked`."""
    n = len(changes)
    return summary(n=n, n_correct=n if n_correct is None else n_correct, accuracy=knocked(changes))


VQ = {"video->question": EARLY_DIP}  # the Video -/-> Question minimum: -30 at centre 3 = layer 4
RISE = [5, 10, 10, 60, 80, 90, 95, 95]
TRUE_LATE = [0, 0, 0, 0, 0, 50, 50, 50]
FALSE_LATE = [90, 90, 90, 90, 90, 49, 10, 10]


def aligned(temporal_drop: float, spatial_change: float, low: float, high: float, n_paired: int = 12) -> TaskSummary:
    """A summary carrying only a lens_alignment summary (gap = temporal drop - |spatial change|, its CI given)."""
    alignment = {
        "n": 20,
        "n_paired": n_paired,
        "temporal_drop_pct": temporal_drop,
        "spatial_abs_change_pct": spatial_change,
        "gap_pct": temporal_drop - spatial_change,
        "gap_low": low,
        "gap_high": high,
    }
    return replace(summary(), analyses={"lens_alignment": alignment})


# One holding case per claim (claim -> summary, other models' summaries, model settings). The table starts from
# them; the override and evidence tests below turn each into a failure or "not evaluable" by the registry alone.
HOLDING: dict[str, tuple[TaskSummary, dict | None, dict | None]] = {
    # minimum -30 <= -5 at centre 3 = layer 4 <= ceil(0.5 * 8) = 4 (the last early layer)
    "cross_frame_early": (summary(curves=swept({"cross_frame": EARLY_DIP})), None, None),
    # late centres >= ceil(0.75 * 8) = 6 (layers 7, 8): max(|3.0|, |-3.0|) = 3.0 <= 3.0; the -50 at layer 6 is
    # before the last quarter
    "cross_frame_late_flat": (summary(curves=swept({"cross_frame": [0, -20, -30, 0, 0, -50, 3.0, -3.0]})), None, None),
    # 45 - 50 = -5.0 points <= -5.0 ("by at least 5 points"); relative: -5 / 50 = -10 %
    "cross_frame_accuracy_drop": (summary(n=40, n_correct=20, accuracy=accuracy(40, 50.0, 45.0)), None, None),
    # 10 shared samples: video loses 5 the image model keeps, 5 ties -> 5 wins, 0 losses:
    # p = P(X >= 5 | Bin(5, 1/2)) = 1/32 = 0.03125 <= 0.05 (reported 0.031); drops 100 -> 50 and 100 -> 100
    "cross_frame_video_vs_image": (video(FIVE_LOST), paired_with(NONE_LOST), IMG),
    # minimum -10 <= -10 at centre 5 = layer 6 <= ceil(0.75 * 8) = 6: both edges at once
    "route_video_to_question": (summary(curves=swept({"video->question": [0, 0, 0, 0, 0, -10, 0, 0]})), None, None),
    # minimum -10 <= -10 at centre 4 = layer 5, after the Video -/-> Question minimum at layer 4
    "route_question_to_last": (summary(curves=swept({**VQ, "question->last": [0, 0, 0, 0, -10, 0, 0, 0]})), None, None),
    # max(|5|, |-5|, |1|) = 5 <= 5
    "route_no_direct_video_to_last": (summary(curves=swept({"video->last": [0, 5, -5, 1, 0, 0, 0, 0]})), None, None),
    # max |-4| = 4 <= 5
    "route_last_to_last_flat": (summary(curves=swept({"last->last": [-4, 0, 0, 0, 0, 0, 0, 0]})), None, None),
    # temporal 5.5 - spatial 1.0 = 4.5 >= 0 layers (0-based), reported as layers 6.5 and 2.0
    "temporal_concepts_late": (summary(lens=lens_of(1.0, 5.5)), None, None),
    # before layer 4 (layers 1-3): max(5, 10, 10) = 10 <= 20; from layer 4 on: peak 95; rise 95 - 10 = 85 >= 20
    "answer_ready_after_integration": (summary(curves=swept(VQ), answer=answers(RISE)), None, None),
    # from centre ceil(0.625 * 8) = 5 (layers 6-8): margins 50 - 49 = 1, 40, 40 -> min 1 > 0; the false option
    # leads by 90 at layers 1-5, which do not count
    "true_option_beats_false": (summary(answer=answers(TRUE_LATE, FALSE_LATE)), None, None),
    # 60 / 100 = 0.6 <= 0.60 ("at most")
    "pruning_edges_kept": (summary(n=300, n_correct=240, pruning=pruned(80.0, 79.5, 50.0, kept=60.0)), None, None),
    # 80 - 79 = 1.0 <= 1.0 ("within")
    "pruning_parity": (summary(n=300, n_correct=240, pruning=pruned(80.0, 79.0, 50.0)), None, None),
    # 80 - 75 = 5.0 >= 5.0 ("at least")
    "random_pruning_hurts": (summary(n=300, n_correct=240, pruning=pruned(80.0, 79.5, 75.0)), None, None),
    # temporal drop 20.0 >= 20.0 ("at least"); gap 20 - 5 = 15 with CI low 0.5 > 0
    "temporal_alignment_needs_cross_frame": (aligned(20.0, 5.0, 0.5, 30.0), None, None),
}

Expected = Holds | Fails | Unevaluable


def row(
    claim: str,
    s: TaskSummary,
    expected: Expected,
    others: dict[str, TaskSummary] | None = None,
    settings: dict[str, str] | None = None,
    *,
    id: str,
    marks: pytest.MarkDecorator | tuple = (),
):
    """One table row: evaluate `claim` on `s` (with the other models' summaries and the model's settings)."""
    return pytest.param(claim, s, expected, others, settings, id=f"{claim}-{id}", marks=marks)


def holding(claim: str, expected: Expected):
    """The row of the claim's holding case (HOLDING)."""
    s, others, settings = HOLDING[claim]
    return row(claim, s, expected, others, settings, id="holds")


CASES = [
    # --- C1 cross_frame_early: min <= -5 at a centre c < 0.5 * 8 (layers 1-4)
    holding("cross_frame_early", Holds({"minimum_pct": -30, "at_layer": 4, "latest_early_layer": 4, "n": 20})),
    # minimum exactly -5.0 at layer 2, with exactly min_samples = 10 samples: both on the holding side
    row(
        "cross_frame_early",
        summary(curves=swept({"cross_frame": [0, -5.0, -1, 0, 0, 0, 0, 0]}, n=10)),
        Holds({"minimum_pct": -5.0, "at_layer": 2, "latest_early_layer": 4, "n": 10}),
        id="minimum-at-threshold",
    ),
    # -4.9 > -5: not deep enough
    row(
        "cross_frame_early",
        summary(curves=swept({"cross_frame": [0, -4.9, -1, 0, 0, 0, 0, 0]})),
        Fails({"minimum_pct": -4.9, "at_layer": 2, "latest_early_layer": 4, "n": 20}),
        id="too-shallow",
    ),
    # minimum -30 at centre 4 = layer 5 > 4: the second half
    row(
        "cross_frame_early",
        summary(curves=swept({"cross_frame": [0, -2, -4, -6, -30, -1, 0, 0]})),
        Fails({"minimum_pct": -30, "at_layer": 5, "latest_early_layer": 4, "n": 20}),
        id="too-late",
    ),
    row(
        "cross_frame_early",
        summary(),
        Unevaluable("0 correctly answered samples in the cross_frame curve"),
        id="no-sweep",
    ),
    # 9 samples, one below min_samples
    row(
        "cross_frame_early",
        summary(curves=swept({"cross_frame": EARLY_DIP}, n=9)),
        Unevaluable(r"^9 correctly answered samples in the cross_frame curve for m on t .*at least 10 are needed"),
        id="9-samples",
    ),
    # --- C1 cross_frame_late_flat: max |mean| <= 3 over centres c >= 0.75 * 8 (layers 7, 8)
    holding("cross_frame_late_flat", Holds({"max_abs_late_pct": 3.0, "from_layer": 7, "n": 20})),
    # max(|-3.1|, |1.0|) = 3.1 > 3, at centre 6 = layer 7: the first late window counts
    row(
        "cross_frame_late_flat",
        summary(curves=swept({"cross_frame": [0, 0, 0, 0, 0, 0, -3.1, 1.0]})),
        Fails({"max_abs_late_pct": 3.1, "from_layer": 7, "n": 20}),
        id="late-change",
    ),
    # windows only at centres 0-5 (layers 1-6): none in the last quarter
    row(
        "cross_frame_late_flat",
        summary(curves={"cross_frame": Curve("cross_frame", list(range(6)), [0.0] * 6, [0.0] * 6, [0.0] * 6, 20)}),
        Unevaluable("no window centre at or after layer 7 of 8 for m"),
        id="no-late-window",
    ),
    row(
        "cross_frame_late_flat",
        summary(curves=swept({"cross_frame": [0.0] * L}, n=9)),
        Unevaluable("9 correctly answered samples in the cross_frame curve"),
        id="9-samples",
    ),
    # --- C1 cross_frame_accuracy_drop: knocked - base <= -5 points, over all samples
    holding(
        "cross_frame_accuracy_drop",
        Holds({"base_acc": 50.0, "knocked_acc": 45.0, "drop_points": -5.0, "drop_relative_pct": -10.0, "n": 40}),
    ),
    # 46 - 50 = -4 points (relative -4 / 50 = -8 %): less than 5
    row(
        "cross_frame_accuracy_drop",
        summary(n=40, n_correct=20, accuracy=accuracy(40, 50.0, 46.0)),
        Fails({"base_acc": 50.0, "knocked_acc": 46.0, "drop_points": -4.0, "drop_relative_pct": -8.0, "n": 40}),
        id="small-drop",
    ),
    # 60 - 50 = +10 points (relative +20 %): a gain is no drop
    row(
        "cross_frame_accuracy_drop",
        summary(n=40, n_correct=20, accuracy=accuracy(40, 50.0, 60.0)),
        Fails({"base_acc": 50.0, "knocked_acc": 60.0, "drop_points": 10.0, "drop_relative_pct": 20.0, "n": 40}),
        id="gain",
    ),
    row(
        "cross_frame_accuracy_drop",
        summary(n=40, n_correct=20),
        Unevaluable("no first-half cross-frame accuracy results for m on t"),
        id="no-accuracy",
    ),
    row(
        "cross_frame_accuracy_drop",
        summary(n=9, n_correct=9, accuracy=accuracy(9, 100.0, 0.0)),
        Unevaluable(r"^9 samples for m on t \(9 of 9 samples answered correctly\); at least 10 are needed"),
        id="9-samples",
    ),
    row(
        "cross_frame_accuracy_drop",
        summary(n=40, n_correct=0, accuracy=accuracy(40, 0.0, 0.0)),
        Unevaluable("m answers none of the 40 samples of t correctly: no accuracy to drop"),
        id="none-correct",
    ),
    # --- C1 cross_frame_video_vs_image: one-sided sign test over shared samples, p <= 0.05
    holding(
        "cross_frame_video_vs_image",
        Holds(
            {
                "video_drop_points": -50.0,
                "image_drop_points": 0.0,
                "video_worse_pairs": 5,
                "image_worse_pairs": 0,
                "p_value": 0.031,
                "image_model": "img",
                "n": 10,
            }
        ),
    ),
    # the image model also loses s5: 5 wins, 1 loss -> p = (C(6,5) + C(6,6)) / 64 = 7/64 = 0.109 > 0.05
    row(
        "cross_frame_video_vs_image",
        video(FIVE_LOST),
        Fails(
            {
                "video_drop_points": -50.0,
                "image_drop_points": -10.0,
                "video_worse_pairs": 5,
                "image_worse_pairs": 1,
                "p_value": 0.109,
                "image_model": "img",
                "n": 10,
            }
        ),
        paired_with({**NONE_LOST, "s5": -1}),
        IMG,
        id="one-loss",
    ),
    # one-sided: the image model loses s0-s4 and the video model none -> 0 wins, 5 losses, p = P(X >= 0) = 1
    row(
        "cross_frame_video_vs_image",
        video(NONE_LOST),
        Fails(
            {
                "video_drop_points": 0.0,
                "image_drop_points": -50.0,
                "video_worse_pairs": 0,
                "image_worse_pairs": 5,
                "p_value": 1.0,
                "image_model": "img",
                "n": 10,
            }
        ),
        paired_with(FIVE_LOST),
        IMG,
        id="image-worse",
    ),
    # only shared samples pair: the video model's 20 are s0-s9 and v0-v9 (it loses s0-s4 and v0-v4: 100 -> 50), the
    # image model's s0-s9 and i0-i9 (none lost); 10 pairs, 5 wins (v0-v4 pair with nothing), p = 1/32
    row(
        "cross_frame_video_vs_image",
        video({**FIVE_LOST, **{f"v{i}": -1 if i < 5 else 0 for i in range(10)}}),
        Holds(
            {
                "video_drop_points": -50.0,
                "image_drop_points": 0.0,
                "video_worse_pairs": 5,
                "image_worse_pairs": 0,
                "p_value": 0.031,
                "image_model": "img",
                "n": 10,
            }
        ),
        paired_with({**NONE_LOST, **{f"i{i}": 0 for i in range(10)}}),
        IMG,
        id="unshared-samples",
    ),
    row(
        "cross_frame_video_vs_image",
        video(FIVE_LOST),
        Unevaluable(r'no paired image model is registered for m \(\[models\."m"\] image_model\)'),
        paired_with(NONE_LOST),
        None,
        id="no-image-model",
    ),
    row(
        "cross_frame_video_vs_image",
        video(FIVE_LOST),
        Unevaluable("no first-half cross-frame records for m and its image model on t"),
        {"img": summary(n=10, n_correct=10, model="img")},
        IMG,
        id="image-not-knocked",
    ),
    # 10 samples each, but only s0-s8 shared (the image model has "x" instead of s9): 9 pairs < 10
    row(
        "cross_frame_video_vs_image",
        video(FIVE_LOST),
        Unevaluable(r"^9 samples answered by both m and img .*at least 10 are needed"),
        paired_with({**{k: 0 for k in IDS[:9]}, "x": 0}),
        IMG,
        id="9-shared",
    ),
    row(
        "cross_frame_video_vs_image",
        video(NONE_LOST, n_correct=0),
        Unevaluable("m answers none of the 10 samples of t correctly"),
        paired_with(NONE_LOST),
        IMG,
        id="none-correct",
    ),
    # --- C2 route_video_to_question: min <= -10 at a centre c < 0.75 * 8 (layers 1-6)
    holding("route_video_to_question", Holds({"minimum_pct": -10, "at_layer": 6, "latest_layer": 6, "n": 20})),
    # minimum -30 at centre 6 = layer 7 > 6
    row(
        "route_video_to_question",
        summary(curves=swept({"video->question": [0, 0, 0, 0, 0, 0, -30, 0]})),
        Fails({"minimum_pct": -30, "at_layer": 7, "latest_layer": 6, "n": 20}),
        id="too-late",
    ),
    # -9.5 > -10 at layer 4
    row(
        "route_video_to_question",
        summary(curves=swept({"video->question": [0, 0, 0, -9.5, 0, 0, 0, 0]})),
        Fails({"minimum_pct": -9.5, "at_layer": 4, "latest_layer": 6, "n": 20}),
        id="too-shallow",
    ),
    row(
        "route_video_to_question",
        summary(curves=swept({"video->question": EARLY_DIP}, n=9)),
        Unevaluable("9 correctly answered samples in the video->question curve"),
        id="9-samples",
    ),
    # --- C2 route_question_to_last: min <= -10 at a window strictly after the Video -/-> Question minimum
    holding("route_question_to_last", Holds({"minimum_pct": -10, "at_layer": 5, "video_to_question_at": 4, "n": 20})),
    # minimum -20 at layer 4 = the Video -/-> Question minimum's layer: not later
    row(
        "route_question_to_last",
        summary(curves=swept({**VQ, "question->last": [0, 0, 0, -20, 0, 0, 0, 0]})),
        Fails({"minimum_pct": -20, "at_layer": 4, "video_to_question_at": 4, "n": 20}),
        id="same-window",
    ),
    # -9.5 > -10 at layer 6
    row(
        "route_question_to_last",
        summary(curves=swept({**VQ, "question->last": [0, 0, 0, 0, 0, -9.5, 0, 0]})),
        Fails({"minimum_pct": -9.5, "at_layer": 6, "video_to_question_at": 4, "n": 20}),
        id="too-shallow",
    ),
    row(
        "route_question_to_last",
        summary(curves=swept({"question->last": EARLY_DIP})),
        Unevaluable("0 correctly answered samples in the video->question curve"),
        id="no-video-to-question",
    ),
    # --- C2 route_no_direct_video_to_last / route_last_to_last_flat: max |mean| <= 5 at every window
    holding("route_no_direct_video_to_last", Holds({"max_abs_pct": 5, "n": 20})),
    # |-5.5| > 5 at layer 2
    row(
        "route_no_direct_video_to_last",
        summary(curves=swept({"video->last": [0, -5.5, 0, 0, 0, 0, 0, 0]})),
        Fails({"max_abs_pct": 5.5, "n": 20}),
        id="too-large",
    ),
    row(
        "route_no_direct_video_to_last",
        summary(curves=swept({"last->last": [0.0] * L})),
        Unevaluable("0 correctly answered samples in the video->last curve"),
        id="no-curve",
    ),
    holding("route_last_to_last_flat", Holds({"max_abs_pct": 4, "n": 20})),
    # |5.01| > 5 at layer 8
    row(
        "route_last_to_last_flat",
        summary(curves=swept({"last->last": [0, 0, 0, 0, 0, 0, 0, 5.01]})),
        Fails({"max_abs_pct": 5.01, "n": 20}),
        id="too-large",
    ),
    row(
        "route_last_to_last_flat",
        summary(curves=swept({"last->last": [0.0] * L}, n=9)),
        Unevaluable("9 correctly answered samples in the last->last curve"),
        id="9-samples",
    ),
    # --- C3 temporal_concepts_late: temporal mean layer - spatial mean layer >= 0 ("later than")
    holding(
        "temporal_concepts_late",
        Holds({"temporal_mean_layer": 6.5, "spatial_mean_layer": 2.0, "hits": {"spatial": 3, "temporal": 9}, "n": 20}),
    ),
    # temporal 2.0 - spatial 3.0 = -1: earlier (reported as layers 3.0 and 4.0)
    row(
        "temporal_concepts_late",
        summary(lens=lens_of(3.0, 2.0)),
        Fails({"temporal_mean_layer": 3.0, "spatial_mean_layer": 4.0, "hits": {"spatial": 3, "temporal": 9}, "n": 20}),
        id="earlier",
    ),
    # equal mean layers: temporal keywords do not surface "later than" spatial ones (a tie does not hold, even
    # with min_layer_gap = 0.0)
    row(
        "temporal_concepts_late",
        summary(lens=lens_of(3.0, 3.0)),
        Fails({"temporal_mean_layer": 4.0, "spatial_mean_layer": 4.0, "hits": {"spatial": 3, "temporal": 9}, "n": 20}),
        id="tie",
    ),
    row(
        "temporal_concepts_late",
        summary(lens_problem="no keyword list is set (logit_lens keywords)"),
        Unevaluable(r"the logit-lens analysis cannot run for m on d: no keyword list is set"),
        id="lens-problem",
    ),
    row("temporal_concepts_late", summary(), Unevaluable("no logit-lens results for m on t"), id="no-lens"),
    row(
        "temporal_concepts_late",
        summary(lens=lens_of(1.0, 5.5, samples=9)),
        Unevaluable("9 correctly answered samples with logit-lens results"),
        id="9-samples",
    ),
    # no temporal hit at all: its mean layer is NaN
    row(
        "temporal_concepts_late",
        summary(lens=lens_of(1.0, float("nan"))),
        Unevaluable("no keyword hits in the video tokens of m on t"),
        id="no-hits",
    ),
    # --- C4 answer_ready_after_integration: max before the Video -/-> Question minimum <= 20 ("stays below"),
    # peak from it on - that max >= 20 ("rises by"); the minimum's own layer counts as after
    holding(
        "answer_ready_after_integration",
        Holds({"max_before_pct": 10, "peak_after_pct": 95, "video_to_question_at": 4, "n": 20}),
    ),
    # before layer 4: max(5, 10, 10) = 10; peak 30; rise 30 - 10 = 20 >= 20 (exactly "by 20")
    row(
        "answer_ready_after_integration",
        summary(curves=swept(VQ), answer=answers([5, 10, 10, 30, 30, 30, 30, 30])),
        Holds({"max_before_pct": 10, "peak_after_pct": 30, "video_to_question_at": 4, "n": 20}),
        id="rise-at-threshold",
    ),
    # rise 29.5 - 10 = 19.5 < 20
    row(
        "answer_ready_after_integration",
        summary(curves=swept(VQ), answer=answers([5, 10, 10, 29.5, 20, 20, 20, 20])),
        Fails({"max_before_pct": 10, "peak_after_pct": 29.5, "video_to_question_at": 4, "n": 20}),
        id="small-rise",
    ),
    # 25 at layer 3, before the minimum at layer 4: 25 > 20 (the rise 90 - 25 = 65 does not matter)
    row(
        "answer_ready_after_integration",
        summary(curves=swept(VQ), answer=answers([5, 5, 25, 90, 90, 90, 90, 90])),
        Fails({"max_before_pct": 25, "peak_after_pct": 90, "video_to_question_at": 4, "n": 20}),
        id="high-before",
    ),
    # exactly 20 before the minimum: "stays at or below low_max_pct" (the threshold is an inclusive maximum)
    row(
        "answer_ready_after_integration",
        summary(curves=swept(VQ), answer=answers([5, 20, 10, 60, 80, 90, 95, 95])),
        Holds({"max_before_pct": 20, "peak_after_pct": 95, "video_to_question_at": 4, "n": 20}),
        id="before-at-threshold",
    ),
    # the Video -/-> Question minimum at layer 1: no layer before it, so layer 1 stands for "before":
    # max before = 10, peak from layer 1 on = 50, rise 40
    row(
        "answer_ready_after_integration",
        summary(
            curves=swept({"video->question": [-30, 0, 0, 0, 0, 0, 0, 0]}),
            answer=answers([10, 50, 50, 50, 50, 50, 50, 50]),
        ),
        Holds({"max_before_pct": 10, "peak_after_pct": 50, "video_to_question_at": 1, "n": 20}),
        id="minimum-at-layer-1",
    ),
    row(
        "answer_ready_after_integration",
        summary(curves=swept(VQ)),
        Unevaluable("no answer-probability results for m on t"),
        id="no-answers",
    ),
    row(
        "answer_ready_after_integration",
        summary(curves=swept(VQ), answer=answers(RISE, n=9)),
        Unevaluable("9 correctly answered samples with answer probabilities"),
        id="9-samples",
    ),
    row(
        "answer_ready_after_integration",
        summary(answer=answers(RISE)),
        Unevaluable("0 correctly answered samples in the video->question curve"),
        id="no-video-to-question",
    ),
    # --- C4 true_option_beats_false: min over layers 6-8 of (true - best false) > 0 ("beats")
    holding("true_option_beats_false", Holds({"from_layer": 6, "min_margin_pct": 1, "n": 20})),
    # a tie at layer 6 (50 - 50 = 0): the true option does not beat the false one
    row(
        "true_option_beats_false",
        summary(answer=answers(TRUE_LATE, [90, 90, 90, 90, 90, 50, 10, 10])),
        Fails({"from_layer": 6, "min_margin_pct": 0, "n": 20}),
        id="tie",
    ),
    # layer 8: 50 - 60 = -10
    row(
        "true_option_beats_false",
        summary(answer=answers(TRUE_LATE, [90, 90, 90, 90, 90, 10, 10, 60])),
        Fails({"from_layer": 6, "min_margin_pct": -10, "n": 20}),
        id="false-wins-late",
    ),
    row("true_option_beats_false", summary(), Unevaluable("no answer-probability results for m on t"), id="no-answers"),
    row(
        "true_option_beats_false",
        summary(answer=answers(TRUE_LATE, FALSE_LATE, n=9)),
        Unevaluable("9 correctly answered samples with answer probabilities"),
        id="9-samples",
    ),
    # probabilities for layers 1-5 only: nothing from layer 6 on
    row(
        "true_option_beats_false",
        summary(answer=answers([50.0] * 5)),
        Unevaluable("no layer at or after layer 6 of 8"),
        id="no-late-layer",
    ),
    # --- C5 pruning_edges_kept: effective / full edges <= 0.60
    holding("pruning_edges_kept", Holds({"kept_fraction": 0.6, **FACTS, "n": 300})),
    # 61 / 100 = 0.61 > 0.60
    row(
        "pruning_edges_kept",
        summary(n=300, n_correct=240, pruning=pruned(80.0, 79.5, 50.0, kept=61.0)),
        Fails({"kept_fraction": 0.61, **FACTS, "n": 300}),
        id="too-many-edges",
    ),
    # an edge count needs no accuracy: 40 / 100 = 0.4 with nothing answered correctly
    row(
        "pruning_edges_kept",
        summary(n=300, n_correct=0, pruning=pruned(0.0, 0.0, 0.0)),
        Holds({"kept_fraction": 0.4, **FACTS, "n": 300}),
        id="zero-accuracy",
    ),
    row("pruning_edges_kept", summary(), Unevaluable("no pruning results for m on t"), id="no-pruning"),
    row(
        "pruning_edges_kept",
        summary(n=9, n_correct=9, pruning=pruned(80.0, 79.5, 50.0, n=9)),
        Unevaluable("9 samples with pruning results"),
        id="9-samples",
    ),
    # --- C5 pruning_parity: full - effective accuracy <= 1.0 point (one-sided: a gain is parity)
    holding(
        "pruning_parity",
        Holds({"full_acc": 80.0, "effective_acc": 79.0, "loss_points": 1.0, **FACTS, "n": 300}),
    ),
    # 80 - 82 = -2: the pathways answer better (the paper's +2.0)
    row(
        "pruning_parity",
        summary(n=300, n_correct=240, pruning=pruned(80.0, 82.0, 50.0)),
        Holds({"full_acc": 80.0, "effective_acc": 82.0, "loss_points": -2.0, **FACTS, "n": 300}),
        id="gain",
    ),
    # 80 - 78.5 = 1.5 > 1.0
    row(
        "pruning_parity",
        summary(n=300, n_correct=240, pruning=pruned(80.0, 78.5, 50.0)),
        Fails({"full_acc": 80.0, "effective_acc": 78.5, "loss_points": 1.5, **FACTS, "n": 300}),
        id="loss",
    ),
    row(
        "pruning_parity",
        summary(n=300, n_correct=0, pruning=pruned(0.0, 0.0, 0.0)),
        Unevaluable("m answers none of the 300 samples correctly with full attention"),
        id="zero-accuracy",
    ),
    row(
        "pruning_parity",
        summary(n=9, n_correct=9, pruning=pruned(80.0, 79.5, 50.0, n=9)),
        Unevaluable("9 samples with pruning results"),
        id="9-samples",
    ),
    # --- C5 random_pruning_hurts: full - random accuracy >= 5 points
    holding("random_pruning_hurts", Holds(randoms(80.0, 75.0, 75.0, 5.0))),
    # 80 - 75.5 = 4.5 < 5
    row(
        "random_pruning_hurts",
        summary(n=300, n_correct=240, pruning=pruned(80.0, 79.5, 75.5)),
        Fails(randoms(80.0, 75.5, 75.5, 4.5)),
        id="small-loss",
    ),
    # the mean loses 10 points, but the CI reaches 76: 80 - 76 = 4 < 5 (issue 19: the upper bound decides)
    row(
        "random_pruning_hurts",
        summary(n=300, n_correct=240, pruning=pruned(80.0, 79.5, 70.0, random_hi=76.0)),
        Fails(randoms(80.0, 70.0, 76.0, 4.0)),
        id="ci-reaches",
    ),
    # 80 - 74 = 6 >= 5 with the mean at 70
    row(
        "random_pruning_hurts",
        summary(n=300, n_correct=240, pruning=pruned(80.0, 79.5, 70.0, random_hi=74.0)),
        Holds(randoms(80.0, 70.0, 74.0, 6.0)),
        id="ci-below",
    ),
    row(
        "random_pruning_hurts",
        summary(n=300, n_correct=240, pruning=PruningSummary(300, 80.0, 79.5, 50.0, 100.0, 40.0, 40.0)),
        Unevaluable("no interval of the random control"),
        id="no-interval",
    ),
    row(
        "random_pruning_hurts",
        summary(n=300, n_correct=0, pruning=pruned(0.0, 0.0, 0.0)),
        Unevaluable("m answers none of the 300 samples correctly with full attention"),
        id="zero-accuracy",
    ),
    row("random_pruning_hurts", summary(), Unevaluable("no pruning results for m on t"), id="no-pruning"),
    # --- C3 temporal_alignment_needs_cross_frame: temporal drop >= 20 % and the gap's CI low > 0
    holding(
        "temporal_alignment_needs_cross_frame",
        Holds(
            {"temporal_drop_pct": 20.0, "spatial_abs_change_pct": 5.0, "gap_pct": 15.0, "gap_ci": "[0.5, 30]", "n": 12}
        ),
    ),
    # 19.9 < 20: too small a temporal drop although the gap is clear
    row(
        "temporal_alignment_needs_cross_frame",
        aligned(19.9, 0.0, 10.0, 30.0),
        Fails(
            {"temporal_drop_pct": 19.9, "spatial_abs_change_pct": 0.0, "gap_pct": 19.9, "gap_ci": "[10, 30]", "n": 12}
        ),
        id="small-drop",
    ),
    # spatial hits change as much: CI low exactly 0 is not above 0
    row(
        "temporal_alignment_needs_cross_frame",
        aligned(40.0, 35.0, 0.0, 10.0),
        Fails(
            {"temporal_drop_pct": 40.0, "spatial_abs_change_pct": 35.0, "gap_pct": 5.0, "gap_ci": "[0, 10]", "n": 12}
        ),
        id="spatial-changes-too",
    ),
    row(
        "temporal_alignment_needs_cross_frame",
        aligned(40.0, 0.0, 10.0, 50.0, n_paired=9),
        Unevaluable("9 correctly answered samples with temporal and spatial keyword hits"),
        id="9-samples",
    ),
    row(
        "temporal_alignment_needs_cross_frame",
        summary(),
        Unevaluable("no logit-lens alignment results for m on t"),
        id="no-alignment",
    ),
]


def test_every_claim_of_the_registry_is_in_the_table(registry):
    assert set(HOLDING) == set(registry.claims)
    outcomes = {(p.values[0], type(p.values[2])) for p in CASES}
    for claim in registry.claims:
        assert {(claim, Holds), (claim, Fails), (claim, Unevaluable)} <= outcomes, claim


@pytest.mark.parametrize(("claim", "s", "expected", "others", "settings"), CASES)
def test_claim_outcome(registry, claim, s, expected, others, settings):
    """The verdict and the exact measured values (rounded as reported: 3 decimals), or the NotEvaluable reason."""
    if isinstance(expected, Unevaluable):
        with pytest.raises(NotEvaluable, match=expected.reason):
            evaluate(registry, claim, s, others, settings)
        return
    result = evaluate(registry, claim, s, others, settings)
    assert result.passed is isinstance(expected, Holds), result.message
    assert result.measured == expected.measured


# Per-model thresholds ([models."<name>".thresholds.<claim>]) that turn each holding case into a failure, for that
# model only. Hand computation per claim next to the override.
STRICTER = {
    # layer 4 > ceil(0.375 * 8) = 3: the minimum is no longer early
    "cross_frame_early": {"within_fraction": 0.375},
    # late max 3.0 > 2.5
    "cross_frame_late_flat": {"max_abs_change_pct": 2.5},
    # -5 > -10 points
    "cross_frame_accuracy_drop": {"max_drop_points": -10.0},
    # p = 1/32 = 0.03125 > 0.01
    "cross_frame_video_vs_image": {"alpha": 0.01},
    # layer 6 > ceil(0.625 * 8) = 5
    "route_video_to_question": {"within_fraction": 0.625},
    # -10 > -10.5
    "route_question_to_last": {"min_change_pct": -10.5},
    # 5 > 4.99
    "route_no_direct_video_to_last": {"max_abs_change_pct": 4.99},
    # 4 > 3
    "route_last_to_last_flat": {"max_abs_change_pct": 3.0},
    # gap 4.5 < 5
    "temporal_concepts_late": {"min_layer_gap": 5.0},
    # max before 10 > 5
    "answer_ready_after_integration": {"low_max_pct": 5.0},
    # from ceil(0.5 * 8) = centre 4 (layer 5) on: 0 - 90 = -90 at layer 5
    "true_option_beats_false": {"from_fraction": 0.5},
    # 0.6 > 0.5
    "pruning_edges_kept": {"max_kept_fraction": 0.5},
    # loss 1.0 > 0.5
    "pruning_parity": {"max_loss_points": 0.5},
    # loss 5 < 5.5
    "random_pruning_hurts": {"min_loss_points": 5.5},
    # drop 20 < 25
    "temporal_alignment_needs_cross_frame": {"min_temporal_drop_pct": 25.0},
}


# --- issue 18 part 6: answer_decided_after_middle (C4), added to HOLDING, CASES and STRICTER in one block (the
# parametrizations above hold the list and dict objects, and collection reads them after the module ran)


def exited(layer: int, n: int = 20) -> EarlyExitSummary:
    """An early exit at 0-based `layer` of L = 8 with 95% of n samples settled there, 90% / 95% accuracy."""
    return EarlyExitSummary("options", 0.95, L, layer, 100.0, 95.0, 90.0, 95.0, 50.0, n)


EXIT_MEASURED = {"settled_pct": 95.0, "exit_accuracy": 90.0, "full_accuracy": 95.0}
# exit at 0-based layer 4 = layer 5 >= ceil(0.5 * 8) + 1 = layer 5, the first of the second half
HOLDING["answer_decided_after_middle"] = (summary(early_exit=exited(4)), None, None)
CASES.extend(
    [
        holding(
            "answer_decided_after_middle",
            Holds({"exit_layer": 5, "first_late_layer": 5, "last_allowed_layer": 7, **EXIT_MEASURED, "n": 20}),
        ),
        # layer 4 is the last layer of the first half
        row(
            "answer_decided_after_middle",
            summary(early_exit=exited(3)),
            Fails({"exit_layer": 4, "first_late_layer": 5, "last_allowed_layer": 7, **EXIT_MEASURED, "n": 20}),
            id="first-half",
        ),
        # ceil(0.875 * 8) = 0-based layer 7, the last layer: an exit there is no early exit
        row(
            "answer_decided_after_middle",
            summary(early_exit=exited(7)),
            Fails({"exit_layer": 8, "first_late_layer": 5, "last_allowed_layer": 7, **EXIT_MEASURED, "n": 20}),
            id="last-layer",
        ),
        row(
            "answer_decided_after_middle",
            summary(early_exit=exited(6)),
            Holds({"exit_layer": 7, "first_late_layer": 5, "last_allowed_layer": 7, **EXIT_MEASURED, "n": 20}),
            id="last-allowed",
        ),
        row(
            "answer_decided_after_middle",
            summary(n=9, n_correct=9, early_exit=exited(6, n=9)),
            Unevaluable("9 samples with early-exit read-outs"),
            id="9-samples",
        ),
        row("answer_decided_after_middle", summary(), Unevaluable("no early-exit results for m on t"), id="none"),
    ]
)
# from ceil(0.625 * 8) = 0-based layer 5 on: the exit at 0-based layer 4 is early
STRICTER["answer_decided_after_middle"] = {"from_fraction": 0.625}


def _toml(tables: dict[str, dict[str, float]]) -> str:
    return "\n".join(
        f'[models."{model}".thresholds.{claim}]\n' + "".join(f"{k} = {v!r}\n" for k, v in values.items())
        for (model, claim), values in tables.items()
    )


@pytest.fixture(scope="module")
def strict_registry(tmp_path_factory):
    path = tmp_path_factory.mktemp("registry") / "strict.toml"
    path.write_text(_toml({("strict", claim): values for claim, values in STRICTER.items()}))
    return load_registry([path])


@pytest.mark.parametrize("claim", sorted(HOLDING))
def test_a_per_model_threshold_override_changes_the_verdict_for_that_model_only(strict_registry, claim):
    s, others, settings = HOLDING[claim]
    assert evaluate(strict_registry, claim, s, others, settings).passed is True  # model "m": the defaults
    result = evaluate(strict_registry, claim, replace(s, model="strict"), others, settings)
    assert result.passed is False, result.message
    for key, value in STRICTER[claim].items():
        assert result.thresholds[key] == value
    assert result.thresholds["min_samples"] == 10  # the evidence minimum still applies


def test_overrides_at_the_measured_value_keep_the_claim_holding(tmp_path):
    """Edges reached through per-model overrides: p exactly at alpha, a fraction of the depth between two layers."""
    path = tmp_path / "edges.toml"
    path.write_text(
        _toml(
            {
                ("m", "cross_frame_video_vs_image"): {"alpha": 0.03125},
                ("m", "cross_frame_early"): {"within_fraction": 0.45},
                ("m", "route_video_to_question"): {"within_fraction": 0.625},
            }
        )
    )
    registry = load_registry([path])
    # p = 1/32 = 0.03125 = alpha: significant at level alpha (p <= alpha)
    s, others, settings = HOLDING["cross_frame_video_vs_image"]
    assert evaluate(registry, "cross_frame_video_vs_image", s, others, settings).passed is True
    # 0.45 * 8 = 3.6: centre 3 < 3.6, so layer 4 is still early (latest early layer ceil(3.6) = 4), layer 5 is not
    result = evaluate(registry, "cross_frame_early", HOLDING["cross_frame_early"][0])
    assert result.passed is True and result.measured["latest_early_layer"] == 4
    late = summary(curves=swept({"cross_frame": [0, -2, -4, -6, -30, -1, 0, 0]}))  # minimum at layer 5
    assert evaluate(registry, "cross_frame_early", late).passed is False
    # 0.625 * 8 = 5: centres 0-4 (layers 1-5) are before it
    at_5 = summary(curves=swept({"video->question": [0, 0, 0, 0, -10, 0, 0, 0]}))
    result = evaluate(registry, "route_video_to_question", at_5)
    assert result.passed is True and result.measured["latest_layer"] == 5


def test_the_evidence_minimum_of_a_registry_file_applies_to_every_claim(tmp_path):
    """[evidence] min_samples = 1000: no holding case has that many samples, so each is "not evaluable"."""
    path = tmp_path / "evidence.toml"
    path.write_text("[evidence]\nmin_samples = 1000\n")
    registry = load_registry([path])
    for claim, (s, others, settings) in HOLDING.items():
        with pytest.raises(NotEvaluable, match=r"at least 1000 are needed \(min_samples\)"):
            evaluate(registry, claim, s, others, settings)


def test_a_lower_evidence_minimum_lets_a_small_case_be_evaluated(tmp_path, registry):
    few = summary(n=3, n_correct=3, curves=swept({"cross_frame": EARLY_DIP}, n=3))
    with pytest.raises(NotEvaluable, match="at least 10 are needed"):
        evaluate(registry, "cross_frame_early", few)
    path = tmp_path / "evidence.toml"
    path.write_text("[evidence]\nmin_samples = 3\n")  # exactly the 3 samples of the curve
    assert evaluate(load_registry([path]), "cross_frame_early", few).passed is True


def test_min_samples_per_model_and_claim(tmp_path):
    path = tmp_path / "few.toml"
    path.write_text(_toml({("few", "cross_frame_early"): {"min_samples": 3}}))
    registry = load_registry([path])
    few = summary(n=3, n_correct=3, curves=swept({"cross_frame": EARLY_DIP}, n=3))
    assert evaluate(registry, "cross_frame_early", replace(few, model="few")).passed is True
    with pytest.raises(NotEvaluable, match="at least 10 are needed"):  # another model keeps the default
        evaluate(registry, "cross_frame_early", few)
    with pytest.raises(NotEvaluable, match="at least 10 are needed"):  # another claim keeps the default
        evaluate(registry, "cross_frame_late_flat", replace(few, model="few"))


def test_a_depth_fraction_that_floats_just_above_a_layer_bound_counts_no_extra_layer(tmp_path):
    """0.28 * 25 = 7.000000000000001 in floating point, but the bound is 7: centres 0-6 (layers 1-7) are before it
    and centre 7 (layer 8) is from it on, for "first part" bounds (within_fraction) and "from" bounds alike."""
    path = tmp_path / "fractions.toml"
    fractions = {
        "cross_frame_early": {"within_fraction": 0.28},
        "route_video_to_question": {"within_fraction": 0.28},
        "cross_frame_late_flat": {"from_fraction": 0.28},
        "true_option_beats_false": {"from_fraction": 0.28},
    }
    path.write_text(_toml({("m", claim): values for claim, values in fractions.items()}))
    registry = load_registry([path])
    depth, centres = 25, list(range(25))
    at_8 = [0.0] * depth
    at_8[7] = -30.0  # centre 7 = layer 8
    sweep = {c: Curve(c, centres, at_8, at_8, at_8, 20) for c in ("cross_frame", "video->question")}
    s = replace(summary(curves=sweep), num_layers=depth)
    early = evaluate(registry, "cross_frame_early", s)  # layer 8 > 7: not early
    assert early.passed is False and early.measured["latest_early_layer"] == 7
    before = evaluate(registry, "route_video_to_question", s)
    assert before.passed is False and before.measured["latest_layer"] == 7
    late = evaluate(registry, "cross_frame_late_flat", s)  # |-30| at layer 8, the first late window
    assert late.passed is False and late.measured == {"max_abs_late_pct": 30.0, "from_layer": 8, "n": 20}
    false_max = [10.0] * depth
    false_max[7] = 60.0  # 50 - 60 = -10 at layer 8
    beats = evaluate(
        registry,
        "true_option_beats_false",
        replace(summary(answer=answers([50.0] * depth, false_max)), num_layers=depth),
    )
    assert beats.passed is False and beats.measured == {"from_layer": 8, "min_margin_pct": -10.0, "n": 20}
