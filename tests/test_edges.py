"""Conditions, windows, exact edge counting, effective pathways and the random control."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from flowcheck.edges import (
    Block,
    Condition,
    ConditionError,
    PathwaySpec,
    Route,
    RouteSpec,
    blocked_mask,
    condition_groups,
    count_allowed,
    count_blocked,
    default_window_width,
    effective_pathway_routes,
    full_edges,
    make_window,
    matched_random_counts,
    paper_conditions,
    paper_pathways,
    parse_layer_range,
    pathway_edges,
    random_blocked_mask,
    reference_layout,
    resolve_conditions,
    sweep_windows,
)
from flowcheck.layout import Span, synthetic_layout

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def small_layout(true_index: int = 1):
    return synthetic_layout(
        system=2,
        frames=3,
        tokens_per_frame=3,
        between=1,
        question_only=2,
        option_lengths=[2, 1, 2],
        true_index=true_index,
        post=2,
    )


def brute_blocked(n, rects) -> int:
    edges = set()
    for q, k in rects:
        for i in q.positions():
            for j in k.positions():
                if j <= i:
                    edges.add((i, j))
    return len(edges)


def test_eleven_paper_conditions_in_four_groups():
    conditions = paper_conditions()
    assert len(conditions) == 11
    assert condition_groups() == {
        "cross-frame": ["cross_frame"],
        "vql-to-ql": ["video->question", "video->last", "question->last", "last->last"],
        "question-and-options-to-last": ["question_only->last", "true_option->last", "false_options->last"],
        "vq-to-true-opt": ["video->question_only", "question_only->true_option", "video->true_option"],
    }
    assert conditions["video->question"].label == "Video -/-> Question"


def test_condition_rectangles_follow_the_authors_definitions():
    lay = small_layout()
    cross = paper_conditions()["cross_frame"].rectangles(lay)
    # frame f cannot read frames < f: frame 1 <- frame 0, frame 2 <- frames 0-1
    assert cross == [(lay.frames[1], Span(lay.video.start, lay.frames[1].start)), (lay.frames[2], Span(2, 8))]
    assert paper_conditions()["last->last"].rectangles(lay) == [(lay.last, lay.last)]
    false_opts = paper_conditions()["false_options->last"].rectangles(lay)
    assert false_opts == [(lay.last, lay.options[0]), (lay.last, lay.options[2])]
    assert paper_conditions()["video->question"].earliest_query(lay) == lay.question.start
    assert paper_conditions()["video->last"].earliest_query(lay) == lay.n - 1
    assert paper_conditions()["cross_frame"].earliest_query(lay) == lay.frames[1].start


def test_user_conditions_parse_and_errors_name_the_known_groups():
    cond = resolve_conditions(["video->post+system->last"])[0]
    assert cond.blocks == (Block("video", "post"), Block("system", "last"))
    assert [c.name for c in resolve_conditions(["vql-to-ql"])] == [
        "video->question",
        "video->last",
        "question->last",
        "last->last",
    ]
    with pytest.raises(ConditionError, match="unknown token group 'audio'"):
        resolve_conditions(["audio->last"])
    with pytest.raises(ConditionError, match="SOURCE->TARGET"):
        Condition.parse("video")


def test_span_arithmetic_counts_equal_brute_force_on_random_rectangles():
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 25)
        rects = []
        for _ in range(rng.randint(0, 5)):
            a, b = sorted(rng.randint(0, n) for _ in range(2))
            c, d = sorted(rng.randint(0, n) for _ in range(2))
            rects.append((Span(a, b), Span(c, d)))
        assert count_blocked(n, rects) == brute_blocked(n, rects)
        assert count_blocked(n, rects) == int(blocked_mask(n, rects).sum())
        assert count_allowed(n, rects) == full_edges(n) - brute_blocked(n, rects)


def test_every_paper_condition_counts_like_its_dense_mask():
    lay = small_layout()
    for condition in paper_conditions().values():
        rects = condition.rectangles(lay)
        assert count_blocked(lay.n, rects) == int(blocked_mask(lay.n, rects).sum()), condition.name


def test_center_windows_follow_the_authors_rule():
    assert make_window(32, 0).layers == (0, 1, 2, 3, 4)
    assert make_window(32, 10).layers == tuple(range(6, 15))
    assert make_window(32, 31).layers == (27, 28, 29, 30, 31)
    assert make_window(32, 10, width=4).layers == (8, 9, 10, 11)  # even: l-k/2 .. l+k/2-1
    assert make_window(8, 3, width=3, style="inverse").layers == (0, 1, 5, 6, 7)
    assert make_window(8, 3, style="top_down").layers == (3, 4, 5, 6, 7)
    assert make_window(8, 3, style="bottom_up").layers == (0, 1, 2, 3)
    assert len(sweep_windows(28)) == 28
    assert parse_layer_range("first_half", 8).layers == (0, 1, 2, 3)
    assert parse_layer_range("2:5", 8).layers == (2, 3, 4)
    with pytest.raises(ConditionError, match="outside the model's 8 layers"):
        make_window(8, 8)


def test_default_width_is_nine_for_deep_models_and_scales_for_shallow_ones():
    assert [default_window_width(n) for n in (28, 32, 40)] == [9, 9, 9]
    assert [default_window_width(n) for n in (4, 8, 12, 16, 24)] == [1, 3, 3, 5, 7]
    assert all(default_window_width(n) % 2 == 1 for n in range(1, 28))


def test_pathway_specs_match_the_paper_numbers_file():
    path = SHARED / "reference" / "paper-numbers.json"
    if not path.exists():
        pytest.skip(f"{path} not found (shared/ must sit beside the repository)")
    paper = json.loads(path.read_text())
    specs = paper_pathways()
    assert set(specs) == set(paper["table3_effective_pathways"]) - {"columns"}
    for name, spec in specs.items():
        ranges = paper["effective_pathway_layers_0_indexed_inclusive"][name]
        assert list(spec.cross_frame) == ranges["cross_frame"]
        assert list(spec.video_to_question) == ranges["video_to_question"]
        assert list(spec.question_to_last) == ranges["question_to_last"]
        assert spec.random_block_ratio == ranges["random_block_ratio"]
        assert spec.num_layers == paper["models"][name]["num_layers"]
        assert spec.paper == paper["table3_effective_pathways"][name]


@pytest.mark.parametrize(
    ("model", "kept"),
    [
        ("LLaVA-NeXT-7B-Video-FT", 0.42),
        ("LLaVA-NeXT-13B-Video-FT", 0.37),
        ("Mini-InternVL-4B-Video-FT", 0.40),
        ("VideoLLaMA3-7B", 0.58),
    ],
)
def test_effective_pathways_keep_the_papers_fraction_of_edges(model, kept):
    spec = paper_pathways()[model]
    lay = reference_layout(model)
    assert len(lay.video) == {"Mini-InternVL-4B-Video-FT": 2048}.get(model, len(lay.video))
    summary = pathway_edges(spec, lay)
    assert summary.full == full_edges(lay.n) * spec.num_layers
    assert abs(summary.kept_fraction - kept) <= 0.02
    assert abs(summary.full / 1e6 - spec.paper["full"][0]) / spec.paper["full"][0] < 0.05


def test_pathway_mask_matches_a_brute_force_construction_from_the_spec():
    lay = small_layout()
    spec = PathwaySpec(num_layers=6, cross_frame=(1, 2), video_to_question=(1, 3), question_to_last=(3, 4))
    video, question, last = set(lay.video.positions()), set(lay.question.positions()), lay.n - 1
    frame_of = {p: i for i, f in enumerate(lay.frames) for p in f.positions()}
    for layer in range(6):
        expected = set()
        for q in range(lay.n):
            for k in range(q + 1):
                cross = q in frame_of and k in frame_of and frame_of[k] < frame_of[q]
                if (
                    (cross and not 1 <= layer <= 2)
                    or (q in question and k in video and not 1 <= layer <= 3)
                    or (q == last and k in question and not 3 <= layer <= 4)
                    or (q == last and (k == last or k in video))
                    or (layer > 3 and q in video and k in video)
                    or (layer > 4 and q in question and k in question)
                ):
                    expected.add((q, k))
        mask = blocked_mask(lay.n, spec.layer_rectangles(lay, layer))
        assert {tuple(x) for x in mask.nonzero().tolist()} == expected, layer
        assert spec.blocked_per_layer(lay)[layer] == len(expected)


def test_random_control_removes_exact_counts_reproducibly_after_the_video():
    lay = small_layout()
    counts = matched_random_counts([10, 0, 31, 5], mode="uniform")
    assert counts == [12, 12, 11, 11] and sum(counts) == 46
    assert matched_random_counts([10, 0, 31, 5], mode="per_layer") == [10, 0, 31, 5]
    masks = [random_blocked_mask(lay, c, seed=3, key="s1", layer=i) for i, c in enumerate(counts)]
    for mask, count in zip(masks, counts, strict=True):
        assert int(mask.sum()) == count
        assert not mask.triu(1).any()
        rows, cols = mask.nonzero().T
        assert int(rows.min()) >= lay.video.start and int(cols.min()) >= lay.video.start
    again = random_blocked_mask(lay, counts[0], seed=3, key="s1", layer=0)
    assert torch.equal(again, masks[0])
    assert not torch.equal(random_blocked_mask(lay, counts[0], seed=4, key="s1", layer=0), masks[0])
    full = random_blocked_mask(lay, full_edges(lay.n - lay.video.start), seed=0)
    assert int(full.sum()) == full_edges(lay.n - lay.video.start)
    with pytest.raises(ConditionError, match="cannot remove"):
        random_blocked_mask(lay, full_edges(lay.n), seed=0)


# ----------------------------------------------------------------------------------------------
# Route specs (keep-only / block), brute force from the definitions


def _groups(lay):
    """Position sets of the groups the brute force knows, and each video position's frame."""
    return {
        "video": set(lay.video.positions()),
        "question": set(lay.question.positions()),
        "post": set(lay.post.positions()),
        "last": {lay.n - 1},
    }, {p: i for i, f in enumerate(lay.frames) for p in f.positions()}


def _in_route(route_text, q, k, groups, frame_of):
    if route_text == "cross_frame":
        return q in frame_of and k in frame_of and frame_of[k] < frame_of[q]
    source, target = route_text.split("->")
    return k in groups[source] and q in groups[target]


def brute_route_edges(lay, routes, layer, mode):
    """Removed (q, k) in one layer, by enumeration: routes as (text, first, last) with layers from 1 (None: none)."""
    groups, frame_of = _groups(lay)
    removed = set()
    for q in range(lay.n):
        for k in range(q + 1):
            for text, first, last in routes:
                inside = first is not None and first <= layer + 1 <= last
                if _in_route(text, q, k, groups, frame_of) and inside == (mode == "block"):
                    removed.add((q, k))
    return removed


@pytest.mark.parametrize("mode", ["keep", "block"])
@pytest.mark.parametrize(
    "routes",
    [
        [("video->question", 2, 4), ("question->last", 4, 5)],
        [("cross_frame", 1, 2), ("video->video", 1, 3), ("video->last", None, None), ("last->last", 6, 6)],
        [("video->post", 3, 3), ("question->post", 1, 6), ("post->last", None, None), ("cross_frame", 5, 6)],
    ],
)
def test_route_spec_equals_the_brute_force_edge_set(routes, mode):
    lay = small_layout()
    text = ", ".join(
        name if (a, b) == (1, 6) else f"{name}@none" if a is None else f"{name}@{a}-{b}" for name, a, b in routes
    )
    spec = RouteSpec.parse(text, 6, mode)
    for layer in range(6):
        expected = brute_route_edges(lay, routes, layer, mode)
        mask = blocked_mask(lay.n, spec.layer_rectangles(lay, layer))
        assert {tuple(x) for x in mask.nonzero().tolist()} == expected, (text, layer)
        assert spec.blocked_per_layer(lay)[layer] == len(expected)
    kept = spec.kept_edges(lay)
    assert kept.full - kept.kept == sum(len(brute_route_edges(lay, routes, la, mode)) for la in range(6))


def test_route_spec_layers_count_from_one_and_round_trip():
    spec = RouteSpec.parse("video->question@6-20, question->last@16, video->last@none, cross_frame", 32)
    assert spec.range_of("video->question") == (5, 19)
    assert spec.range_of("question->last") == (15, 15)
    assert spec.range_of("video->last") is None
    assert spec.range_of("cross_frame") == (0, 31)
    assert spec.text() == "video->question@6-20, question->last@16, video->last@none, cross_frame"
    assert RouteSpec.parse(spec.text(), 32) == spec


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("video->question@6-20, video->answer@1-3", "video->answer"),
        ("video->question@6-x", "6-x"),
        ("video->question@0-3", "0-3"),
        ("video->question@5-40", "5-40"),
        ("video->question@9-5", "9-5"),
        ("videoquestion@1-3", "videoquestion"),
        ("video->question@1-3,, question->last", "empty route"),
        ("video->last@1-2, video->last@4", "listed twice"),
    ],
)
def test_route_spec_parser_errors_name_the_offending_token(text, token):
    with pytest.raises(ConditionError, match=re.escape(token)):
        RouteSpec.parse(text, 32)


def test_paper_pathways_are_one_keep_only_spec_as_in_the_authors_table():
    """official-protocol.md 7.1, the 7B example: which blocks are active in which (0-indexed) layers."""
    spec = paper_pathways()["LLaVA-NeXT-7B-Video-FT"].routes()
    assert spec.mode == "keep"
    assert spec.text() == (
        "cross_frame@6-15, video->question@6-20, question->last@16-25, video->last@none, last->last@none, "
        "video->video@1-20, question->question@1-25"
    )

    def active(layer):
        return {str(r.block) for r in spec.routes if not r.covers(layer)}

    always = {"video->last", "last->last"}
    assert all(active(la) == always | {"cross_frame", "video->question", "question->last"} for la in range(5))
    assert all(active(la) == always | {"question->last"} for la in range(5, 15))
    assert all(active(la) == always | {"cross_frame"} for la in range(15, 20))
    assert all(active(la) == always | {"cross_frame", "video->question", "video->video"} for la in range(20, 25))
    late = {"cross_frame", "video->question", "video->video", "question->last", "question->question"}
    assert all(active(la) == always | late for la in range(25, 32))


def test_effective_pathway_routes_tie_video_and_question_self_attention_to_the_routes_kept():
    spec = effective_pathway_routes(8, {"video->question": (1, 3), "video->last": (2, 5), "question->last": None})
    assert spec.range_of("video->video") == (0, 5)
    assert spec.range_of("question->question") is None
    assert spec.range_of("cross_frame") is None and spec.range_of("last->last") is None
    with pytest.raises(ConditionError, match="video->answer"):
        effective_pathway_routes(8, {"video->answer": (1, 2)})
    assert Route(Block.parse("video->last"), None).text(8) == "video->last@none"
