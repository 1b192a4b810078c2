"""Per-frame logit lens (the paper's Fig. 5): which keyword each video token reads as, drawn on its frame.

For every layer group (default L/8 layers, the bins of the Fig. 4 logit lens) and video position, the keyword
its top-1 logit-lens token most often is within the group (ties: the keyword reached at the earlier layer), placed
on its (frame, row, column) cell (`TokenLayout.video_cells`: the frame's token grid, or a 1-D strip) over
thumbnails of the sampled frames. Same lens as `flowcheck.analyses.logit_lens` (input-embedding unembedding by
default, the authors' choice).

The thumbnails are the decoded frames the adapter received (`flowcheck.data.frames`, segment centres), before the
processor's own resize or crop.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register
from flowcheck.analyses.examples import example_ids, safe_name, task_of
from flowcheck.analyses.logit_lens import KeywordLists, layer_bins, lens_bin_size, setup_keywords, video_top1
from flowcheck.analyses.specs import Contribution, Figure, FrameOverlay, WordCell
from flowcheck.layout import TokenLayout


def thumbnail(frame: np.ndarray, size: int) -> str:
    """A uint8 [H, W, 3] frame as a base64 PNG whose longer side is at most `size` pixels (aspect kept)."""
    image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def frame_words(
    top1: np.ndarray, layout: TokenLayout, keywords: KeywordLists, bins: Sequence[tuple[int, int]]
) -> list[list]:
    """``[bin, frame, row, column, word, list]`` for every (layer bin, video position) whose top-1 token
    (`top1` [L, video positions]) is a keyword in some layer of the bin: the keyword it is most often (ties: the
    one reached first)."""
    list_of = keywords.list_of()
    cells = layout.video_cells()
    out = []
    for b, (start, end) in enumerate(bins):
        for v, (frame, row, col) in enumerate(cells):
            hits = [int(t) for t in top1[start:end, v] if int(t) in list_of]
            if not hits:
                continue
            best = max(set(hits), key=lambda t: (hits.count(t), -hits.index(t)))
            out.append([b, frame, row, col, keywords.words.get(best, str(best)), list_of[best]])
    return out


@register
class FrameLens(Analysis):
    """Keywords read from each video token per layer group, placed on the frames (settings: ``keywords``, default
    the logit lens's; ``unembedding``, ``norm`` as the logit lens; ``thumbnail``, the frames' longer side in pixels,
    default 96; ``examples``, figures per model and dataset, default 3)."""

    name = "frame_lens"
    title = "Per-frame logit lens (Fig. 5)"

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        lens = setup.plan.setting("logit_lens")
        self.keywords = setup_keywords(setup)
        self.unembedding = setup.settings.get("unembedding", lens.get("unembedding", "input"))
        self.norm = bool(setup.settings.get("norm", lens.get("norm", False)))
        self.size = int(setup.settings.get("thumbnail", 96))
        self.bins = layer_bins(setup.num_layers, int(setup.settings.get("bin_size", lens_bin_size(setup.num_layers))))
        # imported here: the report re-renders these analyses from results.json without the frame loader
        from flowcheck.data.frames import FrameCache

        self.frames = FrameCache(max_items=2)

    def parameters(self) -> dict[str, Any]:
        return {
            "keywords": self.keywords.token_ids,
            "unembedding": self.unembedding,
            "norm": self.norm,
            "thumbnail": self.size,
            "bins": [list(b) for b in self.bins],
        }

    def info(self) -> dict[str, Any]:
        return {"examples": int(self.setup.settings.get("examples", 3)), "bins": [list(b) for b in self.bins]}

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        top1 = video_top1(decoder, encoded, self.unembedding, self.norm)
        layout = encoded.layout
        from flowcheck.data.frames import FrameRequest

        video = self.frames.get(FrameRequest.of(sample, self.setup.model.num_frames))
        return {
            "grid": list(layout.frame_grid) if layout.frame_grid else None,
            "tokens_per_frame": list(layout.tokens_per_frame),
            "bins": [list(b) for b in self.bins],
            "cells": frame_words(top1, layout, self.keywords, self.bins),
            "thumbnails": [thumbnail(f, self.size) for f in video.frames],
        }

    @classmethod
    def summarise(cls, view: TaskView) -> dict[str, Any] | None:
        results = view.of(cls.name, chosen_only=True)
        if not results:
            return None
        words: dict[str, int] = {}
        for r in results:
            for *_, word, list_name in r["cells"]:
                words[f"{list_name}:{word}"] = words.get(f"{list_name}:{word}", 0) + 1
        count = int(view.info.get(cls.name, {}).get("examples", 3))
        per = view.results[cls.name]
        examples = [{"sample_id": i, "task": task_of(view, i), **per[i]} for i in example_ids(view, cls.name, count)]
        top = dict(sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:12])
        return {"n": len(results), "top_words": top, "examples": examples}

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        out = Contribution()
        for run in runs:
            whose = f"{run.model} on {run.dataset}"
            if run.problems.get(cls.name):
                out.missing.append(f"Fig. 5 for {whose}: {run.problems[cls.name]}")
                continue
            summary = run.get("all", cls.name)
            for example in (summary or {}).get("examples", []):
                out.figures.append(overlay_figure(cls.title, run, example))
        return out


def overlay_figure(title: str, run: ReportInput, example: Mapping[str, Any]) -> Figure:
    """One example sample: a strip of its frames per layer group with the keywords on their cells."""
    per_frame = example["tokens_per_frame"]
    grid = tuple(example["grid"]) if example["grid"] else (1, max(per_frame))
    bins = example["bins"]
    rows: list[list[WordCell]] = [[] for _ in bins]
    for b, frame, row, col, word, list_name in example["cells"]:
        rows[b].append(WordCell(frame, row, col, word, list_name))
    labels = [f"layers {a + 1}-{b}" if b - a > 1 else f"layer {a + 1}" for a, b in bins]
    sample = example["sample_id"]
    shape = f"{grid[0]} x {grid[1]} token grid" if example["grid"] else "1-D strip (frames are not a token grid)"
    return Figure(
        title,
        f"fig5-frame-lens-{run.file_stem()}-{safe_name(sample)}.png",
        f"Sample `{sample}` ({example['task']}): the keyword each video token reads as (logit lens, top-1, most "
        f"frequent within the layer group), on its cell of the frame's {shape}; spatial and temporal words in two "
        "colours; empty cells read as no keyword.",
        f"{run.model} on {run.dataset}",
        [FrameOverlay(f"{run.model}, {sample}", example["thumbnails"], grid, labels, rows)],
        kind="overlay",
        suptitle=f"Fig. 5 — keywords read from video tokens per frame, {run.model}, {sample}",
    )
