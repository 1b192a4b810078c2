"""Attention maps, baseline vs cross-frame knockout (the paper's Fig. 6).

For chosen query groups (default: the question-only tokens and the last token) the attention weights to every
video token, averaged over heads and over the group's query rows, in a range of layers (default: the middle
third), once unblocked and once with cross-frame attention blocked in the first half of the layers (the paper's
Table 2 knockout). The weights come from the queries and keys flowcheck's attention function already sees
(`flowcheck.engine.attention_weights`; no eager attention), for the chosen rows only. Tiles are each frame's token
grid (`TokenLayout.frame_grid`), or a 1-D strip for families whose frames are not a grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register
from flowcheck.analyses.examples import example_ids, rounded, safe_name, task_of
from flowcheck.analyses.specs import Contribution, Figure, Table, TileGrid
from flowcheck.edges import explicit_window, parse_layer_range, resolve_conditions
from flowcheck.engine.attention_weights import attention_rows
from flowcheck.engine.scoring import as_spec, condition_knockout
from flowcheck.layout import TokenLayout

DEFAULT_QUERIES = ("question_only", "last")
BASELINE = "baseline"


def middle_third(num_layers: int) -> list[int]:
    """Layers [L // 3, L - L // 3) (0-based): 8 layers -> 2..5, 32 -> 10..21."""
    third = num_layers // 3
    return list(range(third, num_layers - third)) or [num_layers // 2]


def frame_tiles(values: Sequence[float], layout_frames: Sequence[int], grid: Sequence[int] | None) -> list:
    """Per frame, its video tokens' values as an [h][w] tile (`grid` (h, w)) or a [1][tokens] strip."""
    tiles, start = [], 0
    for count in layout_frames:
        chunk = np.asarray(values[start : start + count], dtype=float)
        start += count
        tiles.append((chunk.reshape(grid) if grid else chunk[None]).tolist())
    return tiles


@register
class AttentionMaps(Analysis):
    """Head-averaged attention from query groups to the video tokens, baseline and cross-frame knockout (settings:
    ``queries``, token groups of `TokenLayout.spans`; ``layers``, a `parse_layer_range` text, default the middle
    third; ``knockout_layers``, default ``first_half``; ``examples``, figures per model and dataset, default 3)."""

    name = "attention_maps"
    title = "Attention maps, baseline vs cross-frame knockout (Fig. 6)"

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        settings, layers = setup.settings, setup.num_layers
        self.queries = tuple(settings.get("queries", DEFAULT_QUERIES))
        self.layers = (
            list(parse_layer_range(settings["layers"], layers).layers) if "layers" in settings else middle_third(layers)
        )
        self.knockout_layers = list(parse_layer_range(settings.get("knockout_layers", "first_half"), layers).layers)
        (self.condition,) = resolve_conditions(["cross_frame"])

    def parameters(self) -> dict[str, Any]:
        return {"queries": list(self.queries), "layers": self.layers, "knockout_layers": self.knockout_layers}

    def info(self) -> dict[str, Any]:
        return {**self.parameters(), "examples": int(self.setup.settings.get("examples", 3))}

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        layout: TokenLayout = encoded.layout
        groups = {g: layout.positions(g).tolist() for g in self.queries}
        empty = [g for g, rows in groups.items() if not rows]
        if empty:
            raise ValueError(f"sample {sample.id}: the query group(s) {empty} have no tokens in this layout")
        queries = [p for rows in groups.values() for p in rows]
        window = explicit_window(self.knockout_layers, decoder.num_layers)
        knockout = condition_knockout(self.condition, window, layout)
        plan = {layer: as_spec(spec) for layer, spec in knockout.plan.items()}
        video = layout.video
        maps: dict[str, dict[str, list]] = {}
        for label, blocked in ((BASELINE, None), (self.condition.name, plan)):
            weights = attention_rows(decoder, encoded.inputs, queries, self.layers, blocked)
            per_group, start = {}, 0
            for group, rows in groups.items():
                per_group[group] = [
                    rounded(weights[layer][start : start + len(rows), video.start : video.end].mean(0).tolist())
                    for layer in self.layers
                ]
                start += len(rows)
            maps[label] = per_group
        return {
            "grid": list(layout.frame_grid) if layout.frame_grid else None,
            "tokens_per_frame": list(layout.tokens_per_frame),
            "layers": self.layers,
            "knockout_layers": self.knockout_layers,
            "maps": maps,
        }

    @classmethod
    def summarise(cls, view: TaskView) -> dict[str, Any] | None:
        results = view.of(cls.name, chosen_only=True)
        if not results:
            return None
        share: dict[str, dict[str, float]] = {}
        for label in results[0]["maps"]:
            share[label] = {
                group: float(np.mean([np.sum(r["maps"][label][group], axis=-1).mean() for r in results]))
                for group in results[0]["maps"][label]
            }
        count = int(view.info.get(cls.name, {}).get("examples", 3))
        per = view.results[cls.name]
        examples = [{"sample_id": i, "task": task_of(view, i), **per[i]} for i in example_ids(view, cls.name, count)]
        return {"n": len(results), "video_share": share, "examples": examples}

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        out = Contribution()
        rows = []
        for run in runs:
            whose = f"{run.model} on {run.dataset}"
            if run.problems.get(cls.name):
                out.missing.append(f"Fig. 6 for {whose}: {run.problems[cls.name]}")
                continue
            for task in [*run.tasks(), "all"]:
                summary = run.get(task, cls.name)
                if not summary:
                    continue
                for label, groups in summary["video_share"].items():
                    rows.append(
                        [run.model, run.dataset, task, label, *(f"{100 * groups[g]:.1f}" for g in groups), summary["n"]]
                    )
            summary = run.get("all", cls.name)
            for example in (summary or {}).get("examples", []):
                out.figures.append(attention_figure(cls.title, run, example))
        if rows:
            first = next(run.get("all", cls.name) for run in runs if run.get("all", cls.name))
            groups = list(next(iter(first["video_share"].values())))
            out.tables.append(
                Table(
                    cls.title,
                    ["model", "dataset", "task", "attention", *(f"to video from {g} (%)" for g in groups), "n"],
                    rows,
                    "Share of the query tokens' attention (averaged over heads, query rows, the map layers and the "
                    "correctly answered samples) that lands on video tokens, unblocked and with cross-frame attention "
                    "blocked in the first half of the layers.",
                )
            )
        return out


def attention_figure(title: str, run: ReportInput, example: Mapping[str, Any]) -> Figure:
    """One example sample's maps: rows = query group x layer, columns = frames, baseline | knockout."""
    grid = example["grid"]
    panels = []
    for label, groups in example["maps"].items():
        row_labels, tiles = [], []
        for group, per_layer in groups.items():
            for layer, values in zip(example["layers"], per_layer, strict=True):
                row_labels.append(f"{group} L{layer + 1}")
                tiles.append(frame_tiles(values, example["tokens_per_frame"], grid))
        knocked = example["knockout_layers"]
        heading = "baseline" if label == BASELINE else f"{label} blocked in layers {knocked[0] + 1}-{knocked[-1] + 1}"
        panels.append(
            TileGrid(heading, row_labels, [f"f{i + 1}" for i in range(len(example["tokens_per_frame"]))], tiles)
        )
    shape = f"{grid[0]} x {grid[1]} token grid" if grid else "1-D strip (this family's frames are not a grid)"
    sample = example["sample_id"]
    return Figure(
        title,
        f"fig6-attention-{run.file_stem()}-{safe_name(sample)}.png",
        f"Sample `{sample}` ({example['task']}): attention from each query group to every video token, averaged over "
        f"heads and the group's tokens, per layer (rows, counted from 1) and frame (columns); each tile a frame's "
        f"{shape}; log colour scale shared by both panels.",
        f"{run.model} on {run.dataset}",
        panels,
        kind="tiles",
        suptitle=f"Fig. 6 — attention to video tokens, {run.model}, {sample}",
    )
