"""What an analysis contributes to the report, as data: tables, and figures as panels of series (no drawing here;
`flowcheck.report.figures` draws them with matplotlib). Layers in x values are counted from 1, as the paper plots."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NO_INTERVAL = "[no CI: a single video or sample]"


def interval_text(low: float, high: float, spec: str = "+.1f", unit: str = "") -> str:
    """A bootstrap interval as a table shows it, ``[low, high]`` formatted with `spec`, or `NO_INTERVAL` when the
    interval is undefined (NaN: a single cluster, `flowcheck.stats.bootstrap_ci`)."""
    if low != low or high != high:  # NaN
        return NO_INTERVAL
    return f"[{low:{spec}}, {high:{spec}}]{unit}"


# Colours of the authors' plots (official-protocol.md 12: seaborn Set1).
SET1 = {
    "red": "#E41A1C",
    "blue": "#377EB8",
    "green": "#4DAF4A",
    "purple": "#984EA3",
    "orange": "#FF7F00",
    "brown": "#A65628",
    "pink": "#F781BF",
    "gray": "#999999",
}
CONDITION_STYLE: dict[str, tuple[str, str]] = {
    "cross_frame": (SET1["green"], "-"),
    "video->question": (SET1["purple"], "-"),
    "video->last": (SET1["blue"], "-"),
    "question->last": (SET1["orange"], "-"),
    "last->last": (SET1["red"], "-"),
    "question_only->last": (SET1["red"], "-"),
    "true_option->last": (SET1["orange"], "-"),
    "false_options->last": (SET1["blue"], "-"),
    "video->question_only": (SET1["red"], "-"),
    "question_only->true_option": (SET1["red"], "--"),
    "video->true_option": (SET1["purple"], ":"),
}
TRUE_OPTION_COLOUR = "#FFB302"
LENS_COLOURS = {"spatial": "#9DACBB", "temporal": "#6E8DAB"}
IMAGE_MODEL_COLOUR = SET1["pink"]


@dataclass
class Series:
    """One line: mean per x with an optional CI band."""

    label: str
    x: Sequence[float]
    mean: Sequence[float]
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None
    colour: str | None = None
    linestyle: str = "-"


@dataclass
class Panel:
    """One subplot: a title and its series."""

    title: str
    series: list[Series] = field(default_factory=list)
    note: str = ""


def condition_series(name: str, label: str, x, mean, lo=None, hi=None, colour: str | None = None) -> Series:
    """A series styled like the authors' plot for that condition."""
    default_colour, style = CONDITION_STYLE.get(name, (None, "-"))
    return Series(label, x, mean, lo, hi, colour or default_colour, style)


@dataclass
class LensPanel:
    """Normalised hit frequency per layer bin of each keyword list (one bar group per bin)."""

    title: str
    bins: Sequence[str]
    frequencies: dict[str, Sequence[float]]
    mean_layers: dict[str, float] = field(default_factory=dict)


KEYWORD_LIST_COLOURS = {"spatial": "#1F77B4", "temporal": "#E4572E"}  # overlay words: spatial blue, temporal red


@dataclass
class TileGrid:
    """A grid of small heatmaps (the paper's Fig. 6): `tiles[r][c]` is one [h][w] map (a frame's token grid, or
    [1][tokens] for a 1-D strip) at row `row_labels[r]` (e.g. a layer) and column `col_labels[c]` (a frame)."""

    title: str
    row_labels: Sequence[str]
    col_labels: Sequence[str]
    tiles: Sequence[Sequence[Sequence[Sequence[float]]]]


@dataclass
class WordCell:
    """One word drawn on a frame: frame `frame`, token-grid cell (`row`, `col`) of a `rows` x `cols` grid, the
    keyword list it belongs to (its colour)."""

    frame: int
    row: int
    col: int
    word: str
    list_name: str


@dataclass
class FrameOverlay:
    """Words on a strip of frames (the paper's Fig. 5): `frames` are PNG images (base64) of the sampled frames;
    one strip per row label (a layer group) with its `cells`; `grid` (rows, cols) of every frame's tokens (1 x k
    for a 1-D strip)."""

    title: str
    frames: Sequence[str]
    grid: tuple[int, int]
    row_labels: Sequence[str]
    cells: Sequence[Sequence[WordCell]]
    colours: dict[str, str] = field(default_factory=lambda: dict(KEYWORD_LIST_COLOURS))


@dataclass
class Figure:
    """One figure: ``kind`` "lines" (`Panel`s: mean curves with CI bands, one panel per task), "bars"
    (`LensPanel`s), "tiles" (`TileGrid`s side by side on one log colour scale) or "overlay" (one `FrameOverlay`).
    `file` is the PNG's name in the run folder; `options` are passed to the drawing function (ylabel, num_layers,
    zero_line, ylim; tiles: colorbar_label)."""

    title: str
    file: str
    caption: str
    whose: str
    panels: list
    kind: str = "lines"
    suptitle: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Table:
    """A markdown table: a heading, an introduction, column headers and rows of cell values."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    intro: str = ""


@dataclass
class Contribution:
    """An analysis's part of the report: tables, figures, and a note per figure it could not draw (why)."""

    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @classmethod
    def scalar_table(
        cls, title: str, name: str, runs: Sequence[Any], to_dict: Callable[[Any], Mapping[str, Any]]
    ) -> Contribution:
        """One row per model x dataset x task with a column per scalar (number, string, bool) of the summary of
        analysis `name`; no table when no run has a summary of it."""
        rows, headers = [], []
        for run in runs:
            for task, per in run.summaries.items():
                summary = per.get(name)
                if summary is None:
                    continue
                values = {k: v for k, v in to_dict(summary).items() if isinstance(v, (int, float, str, bool))}
                headers += [k for k in values if k not in headers]
                rows.append((run.model, run.dataset, task, values))
        if not rows:
            return cls()
        table = Table(
            title,
            ["model", "dataset", "task", *headers],
            [[m, d, t, *(v.get(h, "") for h in headers)] for m, d, t, v in rows],
        )
        return cls(tables=[table])
