"""Open-ended samples through the runner: only the generation analyses run on them, with the open-ended prompt,
and they stay out of every multiple-choice number (baselines, accuracies, claims)."""

from __future__ import annotations

import json
import shutil

import pytest

from flowcheck.analyses.runner import OPEN_ENDED_UNUSED, AnalysisPlan, run_analyses
from flowcheck.analyses.summary import TaskSummary, summarise
from flowcheck.cache import ResultCache
from flowcheck.claims import Evidence, NotEvaluable, evaluate, load_registry
from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.frames import read_frames
from flowcheck.data.synth import write_benchmark
from flowcheck.edges import Condition
from flowcheck.engine.generate import generate_under_knockout

PLAN = AnalysisPlan(
    analyses=("sweep", "accuracy", "answers_under_knockout", "open_ended_flow"),
    settings={
        "sweep": {"conditions": ()},
        "open_ended_flow": {"anchors": "synthetic", "pos_tagger": "", "anchor_orders": [1]},
    },
)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """Two multiple-choice questions (action_sequence) and the same two videos asked open-ended (open_sequence)."""
    bench = tmp_path_factory.mktemp("bench")
    write_benchmark(bench, seed=1, per_task=2, tasks=["action_sequence"])
    entries = json.loads((bench / "json" / "action_sequence.json").read_text())[:2]
    (bench / "json" / "action_sequence.json").write_text(json.dumps(entries))
    (bench / "video" / "open_sequence").mkdir()
    for e in entries:
        shutil.copy(bench / "video" / "action_sequence" / e["video"], bench / "video" / "open_sequence" / e["video"])
    open_entries = [{"video": e["video"], "question": e["question"], "answer": e["answer"]} for e in entries]
    (bench / "json" / "open_sequence.json").write_text(json.dumps(open_entries))
    loaded = load_tvbench_layout(bench, dataset="mine")[0]
    assert [s.open_ended for s in loaded] == [False, False, True, True]
    return loaded


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return ResultCache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def results(bundled, samples, cache):
    return run_analyses(bundled, samples, PLAN, cache, dataset="mine")


def test_open_ended_samples_get_the_generation_analyses_only(results, samples):
    open_ids = [s.id for s in samples if s.open_ended]
    mc_ids = [s.id for s in samples if not s.open_ended]
    assert sorted(b.sample_id for b in results.baselines) == sorted(mc_ids)
    assert [o.sample_id for o in results.open_ended] == open_ids
    assert [o.reference for o in results.open_ended] == [s.reference for s in samples if s.open_ended]
    assert set(results.results["sweep"]) == set(mc_ids)
    assert set(results.results["answers_under_knockout"]) == set(mc_ids + open_ids)
    assert set(results.results["open_ended_flow"]) == set(mc_ids + open_ids)
    for i in open_ids:
        assert results.results["answers_under_knockout"][i]["mode"] == "open_ended"
        assert results.results["open_ended_flow"][i]["prompt"] == "open_ended"
    for i in mc_ids:
        assert results.results["answers_under_knockout"][i]["mode"] == "mc"  # the run's setting (generation.json)
    assert not results.skipped and results.tasks() == ["action_sequence", "open_sequence"]


def test_open_ended_answers_equal_generation_from_the_open_ended_prompt(results, samples, bundled):
    """Known answer: the stored answers are greedy generation from the adapter's open-ended encoding of the same
    frames, without and with the analysis's knockout (cross-frame, first half), computed here directly."""
    first = next(s for s in samples if s.open_ended)
    frames = read_frames(first.video, bundled.num_frames)
    encoded = bundled.encode_open_ended(first, frames)
    stored = results.results["answers_under_knockout"][first.id]
    options = {"max_new_tokens": 6, "stop_strings": ("\n",), "tokenizer": bundled.tokenizer}
    base = generate_under_knockout(bundled.decoder, encoded.inputs, None, **options)
    rects = Condition.parse("cross_frame").rectangles(encoded.layout)
    half = range(bundled.num_layers // 2)
    knocked = generate_under_knockout(bundled.decoder, encoded.inputs, dict.fromkeys(half, rects), **options)
    assert stored["baseline"]["tokens"] == base.token_ids
    assert stored["knockout"]["tokens"] == knocked.token_ids
    assert "choice" not in stored["baseline"] and stored["reference"] == first.reference


def test_summaries_keep_open_ended_samples_out_of_multiple_choice_numbers(results):
    open_task = summarise(results, "open_sequence")
    assert (open_task.n, open_task.n_correct, open_task.n_open_ended) == (0, 0, 2)
    assert set(open_task.analyses) <= {"answers_under_knockout", "open_ended_flow"}
    answers = open_task.get("answers_under_knockout")
    assert answers["n"] == 2 and answers["mode"] == "open_ended" and "accuracy_base" not in answers

    everything = summarise(results)
    assert (everything.n, everything.n_open_ended) == (2, 2)
    mixed = everything.get("answers_under_knockout")
    per = results.results["answers_under_knockout"]
    mc = [per[b.sample_id] for b in results.baselines]
    assert mixed["n"] == 4 and mixed["n_mc"] == 2 and mixed["mode"] == "mc, open_ended"
    assert mixed["accuracy_base"] == 100 * sum(r["baseline"]["correct"] for r in mc) / 2
    assert everything.get("accuracy").n == 2  # accuracies count the multiple-choice samples only
    assert TaskSummary.from_dict(open_task.to_dict(), "m", "d", "open_sequence").n_open_ended == 2


def test_a_cached_run_gives_the_same_open_ended_records(bundled, samples, results, cache):
    again = run_analyses(bundled, samples, PLAN, cache, dataset="mine", compute=False)
    assert again.cached == 4 and again.computed == 0 and not again.skipped
    assert again.open_ended == results.open_ended
    assert again.results["answers_under_knockout"] == results.results["answers_under_knockout"]


def test_open_ended_samples_without_a_generation_analysis_are_skipped_with_the_reason(bundled, samples, tmp_path):
    plan = AnalysisPlan(analyses=("sweep",), settings={"sweep": {"conditions": ()}})
    results = run_analyses(bundled, samples, plan, ResultCache(tmp_path), dataset="mine")
    assert [s.reason for s in results.skipped] == [OPEN_ENDED_UNUSED] * 2
    assert len(results.baselines) == 2 and not results.open_ended


def test_claims_on_an_open_ended_task_are_not_evaluable_and_say_why(results):
    registry = load_registry()
    summary = summarise(results, "open_sequence")
    with pytest.raises(NotEvaluable, match="2 questions are open-ended"):
        evaluate(registry, "cross_frame_early", Evidence(summary, registry.thresholds("cross_frame_early", "m")))
