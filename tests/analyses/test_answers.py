"""Answers under knockout: agreement with the letter-scoring sweep, the open-ended prompt, example selection."""

from __future__ import annotations

import pytest
from tiny_checkpoint import synthetic_sample

from flowcheck.analyses.answers import AnswersUnderKnockout, settings_with_defaults
from flowcheck.analyses.base import ReportInput, Setup, TaskView
from flowcheck.analyses.records import Baseline
from flowcheck.analyses.runner import AnalysisPlan, run_analyses
from flowcheck.cache import ResultCache
from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.synth import write_benchmark
from flowcheck.models.handle import ModelHandle


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    bench = tmp_path_factory.mktemp("bench")
    write_benchmark(bench, seed=1, per_task=3, tasks=["action_sequence"])
    return load_tvbench_layout(bench, dataset="synthetic")[0]


def test_generated_letters_agree_with_the_letter_scoring_sweep(bundled, samples, tmp_path):
    """The first generated token, with and without the knockout, is the argmax the sweep scored for the same
    knockout (cross-frame in layers 0..L/2-1), sample by sample."""
    plan = AnalysisPlan(
        analyses=("sweep", "accuracy", "answers_under_knockout"), settings={"sweep": {"conditions": ()}}
    )
    results = run_analyses(bundled, samples, plan, ResultCache(tmp_path), dataset="synthetic")
    assert len(results.results["answers_under_knockout"]) == len(samples)
    for b in results.baselines:
        answer = results.results["answers_under_knockout"][b.sample_id]
        (record,) = [r for r in results.results["sweep"][b.sample_id].records if r.condition == "cross_frame"]
        assert answer["baseline"]["tokens"][0] == b.argmax
        assert answer["knockout"]["tokens"][0] == record.new_argmax
        assert answer["baseline"]["correct"] == b.correct
        assert answer["differ"] == (answer["baseline"]["tokens"] != answer["knockout"]["tokens"])


def test_open_ended_prompt_has_no_options_and_no_answer_prefix(bundled):
    sample, frames = synthetic_sample("action_sequence")
    mc = bundled.encode(sample, frames)
    open_ = bundled.encode_open_ended(sample, frames)
    text = bundled.tokenizer.decode(open_.input_ids[open_.layout.question.start :])
    assert open_.layout.open_ended and open_.layout.true_index == -1 and open_.option_ids == ()
    assert "Options" not in text and "Best" not in text and sample.question.rstrip("?") in text.replace(" ?", "?")
    assert open_.layout.question == open_.layout.question_only
    assert open_.layout.video == mc.layout.video and open_.layout.n < mc.layout.n
    assert not bundled.open_ended  # the adapter is back in multiple-choice mode


def _result(correct_base: bool, correct_knock: bool, differ: bool, q: str) -> dict:
    def answer(correct: bool, choice: int) -> dict:
        return {"text": "x", "tokens": [choice], "stopped": "eos", "choice": choice, "correct": correct}

    return {
        "mode": "mc",
        "question": q,
        "options": ["up", "down"],
        "true_index": 0,
        "baseline": answer(correct_base, 0 if correct_base else 1),
        "knockout": answer(correct_knock, 0 if correct_knock else 1),
        "differ": differ,
    }


def test_summary_counts_and_picks_correct_to_wrong_first():
    rows = {
        "s1": _result(False, True, True, "q1"),  # wrong -> correct
        "s2": _result(True, True, False, "q2"),
        "s3": _result(True, False, True, "q3"),  # correct -> wrong: shown first
        "s4": _result(True, False, True, "q4"),
        "s5": _result(True, True, True, "q5"),  # the same option, later tokens differ
    }
    baselines = [
        Baseline(sid, "t", "d", 0, [1, 2], [0.5, 0.5], 1, 0.5, {}) for sid in rows
    ]  # only the ids and order matter here
    view = TaskView("m", "d", "t", 4, baselines, set(rows), {"answers_under_knockout": rows}, {})
    s = AnswersUnderKnockout.summarise(view)
    assert (s["n"], s["changed"], s["changed_share"], s["choice_changed"]) == (5, 4, 80.0, 3)
    assert (s["accuracy_base"], s["accuracy_knockout"]) == (80.0, 60.0)
    assert [e["sample_id"] for e in s["examples"]] == ["s3", "s4", "s1"]
    assert s["examples"][0]["baseline"] == "(A) up" and s["examples"][0]["knockout"] == "(B) down"
    run = ReportInput("m", "d", 4, {"t": {"answers_under_knockout": s}}, ["t"])
    (table,) = AnswersUnderKnockout.report([run]).tables
    assert len(table.rows) == 3 and table.rows[0][4].startswith("80% (4 of 5); option changed in 3")
    assert table.rows[1][2] == ""
    assert table.title.endswith("without and with cross_frame blocked in layers 1-2")
    # another knockout (--flow-setting): the title says which, and Table 2's accuracy drop is not shown beside it
    other = {**s, "condition": "video->last", "layers": [2, 3]}
    run = ReportInput("m", "d", 4, {"t": {"answers_under_knockout": other, "accuracy": _Accuracy()}}, ["t"])
    (table,) = AnswersUnderKnockout.report([run]).tables
    assert table.title.endswith("without and with video->last blocked in layers 3-4")
    assert table.rows[0][3] == "n/a (the accuracy drop is of cross_frame blocked in layers 1-2)"


class _Accuracy:
    base, drop_points = 50.0, -10.0


def test_settings_are_data_and_checked(bundled):
    assert settings_with_defaults("answers_under_knockout", {})["layers"] == "first_half"
    with pytest.raises(KeyError, match="unknown setting"):
        settings_with_defaults("answers_under_knockout", {"max_tokens": 3})
    setup = Setup(ModelHandle.from_adapter(bundled), "synthetic", 8, AnalysisPlan())
    setup.settings = {"mode": "free"}
    with pytest.raises(ValueError, match="unknown mode"):
        AnswersUnderKnockout(setup)
