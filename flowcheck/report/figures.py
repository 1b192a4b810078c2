"""Draw the analyses' figures (`flowcheck.analyses.specs.Figure`) in the paper's style: mean curves with 95% CI
bands, one panel per task; logit-lens bars; attention-map tile grids (Fig. 6); keyword overlays on frames (Fig. 5)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from flowcheck.analyses.specs import LENS_COLOURS, SET1, Figure, FrameOverlay, LensPanel, Panel, TileGrid

LOG_RANGE = 1e-4  # a log colour scale spans at most this ratio below its maximum (weights under it are clipped)


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, 3)
    return math.ceil(count / cols), cols


def plot_curves(
    panels: Sequence[Panel],
    path: Path,
    *,
    ylabel: str = "% change in probability",
    xlabel: str = "Layer",
    num_layers: int | None = None,
    zero_line: bool = True,
    ylim: tuple[float, float] | None = None,
    suptitle: str = "",
) -> Path:
    """Mean curves with 95% CI bands, one panel per task, saved as a PNG."""
    rows, cols = _grid(len(panels))
    fig = MplFigure(figsize=(4.6 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for s in panel.series:
            x = np.asarray(s.x, dtype=float)
            ax.plot(
                x, np.asarray(s.mean, dtype=float), color=s.colour, linestyle=s.linestyle, linewidth=2.2, label=s.label
            )
            if s.lo is not None and s.hi is not None:
                ax.fill_between(
                    x, np.asarray(s.lo, float), np.asarray(s.hi, float), color=s.colour, alpha=0.18, linewidth=0
                )
        if zero_line:
            ax.axhline(0, color="#888888", linewidth=1, zorder=0)
        if num_layers:
            ax.set_xlim(1, num_layers)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers, counted from 1
        if ylim:
            ax.set_ylim(*ylim)
        ax.set_title(panel.title, fontsize=11)
        ax.set_xlabel(xlabel + " (from 1)" if xlabel == "Layer" else xlabel)
        ax.grid(alpha=0.25)
        if panel.note:
            ax.text(0.02, 0.03, panel.note, transform=ax.transAxes, fontsize=8, color="#555555")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    handles, labels = [], []
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if handles:
        fig.legend(
            handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, bbox_to_anchor=(0.5, -0.01)
        )
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 0.97 if suptitle else 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_logit_lens(panels: Sequence[LensPanel], path: Path, suptitle: str = "") -> Path:
    """Bar charts of keyword-list hit frequency per layer bin (the paper's Fig. 4 style)."""
    rows, cols = _grid(len(panels))
    fig = MplFigure(figsize=(4.8 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        lists = list(panel.frequencies)
        width = 0.8 / max(len(lists), 1)
        x = np.arange(len(panel.bins))
        for i, name in enumerate(lists):
            colour = LENS_COLOURS.get(name, list(SET1.values())[i % len(SET1)])
            label = name + (f" (mean layer {panel.mean_layers[name]:.1f})" if name in panel.mean_layers else "")
            ax.bar(x + (i - (len(lists) - 1) / 2) * width, panel.frequencies[name], width, color=colour, label=label)
        ax.set_xticks(x, panel.bins, rotation=45, fontsize=8)
        ax.set_xlabel("Layers")
        ax.set_ylabel("Normalised frequency")
        ax.set_title(panel.title, fontsize=11)
        ax.legend(fontsize=8, frameon=False)
        ax.grid(axis="y", alpha=0.25)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _canvas(grid: TileGrid, pad: int = 1) -> tuple[np.ndarray, int, int]:
    """The tiles of `grid` laid out in one [rows * (h + pad), cols * (w + pad)] array, NaN between tiles."""
    h = max(len(t) for row in grid.tiles for t in row)
    w = max(len(t[0]) for row in grid.tiles for t in row)
    rows, cols = len(grid.tiles), len(grid.tiles[0])
    canvas = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan)
    for r, row in enumerate(grid.tiles):
        for c, tile in enumerate(row):
            a = np.asarray(tile, dtype=float)
            canvas[r * (h + pad) : r * (h + pad) + a.shape[0], c * (w + pad) : c * (w + pad) + a.shape[1]] = a
    return canvas, h, w


def plot_tiles(grids: Sequence[TileGrid], path: Path, *, colorbar_label: str = "", suptitle: str = "") -> Path:
    """Heatmap tile grids side by side (rows x columns of h x w tiles each) on one shared log colour scale
    (matplotlib LogNorm from the largest value down to `LOG_RANGE` of it; zeros, e.g. knocked-out edges, are
    drawn in the lowest colour); white lines separate the tiles."""
    canvases = [_canvas(g) for g in grids]
    values = np.concatenate([c[np.isfinite(c)].ravel() for c, _, _ in canvases])
    vmax = float(values.max()) if values.size and values.max() > 0 else 1.0
    positive = values[values > 0]
    vmin = max(float(positive.min()) if positive.size else vmax * LOG_RANGE, vmax * LOG_RANGE)
    norm = LogNorm(vmin=vmin, vmax=vmax, clip=True)
    cmap = colormaps["viridis"].with_extremes(bad="white")
    first = canvases[0][0]
    width = min(max(3.0, 0.45 * first.shape[1] * (2 if first.shape[0] < 4 * first.shape[1] else 1)), 14.0)
    height = min(max(2.5, 0.45 * first.shape[0] + 1.2), 16.0)
    fig = MplFigure(figsize=(width * len(grids) / max(len(grids) / 2, 1) + 1.2, height))
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    image = None
    for ax, grid, (canvas, h, w) in zip(axes, grids, canvases, strict=True):
        shown = np.where(canvas > 0, canvas, np.where(np.isnan(canvas), np.nan, vmin))
        image = ax.imshow(shown, norm=norm, cmap=cmap, interpolation="nearest", aspect="auto")
        ax.set_xticks([c * (w + 1) + (w - 1) / 2 for c in range(len(grid.col_labels))], grid.col_labels, fontsize=7)
        ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(len(grid.row_labels))], grid.row_labels, fontsize=7)
        ax.tick_params(length=0)
        ax.set_title(grid.title, fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label=colorbar_label or "attention weight (log scale)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def decode_png(data: str) -> np.ndarray:
    """A base64 PNG (as `flowcheck.analyses.frame_lens.thumbnail` writes) as a uint8 [H, W, 3] array."""
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return np.asarray(image.convert("RGB"))


def plot_overlay(overlay: FrameOverlay, path: Path, *, suptitle: str = "") -> Path:
    """One strip of frames per row label with each word at the centre of its token-grid cell (frame image
    stretched over the grid), in its keyword list's colour; a legend names the lists."""
    frames = [decode_png(f) for f in overlay.frames]
    rows, cols = overlay.grid
    n_rows, n_frames = len(overlay.row_labels), len(frames)
    fig = MplFigure(figsize=(1.6 * n_frames + 1.0, 1.6 * n_rows + 0.9))
    axes = fig.subplots(n_rows, n_frames, squeeze=False)
    size = max(4.0, min(9.0, 40.0 / max(cols, rows, 1)))
    for r, label in enumerate(overlay.row_labels):
        for f, ax in enumerate(axes[r]):
            ax.imshow(frames[f], extent=(0, cols, rows, 0), interpolation="nearest", alpha=0.75)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {f + 1}", fontsize=8)
            if f == 0:
                ax.set_ylabel(label, fontsize=8)
        for cell in overlay.cells[r]:
            colour = overlay.colours.get(cell.list_name, "black")
            axes[r][cell.frame].text(
                cell.col + 0.5,
                cell.row + 0.5,
                cell.word,
                ha="center",
                va="center",
                fontsize=size,
                color=colour,
                fontweight="bold",
                bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "linewidth": 0},
            )
    handles = [axes[0][0].plot([], [], "s", color=colour, label=name)[0] for name, colour in overlay.colours.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    fig.suptitle(suptitle or overlay.title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def draw(figure: Figure, folder: Path) -> Path:
    """Draw `figure` into ``folder / figure.file``; raises ValueError on an unknown figure kind."""
    if figure.kind == "lines":
        return plot_curves(figure.panels, folder / figure.file, suptitle=figure.suptitle, **figure.options)
    if figure.kind == "bars":
        return plot_logit_lens(figure.panels, folder / figure.file, suptitle=figure.suptitle)
    if figure.kind == "tiles":
        return plot_tiles(figure.panels, folder / figure.file, suptitle=figure.suptitle, **figure.options)
    if figure.kind == "overlay":
        return plot_overlay(figure.panels[0], folder / figure.file, suptitle=figure.suptitle)
    raise ValueError(f"unknown figure kind {figure.kind!r} (lines, bars, tiles or overlay)")
