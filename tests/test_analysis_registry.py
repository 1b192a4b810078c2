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
