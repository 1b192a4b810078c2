"""A new analysis is one module and its registration: a toy analysis, written only in this test, appears in the
summaries, results.json and REPORT.md of a `pytest suites/` run, with its per-sample results cached."""

from __future__ import annotations

import json

import pytest
from test_plugin import assets, project  # noqa: F401  (fixtures)

from flowcheck.analyses.base import Analysis, analyses, register, selected, unregister

pytest_plugins = ["pytester"]

TOY = '''
"""Toy analysis: the probability of the true option letter, per sample (cached) and as a mean per task."""
import torch

from flowcheck.analyses.base import Analysis, register
from flowcheck.engine import last_logits


@register
class TrueLetterProbability(Analysis):
    name = "true_letter_probability"
    title = "Mean true-letter probability per task (toy)"

    def parameters(self):
        return {"version": 1}

    def compute(self, decoder, encoded, sample):
        probs = torch.softmax(last_logits(decoder, encoded.inputs)[0].float(), dim=-1)
        return {"p": float(probs[encoded.true_id])}

    @classmethod
    def summarise(cls, view):
        values = [r["p"] for r in view.of(cls.name)]
        return {"mean_true_probability": sum(values) / len(values), "samples": len(values)}
'''


def test_a_registered_toy_analysis_reaches_summaries_results_and_report(project, pytester):  # noqa: F811
    (pytester.path / "toy_analysis.py").write_text(TOY)
    result = project("test_knockout_cross_frame.py", "-k", "early", "-p", "toy_analysis")
    result.stdout.fnmatch_lines(["*flowcheck: * claim checks*-> *REPORT.md"])
    (run,) = list((pytester.path / "reports").iterdir())
    data = json.loads((run / "results.json").read_text())
    # Expected, independently: the true letter's probability is the sweep's baseline option probability of the
    # true index, read here from the sweep's cache files.
    per_task: dict[str, list[float]] = {}
    for path in (pytester.path / "cache" / "sweep").glob("*/*.json"):
        base = json.loads(path.read_text())["baseline"]
        per_task.setdefault(base["task"], []).append(base["option_probs"][base["true_index"]])
    assert sorted(per_task) == ["moving_direction", "scene_transition"]
    for task, values in per_task.items():
        toy = data["summaries"][f"tiny-model|synthetic|{task}"]["analyses"]["true_letter_probability"]
        assert toy["samples"] == len(values) == 4
        assert toy["mean_true_probability"] == pytest.approx(sum(values) / len(values), abs=1e-6)
    assert len(list((pytester.path / "cache" / "true_letter_probability").glob("*/*.json"))) == 8
    report = (run / "REPORT.md").read_text()
    assert "## Mean true-letter probability per task (toy)" in report
    assert "mean_true_probability" in report and "moving_direction" in report


def test_the_registry_orders_the_paper_analyses_first_and_refuses_duplicates():
    class Late(Analysis):
        name = "zz_late_toy"

    register(Late)
    try:
        names = list(analyses())
        assert names[:5] == ["sweep", "accuracy", "answer_probability", "logit_lens", "pruning"]
        assert names[-1] == "zz_late_toy"

        class Other(Analysis):
            name = "zz_late_toy"

        with pytest.raises(ValueError, match="registered twice"):
            register(Other)
        with pytest.raises(KeyError, match="unknown analysis"):
            selected(["no_such_analysis"])
    finally:
        unregister("zz_late_toy")
    assert "zz_late_toy" not in analyses()


def test_a_same_named_class_from_another_module_cannot_replace_a_builtin_and_names_are_safe():
    from flowcheck.analyses.sweep import KnockoutSweep

    analyses()
    impostor = type("KnockoutSweep", (KnockoutSweep,), {"__module__": "someone_elses_plugin"})
    with pytest.raises(ValueError, match="registered twice"):
        register(impostor)
    assert analyses()["sweep"] is KnockoutSweep
    escaping = type("Escaping", (Analysis,), {"name": "../../escaped"})
    with pytest.raises(ValueError, match="lower-case letters"):
        register(escaping)


def test_fresh_and_cached_results_are_the_same_json_and_a_non_json_key_is_refused():
    import numpy as np

    from flowcheck.analyses.runner import as_json
    from flowcheck.cache import cache_key

    assert as_json("toy", {"pair": (1, 2), "map": {0: 0.25}}) == {"pair": [1, 2], "map": {"0": 0.25}}
    with pytest.raises(TypeError, match="'toy': compute\\(\\) must return a JSON object"):
        as_json("toy", None)
    with pytest.raises(TypeError, match="not JSON"):
        as_json("toy", {"x": np.float32(1.0)})
    # numpy abbreviates long arrays in str(): two different arrays used to give one key
    with pytest.raises(TypeError, match="not JSON"):
        cache_key({"weights": np.zeros(5000)})
    assert cache_key({"a": [1, 2]}) != cache_key({"a": [1, 3]})


def test_user_settings_are_checked_against_each_analysis_and_typed():
    from flowcheck.analyses.base import check_settings

    running = ["sweep", "answers_under_knockout", "open_ended_flow"]
    given = {"answers_under_knockout": {"stop_strings": ".", "max_new_tokens": 16.0, "layers": 4}}
    assert check_settings(given, running) == {
        "answers_under_knockout": {"stop_strings": ["."], "max_new_tokens": 16, "layers": "4"}
    }
    bad = [
        ({"bogus": {"x": 1}}, "unknown analysis 'bogus'"),
        ({"sweep": {"window": 3}}, "'sweep' takes no settings per run; these do: answers_under_knockout"),
        ({"answers_under_knockout": {"max_tokens": 3}}, "unknown setting 'max_tokens'; known: condition"),
        ({"answers_under_knockout": {"max_new_tokens": 0}}, "max_new_tokens: expected a positive integer, got 0"),
        ({"answers_under_knockout": {"max_new_tokens": True}}, "expected a positive integer, got True"),
        ({"open_ended_flow": {"anchor_orders": ["1"]}}, r"expected a value like the default \[1, 2, 3\]"),
    ]
    for settings, message in bad:
        with pytest.raises(ValueError, match=message):
            check_settings(settings, running)
    with pytest.raises(ValueError, match="add --flow-analyses open_ended_flow"):
        check_settings({"open_ended_flow": {"prompt": "mc"}}, ["sweep", "answers_under_knockout"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"answers_under_knockout": {"mode": "freeform"}}, "unknown mode 'freeform'"),
        ({"answers_under_knockout": {"condition": "bogus"}}, "answers_under_knockout: .*bogus"),
        ({"answers_under_knockout": {"layers": "0"}}, r"not a range inside 1\.\.8 \(layers count from 1"),
        ({"answers_under_knockout": {"layers": "5-2"}}, "not a range inside 1..8"),
        ({"answers_under_knockout": {"layers": "0:4"}}, "write FIRST-LAST"),
        ({"answers_under_knockout": {"stop_strings": [""]}}, "empty stop string"),
        ({"answers_under_knockout": {"max_new_tokens": 100000000}}, "above 2048"),
        ({"open_ended_flow": {"prompt": "bogus"}}, "unknown prompt 'bogus'"),
        ({"open_ended_flow": {"anchor_orders": [0, -1]}}, "anchor numbers from 1"),
        ({"open_ended_flow": {"conditions": {}}}, "no conditions to sweep"),
        ({"open_ended_flow": {"anchors": "bogus"}}, "no anchor list 'bogus'"),
        ({"open_ended_flow": {"stop_strings": '[".", "\\n"'}}, "not a valid JSON list"),
    ],
)
def test_settings_that_cannot_run_are_refused_before_the_run(settings, message):
    from flowcheck.analyses.base import check_settings

    with pytest.raises(ValueError, match=message):
        check_settings(settings, ["sweep", "answers_under_knockout", "open_ended_flow"], num_layers=8)


def test_answer_knockout_layers_count_from_1_like_everything_flowcheck_shows():
    from flowcheck.edges import parse_user_layers

    assert parse_user_layers("3-5", 8).layers == (2, 3, 4)
    assert parse_user_layers("8", 8).layers == (7,)
    assert parse_user_layers("first_half", 8).layers == (0, 1, 2, 3)


def test_flow_setting_reaches_the_analysis_plan(tmp_path):
    from flowcheck.claims import load_registry
    from flowcheck.options import resolve
    from flowcheck.session import FlowSession

    cli = {
        "models": ["tiny-video-ft"],
        "cache_dir": tmp_path / "cache",
        "setting": ["answers_under_knockout.mode=open_ended", "answers_under_knockout.max_new_tokens=32"],
    }
    plan = FlowSession(resolve(cli, {}, {}), load_registry()).plan("tiny-video-ft", "synthetic")
    assert plan.settings["answers_under_knockout"] == {"mode": "open_ended", "max_new_tokens": 32}
    assert "window" in plan.settings["sweep"]  # the session's own settings are kept
