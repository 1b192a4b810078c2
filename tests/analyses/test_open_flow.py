"""Open-ended flow: anchors, the response span, and the anchor's relative change against independent forwards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_checkpoint import synthetic_sample

import flowcheck
from flowcheck.analyses.base import Setup, selected
from flowcheck.analyses.open_flow import OpenEndedFlow, anchor_list, locate_anchors
from flowcheck.analyses.runner import AnalysisPlan
from flowcheck.edges import Condition, make_window
from flowcheck.engine import knockout_plan, last_logits
from flowcheck.engine.generate import teacher_forced
from flowcheck.layout import LayoutError, Span, TokenLayout, synthetic_layout
from flowcheck.models.handle import ModelHandle

BUNDLED = str(Path(flowcheck.__file__).parent / "bundled" / "tiny-video-ft")


def test_locate_anchors_single_and_two_token_words():
    words = {"stand", "sitting", "move"}
    pieces = ["He", " st", "and", "s", " then", " sitting", " MOVE", "."]
    assert locate_anchors(pieces, words) == [(1, "stand"), (5, "sitting"), (6, "move")]
    assert locate_anchors(["a", "b"], words) == []
    assert "move" in anchor_list("verbs") and "left" not in anchor_list("verbs")


def test_with_response_spans_and_round_trip():
    layout = synthetic_layout(
        system=2, frames=2, tokens_per_frame=3, question_only=4, option_lengths=[2, 2], post=2, question_prefix=1
    )
    n = layout.n
    three = layout.with_response(3)
    assert three.n == n + 3 and three.response == Span(n, n + 2) and three.last == Span(n + 2, n + 3)
    assert three.post == Span(layout.post.start, n)  # the prompt's last position joins the post-prompt text
    assert layout.with_response(1).response is None and layout.with_response(0) is layout
    assert TokenLayout.from_dict(three.to_dict()) == three
    assert "response" not in layout.to_dict()  # layouts without a response serialise as before (cache entries)
    assert Condition.parse("video->response").rectangles(three) == [(three.response, three.video)]
    with pytest.raises(LayoutError):
        layout.with_response(-1)


def test_open_ended_flow_is_opt_in():
    assert "open_ended_flow" not in [c.name for c in selected(None)]
    assert [c.name for c in selected(["open_ended_flow"])] == ["open_ended_flow"]


def test_relative_change_matches_independent_forwards():
    """One sample on the bundled miniature: the flow's baseline probability and relative changes equal a plain
    teacher-forced forward with the condition's rectangles knocked out (score_plain's mechanism, no batching)."""
    adapter = flowcheck.load(BUNDLED)
    sample, frames = synthetic_sample("scene_transition")
    encoded = adapter.encode(sample, frames)
    plan = AnalysisPlan()
    setup = Setup(ModelHandle.from_adapter(adapter), "synthetic", adapter.num_layers, plan, {"anchor_orders": [1, 2]})
    flow = OpenEndedFlow(setup)
    assert flow.settings["prompt"] == "mc" and flow.anchor_source() == "list:synthetic"  # by_dataset (data)
    result = flow.compute(adapter.decoder, encoded, sample)
    assert result["orders"], f"no anchor in the miniature's answer {result['text']!r}"
    checked = 0
    for order, o in result["orders"].items():
        assert result["anchors"][int(order) - 1][0] == o["position"]
        if "changes" not in o:
            continue
        tokens = result["tokens"][: o["position"]]
        inputs = teacher_forced(adapter.decoder, encoded.inputs, tokens)
        layout = encoded.layout.with_response(o["position"])
        anchor = result["tokens"][o["position"]]
        p_base = torch.softmax(last_logits(adapter.decoder, inputs)[0], -1)[anchor].item()
        assert abs(p_base - o["p_base"]) <= 1e-6
        for name, values in o["changes"].items():
            rects = Condition.parse(name).rectangles(layout)
            for i, center in list(enumerate(result["centers"]))[::3]:  # a third of the windows keeps the test short
                window = make_window(adapter.num_layers, center)
                with knockout_plan(adapter.decoder, dict.fromkeys(window.layers, rects)):
                    p = torch.softmax(last_logits(adapter.decoder, inputs)[0], -1)[anchor].item()
                assert abs((p - p_base) / p_base * 100 - values[i]) <= 1e-3, (order, name, center)
                checked += 1
    assert checked >= 5
