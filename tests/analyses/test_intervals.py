"""Video-clustered bootstrap intervals through the analyses, the margin metric, and what the report says of both."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowcheck.analyses.accuracy import AccuracyAnalysis
from flowcheck.analyses.answer_probability import AnswerProbability, ProbabilityCurves
from flowcheck.analyses.base import ReportInput
from flowcheck.analyses.curves import METRICS, forced_choice_margin, knockout_curves, relative_change_curves
from flowcheck.analyses.records import Baseline, KnockoutRecord, SampleSweep
from flowcheck.analyses.runner import ModelResults
from flowcheck.analyses.summary import summarise
from flowcheck.analyses.sweep import Curves, KnockoutSweep
from flowcheck.options import SPECS, OptionError, resolve
from flowcheck.stats import RESAMPLING, bootstrap_ci

LETTERS = [10, 11, 12, 13]
# Relative changes (%) of six videos' questions at two window centres; video v's true option is v % 4.
CHANGES = {0: [-40.0, -5.0, -12.0, 3.0, -30.0, -22.0], 1: [-2.0, 1.0, -8.0, 0.5, -3.0, 4.0]}


def baseline(sample: str, option_probs=(0.4, 0.3, 0.2, 0.1), true: int = 0) -> Baseline:
    """A correctly answered sample (argmax = the true letter, probability option_probs[true])."""
    return Baseline(sample, "t", "d", true, LETTERS, list(option_probs), LETTERS[true], option_probs[true], {})


def record(sample: str, center: int | None, p_base: float, p_new: float, new_option_probs=(), **kw) -> KnockoutRecord:
    style = kw.get("style", "center")
    layers = kw.get("layers", [0])
    new_argmax = kw.get("new_argmax", LETTERS[0])
    return KnockoutRecord(
        sample, "cross_frame", "cross-frame", center, style, layers, p_base, p_new, new_argmax, list(new_option_probs)
    )


def questions(per_video: int) -> tuple[list[Baseline], list[KnockoutRecord], dict[str, str]]:
    """`per_video` identical questions about each of six videos: baselines, sweep records, sample -> video."""
    baselines, records, videos = [], [], {}
    for v in range(6):
        for q in range(per_video):
            sample = f"v{v}/q{q}"
            baselines.append(baseline(sample))
            videos[sample] = f"video{v}.mp4"
            for center, changes in CHANGES.items():
                p_new = 0.4 * (1 + changes[v] / 100)
                records.append(record(sample, center, 0.4, p_new, (p_new, 0.3, 0.2, 0.1)))
    return baselines, records, videos


def test_two_identical_questions_per_video_give_the_interval_of_one():
    once = relative_change_curves(*questions(1)[:2], clusters=questions(1)[2], seed=4)["cross_frame"]
    twice_b, twice_r, twice_videos = questions(2)
    twice = relative_change_curves(twice_b, twice_r, clusters=twice_videos, seed=4)["cross_frame"]
    assert twice.mean == pytest.approx(once.mean)
    assert (twice.lo, twice.hi) == (pytest.approx(once.lo, rel=1e-12), pytest.approx(once.hi, rel=1e-12))
    assert (twice.n, twice.videos, twice.resampling) == (12, 6, "video")
    # counted as 12 independent questions, the same values look twice as certain: a narrower, wrong interval
    naive = relative_change_curves(twice_b, twice_r, seed=4)["cross_frame"]
    assert naive.resampling == "sample" and naive.videos == 0
    assert naive.hi[0] - naive.lo[0] < 0.85 * (once.hi[0] - once.lo[0])


def test_the_sample_option_is_the_plain_percentile_bootstrap_of_the_old_curves():
    baselines, records, videos = questions(1)
    curve = relative_change_curves(baselines, records, seed=9, n_boot=4000)["cross_frame"]
    rng = np.random.default_rng(9)
    for i, center in enumerate(sorted(CHANGES)):
        assert (curve.lo[i], curve.hi[i]) == pytest.approx(bootstrap_ci(CHANGES[center], seed=rng, n_boot=4000))
    # the hand-written estimator the curves used before (seaborn's): the same interval up to Monte Carlo error
    values = np.asarray(CHANGES[0])
    means = values[np.random.default_rng(0).integers(0, 6, size=(20000, 6))].mean(axis=1)
    old = np.percentile(means, [2.5, 97.5])
    assert [curve.lo[0], curve.hi[0]] == pytest.approx(old, abs=0.05 * (old[1] - old[0]))
    # one question per video: resampling videos is resampling samples
    by_video = relative_change_curves(baselines, records, clusters=videos, seed=9, n_boot=4000)["cross_frame"]
    assert (by_video.lo, by_video.hi) == (curve.lo, curve.hi)


def results_of(per_video: int) -> ModelResults:
    """ModelResults as the runner builds them: sweep records with a first-half accuracy record, answer
    probabilities, and each sample's video."""
    baselines, records, videos = questions(per_video)
    sweeps = {}
    for v in range(6):
        for q in range(per_video):
            sample = f"v{v}/q{q}"
            mine = [r for r in records if r.sample_id == sample]
            wrong = v % 2  # videos 1, 3, 5 answered wrong under the first-half knockout
            mine.append(
                record(sample, None, 0.4, 0.1, style="explicit:first_half", layers=[0, 1], new_argmax=LETTERS[wrong])
            )
            sweeps[sample] = SampleSweep(baselines[v * per_video + q], mine)
    probs = {
        f"v{v}/q{q}": {"probs": [[0.1 * v, 0.2, 0.3, 0.1], [0.5 + 0.05 * v, 0.1, 0.1, 0.1]]}
        for v in range(6)
        for q in range(per_video)
    }
    info = {"sweep": {}, "accuracy": {"knockouts": [["cross_frame", "explicit:first_half"]]}, "answer_probability": {}}
    results = {"sweep": sweeps, "accuracy": {}, "answer_probability": probs}
    return ModelResults("m", "fp", 4, "d", baselines, results, info, videos=videos)


def test_every_interval_of_a_summary_is_clustered_by_video():
    once, twice = summarise(results_of(1), seed=2), summarise(results_of(2), seed=2)
    a, b = once.get("sweep").curves["cross_frame"], twice.get("sweep").curves["cross_frame"]
    assert (b.lo, b.hi) == (pytest.approx(a.lo), pytest.approx(a.hi)) and b.resampling == "video"
    acc1, acc2 = once.get("accuracy"), twice.get("accuracy")
    assert acc2.drop_points == acc1.drop_points == -50.0 and acc2.resampling == "video"
    for name in ("base_ci", "knocked_ci", "drop_ci"):
        assert getattr(acc2, name) == pytest.approx(getattr(acc1, name)), name
    assert acc1.base_ci == [100.0, 100.0] and -100.0 <= acc1.drop_ci[0] < -50.0 < acc1.drop_ci[1] <= 0.0
    p1, p2 = once.get("answer_probability"), twice.get("answer_probability")
    assert p2.true_lo == pytest.approx(p1.true_lo) and p2.false_max_hi == pytest.approx(p1.false_max_hi)
    assert p1.true_lo[0] < p1.true_mean[0] < p1.true_hi[0]
    sample_level = summarise(results_of(2), seed=2, resampling="sample").get("sweep").curves["cross_frame"]
    assert sample_level.resampling == "sample" and sample_level.hi[0] - sample_level.lo[0] < b.hi[0] - b.lo[0]


def test_video_resampling_without_video_keys_is_refused():
    results = results_of(1)
    results.videos = {}
    with pytest.raises(ValueError, match=r"no video key.*--flow-ci-resampling sample"):
        summarise(results)
    assert summarise(results, resampling="sample").get("sweep").curves["cross_frame"].resampling == "sample"
    with pytest.raises(ValueError, match="unknown bootstrap resampling"):
        summarise(results, resampling="bootstrap")
    with pytest.raises(ValueError, match="unknown curve metric"):
        summarise(results, curve_metric="logit")


def test_margin_on_a_hand_computed_case():
    assert forced_choice_margin([0.5, 0.2, 0.2, 0.1], 0) == pytest.approx(math.log(2.5))
    assert forced_choice_margin([0.1, 0.6, 0.3], 2) == pytest.approx(math.log(0.3 / 0.6))
    baselines = [baseline("a", (0.5, 0.2, 0.2, 0.1), 0), baseline("b", (0.1, 0.6, 0.3), 1)]
    records = [
        record("a", 0, 0.5, 0.3, (0.3, 0.4, 0.1, 0.1)),  # margin ln(0.3/0.4) from ln(0.5/0.2): change ln(0.3)
        record("b", 0, 0.6, 0.3, (0.1, 0.3, 0.3)),  # margin ln(1) from ln(0.6/0.3): change -ln(2)
        record("a", 1, 0.5, 0.5, (0.5, 0.2, 0.2, 0.1)),  # unchanged: 0
        record("b", 1, 0.6, 0.9, (0.05, 0.9, 0.05)),  # ln(18) - ln(2) = ln(9)
    ]
    curve = knockout_curves(baselines, records, metric="margin")["cross_frame"]
    assert curve.metric == "margin" and curve.n == 2 and curve.excluded == 0
    assert curve.mean == pytest.approx([(math.log(0.3) - math.log(2)) / 2, math.log(9) / 2])
    # the relative change of the same records, for contrast: b's (0.3 - 0.6) / 0.6 = -50%
    relative = knockout_curves(baselines, records)["cross_frame"]
    assert relative.mean[0] == pytest.approx(((0.3 - 0.5) / 0.5 * 100 - 50) / 2)


def test_a_margin_whose_probability_underflowed_is_left_out_and_counted():
    baselines = [baseline("a", (0.5, 0.2, 0.2, 0.1)), baseline("b", (0.5, 0.2, 0.2, 0.1))]
    records = [record("a", 0, 0.5, 0.25, (0.25, 0.5, 0.1, 0.1)), record("b", 0, 0.5, 0.0, (0.0, 0.9, 0.05, 0.05))]
    curve = knockout_curves(baselines, records, metric="margin")["cross_frame"]
    assert (curve.n, curve.excluded) == (1, 1) and curve.mean == pytest.approx([math.log(0.5) - math.log(2.5)])
    with pytest.raises(ValueError, match="stores 0 option probabilities"):
        knockout_curves(baselines, [record("a", 0, 0.5, 0.25)], metric="margin")
    with pytest.raises(ValueError, match="unknown curve metric"):
        knockout_curves(baselines, records, metric="odds")


def test_margin_curves_are_shown_and_gated_but_claims_keep_relative_change():
    margin = summarise(results_of(1), curve_metric="margin").get("sweep")
    assert margin.metric == "margin" and margin.curves["cross_frame"].metric == "relative_change"
    assert margin.shown() is margin.margin and margin.margin["cross_frame"].metric == "margin"
    gate = KnockoutSweep.gate_numbers(margin, "t")
    assert set(gate) == {"margin_nats", "layer"} and set(gate["layer"]) == {"cross_frame/margin_argmin"}
    plain = summarise(results_of(1)).get("sweep")
    assert plain.margin == {} and set(KnockoutSweep.gate_numbers(plain, "t")) == {"change_pct", "layer"}
    assert Curves.from_dict(margin.to_dict()) == margin
    old_record = {"cross_frame": plain.curves["cross_frame"].to_dict()}  # a results.json from before the margin
    for key in ("metric", "resampling", "videos", "excluded"):
        del old_record["cross_frame"][key]
    again = Curves.from_dict(old_record)
    assert again.metric == "relative_change" and again.curves["cross_frame"].resampling == "sample"


def report_input(summary) -> ReportInput:
    per_task = {name: value for name, value in summary.analyses.items()}
    return ReportInput("m", "d", 4, {"t": per_task}, ["t"])


@pytest.mark.parametrize(("resampling", "words"), [("video", "videos resampled"), ("sample", "samples resampled")])
def test_the_report_says_how_every_interval_was_resampled(resampling, words):
    run = report_input(summarise(results_of(2), resampling=resampling))
    figures = KnockoutSweep.report([run]).figures
    assert figures and all(f"95% bootstrap CI, {words}" in f.caption for f in figures)
    assert f"95% bootstrap CI, {words}" in AccuracyAnalysis.report([run]).tables[0].intro
    (fig9,) = AnswerProbability.report([run]).figures
    assert f"95% bootstrap CI, {words}" in fig9.caption and fig9.panels[0].series[0].lo is not None
    if resampling == "video":
        assert figures[0].panels[0].note == "n=12, 6 videos"


def test_the_report_of_margin_curves_names_the_metric_and_its_unit():
    run = report_input(summarise(results_of(1), curve_metric="margin"))
    fig2 = KnockoutSweep.report([run]).figures[0]
    assert "log p(true) - max log p(false)" in fig2.caption and "nats" in fig2.caption
    assert fig2.options["ylabel"] == "Change in margin (nats)"


def test_a_record_without_intervals_is_drawn_without_them():
    old = ProbabilityCurves([0, 1], [10.0, 80.0], [5.0, 5.0], [20.0, 10.0], [0.0, 1.0], 3)
    (figure,) = AnswerProbability.report([ReportInput("m", "d", 2, {"t": {"answer_probability": old}}, ["t"])]).figures
    assert "bootstrap" not in figure.caption and figure.panels[0].series[0].lo is None


def test_the_options_choose_among_what_the_analyses_know():
    assert SPECS["ci_resampling"].default == "video" and SPECS["curve_metric"].default == "relative_change"
    for choice in RESAMPLING:
        assert resolve({"ci_resampling": choice}, {}, {}).ci_resampling == choice
    for choice in METRICS:
        assert resolve({}, {}, {"FLOWCHECK_CURVE_METRIC": choice}).curve_metric == choice
    with pytest.raises(OptionError, match="--flow-ci-resampling: expected one of video, sample"):
        resolve({"ci_resampling": "cluster"}, {}, {})
