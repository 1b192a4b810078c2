"""TokenLayout: groups, positions, validation messages, serialisation."""

from __future__ import annotations

import dataclasses

import pytest

from flowcheck.layout import LayoutError, Span, TokenLayout, synthetic_layout


def layout(**changes) -> TokenLayout:
    base = synthetic_layout(
        system=3, frames=2, tokens_per_frame=4, between=1, question_only=3, option_lengths=[2, 2, 2], post=2
    )
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    fields.update(changes)
    return TokenLayout(**fields)


def test_synthetic_layout_puts_spans_in_prompt_order():
    lay = layout()
    # system 0-3 | frames 3-7, 7-11 | between 11 | "Question:" 12-13 | q 14-17 | header 17-20 | options
    assert lay.system == Span(0, 3)
    assert lay.frames == (Span(3, 7), Span(7, 11))
    assert lay.video == Span(3, 11)
    assert lay.question_only == Span(14, 17)
    assert lay.options == (Span(20, 22), Span(23, 25), Span(26, 28))
    assert lay.question == Span(12, 28)
    assert lay.post == Span(28, 30)
    assert lay.last == Span(30, 31) and lay.n == 31


def test_groups_resolve_to_positions():
    lay = layout(true_index=2)
    assert list(lay.positions("true_option")) == [26, 27]
    assert list(lay.positions("false_options")) == [20, 21, 23, 24]
    assert list(lay.positions("frame:1")) == [7, 8, 9, 10]
    assert list(lay.positions("last")) == [30]
    assert list(lay.positions("options")) == [20, 21, 23, 24, 26, 27]
    with pytest.raises(LayoutError, match="unknown token group 'answer'"):
        lay.positions("answer")
    with pytest.raises(LayoutError, match="out of range: there are 2"):
        lay.positions("frame:2")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"question": Span(12, 40)}, "out of range for a sequence of 31"),
        ({"system": Span(0, 4)}, "spans video .* and system .* overlap"),
        ({"post": Span(27, 30)}, "spans question .* and post .* overlap"),
        ({"post": Span(28, 31)}, "overlap"),
        ({"question_only": Span(14, 14)}, "span question_only is empty"),
        ({"frames": (Span(3, 6), Span(7, 11))}, "do not partition the video span"),
        ({"options": (Span(20, 22), Span(21, 25))}, "option:0 .* and option:1 .* overlap"),
        ({"question_only": Span(10, 13)}, "not inside the question span"),
        ({"options": (Span(20, 22),), "true_index": 0}, "needs two"),
        ({"true_index": 3}, "true option index 3 is not among 3 options"),
    ],
)
def test_invalid_layouts_are_rejected_with_the_reason(changes, message):
    with pytest.raises(LayoutError, match=message):
        layout(**changes)


def test_video_after_question_is_rejected():
    with pytest.raises(LayoutError, match="video precedes the question"):
        TokenLayout(
            n=20,
            video=Span(10, 14),
            frames=(Span(10, 12), Span(12, 14)),
            question=Span(2, 9),
            question_only=Span(2, 4),
            options=(Span(5, 6), Span(7, 8)),
            true_index=0,
        )


def test_dict_round_trip():
    lay = layout(true_index=1)
    assert TokenLayout.from_dict(lay.to_dict()) == lay


def test_frame_grid_cells_and_validation():
    from dataclasses import replace

    from flowcheck.layout import LayoutError, synthetic_layout

    layout = synthetic_layout(system=2, frames=3, tokens_per_frame=6, question_only=2, option_lengths=[2, 2], post=1)
    strip = layout.video_cells()
    assert strip[:7] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 0, 4), (0, 0, 5), (1, 0, 0)]
    grid = replace(layout, frame_grid=(2, 3))
    assert grid.video_cells()[:7] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 1, 2), (1, 0, 0)]
    assert TokenLayout.from_dict(grid.to_dict()) == grid
    assert "frame_grid" not in layout.to_dict()  # layouts stored before grids existed read back the same
    with pytest.raises(LayoutError, match="frame grid 2 x 2 does not match"):
        replace(layout, frame_grid=(2, 2))
