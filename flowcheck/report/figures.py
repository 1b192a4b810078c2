"""Draw the analyses' figures (`flowcheck.analyses.specs.Figure`) in the paper's style: mean curves with 95% CI
bands, one panel per task; logit-lens bars."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import MaxNLocator

from flowcheck.analyses.specs import LENS_COLOURS, SET1, Figure, LensPanel, Panel


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


def draw(figure: Figure, folder: Path) -> Path:
    """Draw `figure` into ``folder / figure.file``; raises ValueError on an unknown figure kind."""
    if figure.kind == "lines":
        return plot_curves(figure.panels, folder / figure.file, suptitle=figure.suptitle, **figure.options)
    if figure.kind == "bars":
        return plot_logit_lens(figure.panels, folder / figure.file, suptitle=figure.suptitle)
    raise ValueError(f"unknown figure kind {figure.kind!r} (lines or bars)")
