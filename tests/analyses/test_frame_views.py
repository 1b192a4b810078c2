"""Attention maps (Fig. 6), the per-frame logit lens (Fig. 5) and alignment under cross-frame knockout: known answers
on hand-made inputs, eager attention's ``output_attentions`` (with the authors' dense knockout mask) as the
independent reference on the bundled trained model, and invariants."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from reference_authors import authors_mask
from tiny_checkpoint import synthetic_sample

import flowcheck
from flowcheck import bundled
from flowcheck.analyses.attention_maps import AttentionMaps, frame_tiles, middle_third
from flowcheck.analyses.base import Setup, TaskView
from flowcheck.analyses.frame_lens import frame_words
from flowcheck.analyses.lens_alignment import LensAlignment
from flowcheck.analyses.logit_lens import KeywordLists, keyword_hits, load_keyword_file, resolve_keywords, video_top1
from flowcheck.analyses.records import Baseline
from flowcheck.analyses.runner import AnalysisPlan
from flowcheck.edges import paper_conditions
from flowcheck.layout import synthetic_layout


@pytest.fixture(scope="module")
def adapter():
    return flowcheck.load(str(bundled.model_dir("tiny-video-ft")))


@pytest.fixture(scope="module")
def encoded(adapter):
    sample, frames = synthetic_sample("moving_direction")
    return sample, adapter.encode(sample, frames)


class _Handle:
    """What the analyses read of a ModelHandle here: the tokenizer and the frame count."""

    def __init__(self, adapter):
        self.tokenizer, self.num_frames = adapter.tokenizer, adapter.num_frames


def setup_for(adapter, **settings) -> Setup:
    plan = AnalysisPlan(settings={"logit_lens": {"keywords": "synthetic"}})
    return Setup(_Handle(adapter), "synthetic", adapter.num_layers, plan, settings)


def test_the_bundled_model_declares_its_pooled_patch_grid(encoded):
    _, enc = encoded
    assert enc.layout.frame_grid == (2, 2)  # 32 px frames, 8 px patches, pooled by 2: 2 x 2 tokens per frame
    assert enc.layout.video_cells()[:5] == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0)]


def eager_rows(adapter, enc, layers_knocked=(), pairs=()) -> tuple[torch.Tensor, ...]:
    """Head-averaged [n, n] per layer from eager attention, the authors' additive mask in `layers_knocked`."""
    model, decoder = adapter.model, adapter.decoder
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    n = enc.layout.n
    mask = authors_mask(n, decoder.config.num_attention_heads, list(pairs), torch.float32)

    def swap(_module, args, kwargs):
        kwargs["attention_mask"] = mask
        return args, kwargs

    hooks = [decoder.layers[i].self_attn.register_forward_pre_hook(swap, with_kwargs=True) for i in layers_knocked]
    try:
        with torch.no_grad():
            out = decoder.module(
                **enc.inputs.kwargs(), attention_mask=torch.ones(1, n, dtype=torch.long), output_attentions=True
            )
    finally:
        for hook in hooks:
            hook.remove()
        model.set_attn_implementation(previous)
    return tuple(a[0].mean(0) for a in out.attentions)


def test_attention_maps_match_eager_output_attentions_with_and_without_the_knockout(adapter, encoded):
    sample, enc = encoded
    layout, video = enc.layout, enc.layout.video
    analysis = AttentionMaps(setup_for(adapter))
    assert analysis.layers == middle_third(8) == [2, 3, 4, 5] and analysis.knockout_layers == [0, 1, 2, 3]
    result = analysis.compute(adapter.decoder, enc, sample)
    rects = paper_conditions()["cross_frame"].rectangles(layout)
    pairs = [(q.positions(), k.positions()) for q, k in rects]
    references = {"baseline": eager_rows(adapter, enc), "cross_frame": eager_rows(adapter, enc, range(4), pairs)}
    worst = 0.0
    for label, eager in references.items():
        for group in ("question_only", "last"):
            rows = layout.positions(group)
            for i, layer in enumerate(analysis.layers):
                expected = eager[layer][rows][:, video.start : video.end].mean(0).numpy()
                got = np.asarray(result["maps"][label][group][i])
                assert np.abs(got - expected).max() <= 1e-5  # stored to 6 significant digits
                worst = max(worst, float(np.abs(got - expected).max()))
    print(f"max |attention_maps - eager output_attentions| = {worst:.3g} (6 significant digits stored)")
    # the knockout changes the maps (cross-frame attention feeds the question's view of the video)
    diff = np.abs(np.asarray(result["maps"]["baseline"]["last"]) - np.asarray(result["maps"]["cross_frame"]["last"]))
    assert diff.max() > 1e-4
    tiles = frame_tiles(result["maps"]["baseline"]["last"][0], result["tokens_per_frame"], result["grid"])
    assert np.asarray(tiles).shape == (8, 2, 2)


def test_frame_tiles_strip_without_a_grid():
    assert frame_tiles([1, 2, 3, 4, 5], [3, 2], None) == [[[1.0, 2.0, 3.0]], [[4.0, 5.0]]]
    assert frame_tiles([1, 2, 3, 4], [4], [2, 2]) == [[[1.0, 2.0], [3.0, 4.0]]]


def test_frame_words_places_the_most_frequent_keyword_on_its_cell():
    layout = synthetic_layout(system=1, frames=2, tokens_per_frame=4, question_only=2, option_lengths=[1, 1], post=1)
    layout = replace(layout, frame_grid=(2, 2))
    keywords = KeywordLists(
        {"spatial": ["red"], "temporal": ["left", "grow"]},
        {"spatial": [10], "temporal": [20, 21]},
        [],
        {10: "red", 20: "left", 21: "grow"},
    )
    top1 = np.zeros((4, 8), dtype=int)
    top1[0:2, 0] = 10  # frame 0, cell (0, 0): red twice in bin 0
    top1[1, 3] = 21  # frame 0, cell (1, 1): grow once in bin 0
    top1[2, 5], top1[3, 5] = 21, 20  # frame 1, cell (0, 1): a tie in bin 1 -> grow, reached first
    top1[2:4, 6] = [20, 20]  # frame 1, cell (1, 0): left twice
    top1[3, 0] = 21  # frame 0 cell (0, 0) in bin 1: grow
    cells = frame_words(top1, layout, keywords, [(0, 2), (2, 4)])
    assert cells == [
        [0, 0, 0, 0, "red", "spatial"],
        [0, 0, 1, 1, "grow", "temporal"],
        [1, 0, 0, 0, "grow", "temporal"],
        [1, 1, 0, 1, "grow", "temporal"],
        [1, 1, 1, 0, "left", "temporal"],
    ]


def test_alignment_hits_are_the_logit_lens_hits_and_layer_0_is_untouched(adapter, encoded):
    sample, enc = encoded
    analysis = LensAlignment(setup_for(adapter))
    result = analysis.compute(adapter.decoder, enc, sample)["hits"]
    keywords = resolve_keywords(adapter.tokenizer, load_keyword_file("synthetic")["lists"])
    lens = keyword_hits(video_top1(adapter.decoder, enc), keywords)
    for name, per_keyword in lens.items():
        assert result["baseline"][name] == np.asarray(per_keyword).sum(axis=0).tolist()
        assert result["cross_frame"][name][0] == result["baseline"][name][0]  # the input of layer 0: no attention yet
    assert result["cross_frame"] != result["baseline"]


def _baseline(sample_id: str) -> Baseline:
    return Baseline(sample_id, "t", "d", 0, [1, 2], [0.9, 0.1], 1, 0.9, {})


def test_alignment_summary_by_hand():
    hits = {
        # temporal 10 -> 5 (drop 50 %), spatial 10 -> 9 (|change| 10 %): gap 40
        "a": {
            "baseline": {"temporal": [4, 6], "spatial": [5, 5]},
            "cross_frame": {"temporal": [2, 3], "spatial": [5, 4]},
        },
        # temporal 10 -> 8 (20 %), spatial 20 -> 22 (|+10 %|): gap 10
        "b": {
            "baseline": {"temporal": [5, 5], "spatial": [10, 10]},
            "cross_frame": {"temporal": [4, 4], "spatial": [11, 11]},
        },
        # no temporal hit to lose: in the totals, not in the per-sample comparison
        "c": {
            "baseline": {"temporal": [0, 0], "spatial": [2, 3]},
            "cross_frame": {"temporal": [0, 0], "spatial": [2, 3]},
        },
        # answered wrongly: not chosen, left out
        "d": {
            "baseline": {"temporal": [9, 9], "spatial": [9, 9]},
            "cross_frame": {"temporal": [0, 0], "spatial": [0, 0]},
        },
    }
    view = TaskView(
        "m",
        "d",
        "t",
        2,
        [_baseline(k) for k in hits],
        {"a", "b", "c"},
        {"lens_alignment": {k: {"hits": v} for k, v in hits.items()}},
        {"lens_alignment": {"knockout_layers": [0]}},
        n_boot=200,
    )
    s = LensAlignment.summarise(view)
    assert s["n"] == 3 and s["n_paired"] == 2
    assert s["hits"] == {"baseline": {"temporal": 20, "spatial": 35}, "cross_frame": {"temporal": 13, "spatial": 36}}
    assert s["change_pct"]["temporal"] == pytest.approx(-35.0) and s["change_pct"]["spatial"] == pytest.approx(100 / 35)
    assert s["temporal_drop_pct"] == pytest.approx(35.0) and s["spatial_abs_change_pct"] == pytest.approx(10.0)
    assert s["gap_pct"] == pytest.approx(25.0)
    assert 10.0 <= s["gap_low"] <= 25.0 <= s["gap_high"] <= 40.0  # a bootstrap of the two gaps 40 and 10


def test_tile_canvas_and_figures_are_drawn(tmp_path):
    from flowcheck.analyses.frame_lens import thumbnail
    from flowcheck.analyses.specs import FrameOverlay, TileGrid, WordCell
    from flowcheck.report.figures import _canvas, decode_png, plot_overlay, plot_tiles

    tiles = [[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.5], [0.25, 0.125]]]]  # one row, two 2 x 2 tiles, a zero (knocked out)
    canvas, h, w = _canvas(TileGrid("t", ["L1"], ["f1", "f2"], tiles))
    assert (h, w) == (2, 2) and canvas.shape == (2, 5)
    assert np.isnan(canvas[:, 2]).all() and canvas[1, 0] == 3.0 and canvas[0, 3] == 0.0
    path = plot_tiles([TileGrid("a", ["L1"], ["f1", "f2"], tiles)] * 2, tmp_path / "tiles.png")
    assert path.stat().st_size > 1000
    frame = np.zeros((20, 40, 3), dtype=np.uint8)
    frame[:, :20, 0] = 255
    png = thumbnail(frame, 10)
    assert decode_png(png).shape == (5, 10, 3)  # the longer side to 10 px, aspect kept
    overlay = FrameOverlay("o", [png, png], (2, 2), ["layer 1"], [[WordCell(1, 1, 0, "left", "temporal")]])
    assert plot_overlay(overlay, tmp_path / "overlay.png").stat().st_size > 1000
