"""The paper's claims as registered evaluators (`flowcheck.claims.evaluator`): each reads the summaries of one
case (`flowcheck.claims.Evidence`) and gives a `ClaimResult` whose message states the measured values next to the
thresholds, or raises NotEvaluable with the reason. Layers in measured values count from 1 (`user_layer`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flowcheck.analyses.curves import Curve
from flowcheck.analyses.pruning import PruningSummary
from flowcheck.analyses.summary import TaskSummary
from flowcheck.claims import (
    ClaimResult,
    ClaimSpec,
    Evaluator,
    Evidence,
    NotEvaluable,
    claim_result,
    evaluator,
    require_samples,
    user_layer,
)
from flowcheck.stats import sign_test_greater


def _bound(fraction: float, num_layers: int) -> int:
    """ceil(fraction * num_layers): how many window centres (0-based c) lie before the bound (c < fraction * L), which
    is also the first centre from it on. The product is rounded to 9 decimals first, so that a bound that floats just
    above a layer (0.28 * 25 = 7.000000000000001) is that layer (7), not the next."""
    return math.ceil(round(fraction * num_layers, 9))


def _analysis(summary: TaskSummary, name: str, what: str) -> Any:
    """Analysis `name`'s summary; NotEvaluable with the analysis's own problem (why it could not run) or, when it
    ran, "no <what> results"."""
    value = summary.get(name)
    if value is None:
        problem = summary.problems.get(name)
        if problem:
            raise NotEvaluable(f"the {what} analysis cannot run for {summary.model} on {summary.dataset}: {problem}")
        raise NotEvaluable(f"no {what} results for {summary.model} on {summary.task}")
    return value


def _curve(summary: TaskSummary, condition: str, t: Mapping[str, float]) -> Curve:
    sweep = summary.get("sweep")
    if sweep is None and summary.problems.get("sweep"):
        _analysis(summary, "sweep", "knockout sweep")
    curve = sweep.curves.get(condition) if sweep else None
    n = 0 if curve is None else curve.n
    require_samples(summary, n, t, f"correctly answered samples in the {condition} curve")
    return curve


@evaluator("cross_frame_early", default=True)
def _cross_frame_early(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    c = _curve(s, "cross_frame", t)
    last = _bound(t["within_fraction"], s.num_layers)  # the last window centre (1-based) that counts as early
    passed = c.minimum <= t["min_change_pct"] and user_layer(c.argmin) <= last
    return claim_result(
        spec,
        s,
        passed,
        {"minimum_pct": c.minimum, "at_layer": user_layer(c.argmin), "latest_early_layer": last, "n": c.n},
        t,
        "the cross-frame curve's minimum and where it falls",
    )


@evaluator("cross_frame_late_flat", default=True)
def _late_flat(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    c = _curve(s, "cross_frame", t)
    start = _bound(t["from_fraction"], s.num_layers)  # first late window centre, 0-based
    late = [abs(m) for x, m in zip(c.centers, c.mean, strict=True) if x >= start]
    if not late:
        raise NotEvaluable(f"no window centre at or after layer {user_layer(start)} of {s.num_layers} for {s.model}")
    worst = max(late)
    return claim_result(
        spec,
        s,
        worst <= t["max_abs_change_pct"],
        {"max_abs_late_pct": worst, "from_layer": user_layer(start), "n": c.n},
        t,
        "the cross-frame curve in the last quarter",
    )


@evaluator("cross_frame_accuracy_drop", default=True)
def _accuracy_drop(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    a = _analysis(s, "accuracy", "first-half cross-frame accuracy")
    require_samples(s, a.n, t, "samples")
    if s.n_correct == 0:
        raise NotEvaluable(f"{s.model} answers none of the {s.n} samples of {s.task} correctly: no accuracy to drop")
    return claim_result(
        spec,
        s,
        a.drop_points <= t["max_drop_points"],
        {
            "base_acc": a.base,
            "knocked_acc": a.knocked,
            "drop_points": a.drop_points,
            "drop_relative_pct": a.drop_relative,
            "n": a.n,
        },
        t,
        "accuracy with cross-frame attention blocked in layers 1 to L/2 (absolute points)",
    )


def paired_drop_test(video: Mapping[str, int], image: Mapping[str, int]) -> tuple[int, int, float]:
    """Per shared sample, did the video model lose more than the image model? (wins, losses, one-sided p)."""
    shared = sorted(set(video) & set(image))
    wins = sum(video[k] < image[k] for k in shared)
    losses = sum(video[k] > image[k] for k in shared)
    return wins, losses, sign_test_greater(wins, losses)


@evaluator("cross_frame_video_vs_image", default=True)
def _video_vs_image(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    video, t = e.summary, e.thresholds
    image_model = e.setting("image_model")
    if not image_model or e.summary_of is None:
        raise NotEvaluable(
            f'no paired image model is registered for {video.model} ([models."{video.model}"] image_model)'
        )
    image = e.summary_of(image_model)
    video_acc, image_acc = video.get("accuracy"), image.get("accuracy")
    if video_acc is None or image_acc is None or not video_acc.correctness_change or not image_acc.correctness_change:
        raise NotEvaluable(f"no first-half cross-frame records for {video.model} and its image model on {video.task}")
    paired = len(set(video_acc.correctness_change) & set(image_acc.correctness_change))
    require_samples(video, paired, t, f"samples answered by both {video.model} and {image.model}")
    if video.n_correct == 0:
        raise NotEvaluable(f"{video.model} answers none of the {video.n} samples of {video.task} correctly")
    wins, losses, p = paired_drop_test(video_acc.correctness_change, image_acc.correctness_change)
    measured = {
        "video_drop_points": video_acc.drop_points,
        "image_drop_points": image_acc.drop_points,
        "video_worse_pairs": wins,
        "image_worse_pairs": losses,
        "p_value": p,
        "image_model": image.model,
        "n": paired,
    }
    return claim_result(
        spec,
        video,
        p <= t["alpha"],
        measured,
        t,
        "paired over samples: does first-half cross-frame blocking hurt the video model more",
    )


@evaluator("route_video_to_question", default=True)
def _route_vq(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    c = _curve(s, "video->question", t)
    last = _bound(t["within_fraction"], s.num_layers)
    return claim_result(
        spec,
        s,
        c.minimum <= t["min_change_pct"] and user_layer(c.argmin) <= last,
        {"minimum_pct": c.minimum, "at_layer": user_layer(c.argmin), "latest_layer": last, "n": c.n},
        t,
        "the Video -/-> Question curve's minimum and where it falls",
    )


@evaluator("route_question_to_last", default=True)
def _route_ql(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    c, vq = _curve(s, "question->last", t), _curve(s, "video->question", t)
    passed = c.minimum <= t["min_change_pct"] and c.argmin > vq.argmin
    return claim_result(
        spec,
        s,
        passed,
        {
            "minimum_pct": c.minimum,
            "at_layer": user_layer(c.argmin),
            "video_to_question_at": user_layer(vq.argmin),
            "n": c.n,
        },
        t,
        "the Question -/-> Last minimum and whether it comes after the Video -/-> Question one",
    )


def _flat(condition: str) -> Evaluator:
    def evaluate(spec: ClaimSpec, e: Evidence) -> ClaimResult:
        s, t = e.summary, e.thresholds
        c = _curve(s, condition, t)
        worst = max(abs(m) for m in c.mean)
        return claim_result(
            spec,
            s,
            worst <= t["max_abs_change_pct"],
            {"max_abs_pct": worst, "n": c.n},
            t,
            f"the {condition} curve at every window",
        )

    return evaluate


@evaluator("temporal_concepts_late", default=True)
def _lens(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    lens = _analysis(s, "logit_lens", "logit-lens")
    require_samples(s, lens.samples, t, "correctly answered samples with logit-lens results")
    spatial, temporal = lens.mean_layer.get("spatial", math.nan), lens.mean_layer.get("temporal", math.nan)
    empty = [name for name, layer in (("spatial", spatial), ("temporal", temporal)) if math.isnan(layer)]
    if empty:
        raise NotEvaluable(
            f"no keyword hits in the video tokens of {s.model} on {s.task} (hits: {lens.hits}): no video position "
            f"reads as a keyword of the {' and '.join(empty)} list{'s' if len(empty) > 1 else ''} at any layer"
        )
    return claim_result(
        spec,
        s,
        temporal > spatial and temporal - spatial >= t["min_layer_gap"],  # "later than": a tie does not hold
        {
            "temporal_mean_layer": user_layer(temporal),
            "spatial_mean_layer": user_layer(spatial),
            "hits": lens.hits,
            "n": lens.samples,
        },
        t,
        "hit-weighted mean layer of temporal vs spatial keywords",
    )


@evaluator("answer_ready_after_integration", default=True)
def _ready(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    answer = _analysis(s, "answer_probability", "answer-probability")
    require_samples(s, answer.n, t, "correctly answered samples with answer probabilities")
    vq = _curve(s, "video->question", t).argmin
    before = answer.true_mean[:vq] or [answer.true_mean[0]]
    after = answer.true_mean[vq:]
    low, peak = max(before), max(after)
    passed = low <= t["low_max_pct"] and peak - low >= t["min_rise_pct"]
    return claim_result(
        spec,
        s,
        passed,
        {"max_before_pct": low, "peak_after_pct": peak, "video_to_question_at": user_layer(vq), "n": answer.n},
        t,
        "true-option probability by layer around the Video -/-> Question minimum",
    )


@evaluator("true_option_beats_false", default=True)
def _beats(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    answer = _analysis(s, "answer_probability", "answer-probability")
    require_samples(s, answer.n, t, "correctly answered samples with answer probabilities")
    start = _bound(t["from_fraction"], s.num_layers)
    margins = [tr - fa for tr, fa in zip(answer.true_mean[start:], answer.false_max_mean[start:], strict=True)]
    if not margins:
        raise NotEvaluable(f"no layer at or after layer {user_layer(start)} of {s.num_layers}")
    worst = min(margins)
    return claim_result(
        spec,
        s,
        worst > 0,
        {"from_layer": user_layer(start), "min_margin_pct": worst, "n": answer.n},
        t,
        "mean true-option minus best false-option probability from the middle layers on",
    )


@evaluator("answer_decided_after_middle", default=True)
def _decided_late(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    exit_ = _analysis(s, "early_exit", "early-exit")
    require_samples(s, exit_.n, t, "samples with early-exit read-outs")
    first = _bound(t["from_fraction"], s.num_layers)  # the first 0-based layer of the late part
    # the first 0-based layer that is no longer "right after the middle": an exit there or later means the last
    # layers still change the decision (an exit at the last layer is no early exit at all)
    beyond = _bound(t["before_fraction"], s.num_layers)
    return claim_result(
        spec,
        s,
        first <= exit_.exit_layer < beyond,
        {
            "exit_layer": user_layer(exit_.exit_layer),
            "first_late_layer": user_layer(first),
            "last_allowed_layer": user_layer(beyond - 1),
            "settled_pct": exit_.settled_pct,
            "exit_accuracy": exit_.exit_accuracy,
            "full_accuracy": exit_.full_accuracy,
            "n": exit_.n,
        },
        t,
        f"earliest layer by which {exit_.agreement_threshold:.0%} of the samples settled on the final prediction",
    )


def _pruning_summary(s: TaskSummary, t: Mapping[str, float], accuracy: bool = True) -> PruningSummary:
    pruning = _analysis(s, "pruning", "pruning")
    require_samples(s, pruning.n, t, "samples with pruning results")
    if accuracy and pruning.full_accuracy <= 0:
        raise NotEvaluable(
            f"{s.model} answers none of the {pruning.n} samples correctly with full attention: "
            "accuracy under pruning cannot be compared"
        )
    return pruning


def _pathway_facts(p: PruningSummary) -> dict[str, Any]:
    """Which pathways the pruning numbers are for and on which samples (measured values of the C5 claims)."""
    return {"spec_source": p.source or "unknown", "samples": p.half}


@evaluator("pruning_edges_kept", default=True)
def _edges(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    p = _pruning_summary(s, t, accuracy=False)
    return claim_result(
        spec,
        s,
        p.kept_fraction <= t["max_kept_fraction"],
        {"kept_fraction": p.kept_fraction, **_pathway_facts(p), "n": p.n},
        t,
        "share of attention edges the effective pathways keep",
    )


@evaluator("pruning_parity", default=True)
def _parity(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    s, t = e.summary, e.thresholds
    p = _pruning_summary(s, t)
    loss = p.full_accuracy - p.effective_accuracy
    return claim_result(
        spec,
        s,
        loss <= t["max_loss_points"],
        {
            "full_acc": p.full_accuracy,
            "effective_acc": p.effective_accuracy,
            "loss_points": loss,
            **_pathway_facts(p),
            "n": p.n,
        },
        t,
        "accuracy with only the effective pathways vs full attention",
    )


@evaluator("random_pruning_hurts", default=True)
def _random(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    """Passes when even the upper bound of the random-control accuracy's 95% CI (over samples, the accuracy
    averaged over the seeds) lies min_loss_points below full attention."""
    s, t = e.summary, e.thresholds
    p = _pruning_summary(s, t)
    if not p.random_per_seed or math.isnan(p.random_hi):
        raise NotEvaluable(
            "the pruning results have no interval of the random control (a single video or sample has none; results "
            "computed before intervals existed need a re-run)"
        )
    loss = p.full_accuracy - p.random_hi
    return claim_result(
        spec,
        s,
        loss >= t["min_loss_points"],
        {
            "full_acc": p.full_accuracy,
            "random_acc": p.random_accuracy,
            "random_ci_hi": p.random_hi,
            "loss_points_vs_ci_hi": loss,
            "seeds": len(p.random_per_seed),
            **_pathway_facts(p),
            "n": p.n,
        },
        t,
        "accuracy with as many edges blocked at random (mean over seeds, 95% CI upper bound)",
    )


evaluator("route_no_direct_video_to_last", default=True)(_flat("video->last"))
evaluator("route_last_to_last_flat", default=True)(_flat("last->last"))


# issue 17 part 3: alignment through cross-frame attention.
@evaluator("temporal_alignment_needs_cross_frame", default=True)
def _alignment(spec: ClaimSpec, e: Evidence) -> ClaimResult:
    """Temporal keyword hits drop by >= min_temporal_drop_pct (mean of per-sample relative drops) and the paired
    bootstrap interval of (temporal drop - |spatial change|) lies above min_gap_pct."""
    s, t = e.summary, e.thresholds
    a = _analysis(s, "lens_alignment", "logit-lens alignment")
    require_samples(s, a.get("n_paired", 0), t, "correctly answered samples with temporal and spatial keyword hits")
    if math.isnan(a["gap_low"]):
        raise NotEvaluable(
            f"the interval of the temporal-spatial gap needs at least two samples with keyword hits ({a['n_paired']})"
        )
    passed = a["temporal_drop_pct"] >= t["min_temporal_drop_pct"] and a["gap_low"] > t["min_gap_pct"]
    return claim_result(
        spec,
        s,
        passed,
        {
            "temporal_drop_pct": a["temporal_drop_pct"],
            "spatial_abs_change_pct": a["spatial_abs_change_pct"],
            "gap_pct": a["gap_pct"],
            "gap_ci": f"[{a['gap_low']:.3g}, {a['gap_high']:.3g}]",
            "n": a["n_paired"],
        },
        t,
        "keyword hits in video tokens with cross-frame attention blocked in layers 1 to L/2 vs unblocked",
    )
