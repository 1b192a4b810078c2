"""Paired tests of a new run against its baseline on the samples both ran (matched by sample fingerprint).

- Accuracy (base, and under each accuracy knockout): exact McNemar test of the paired correctness
  (`flowcheck.stats.mcnemar_exact`) and the difference in accuracy points with its bootstrap interval
  (`flowcheck.stats.paired_bootstrap_ci`, whole videos resampled by default).
- Curves: per window, the paired bootstrap interval of the mean difference of relative change (%) over the samples
  both runs answer correctly (the paper's curve selection). With ``curve_correction = "bonferroni"`` each window is
  tested at alpha / windows (the interval shown is that one); a window compared on fewer than ``min_curve_pairs``
  pairs is never called significant (a percentile bootstrap of a handful of values is far too narrow).

A row fails only when its difference exceeds the tolerance *and* is significant at alpha.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowcheck.analyses.specs import interval_text
from flowcheck.gating.config import GateConfig
from flowcheck.gating.table import FAIL, MOVED, PASS, SIGNIFICANT, GateRow
from flowcheck.stats import mcnemar_exact, paired_bootstrap_ci


@dataclass(frozen=True)
class Pairing:
    """Indices of the samples present in both runs (`baseline[i]` pairs with `new[i]`), the shared video of each
    pair (bootstrap clusters) and the ids of the samples present in one run only."""

    baseline: list[int]
    new: list[int]
    videos: list[str]
    baseline_only: list[str]
    new_only: list[str]


def pair(baseline: Mapping[str, Any], new: Mapping[str, Any]) -> Pairing:
    """Pair two per-sample task records (`flowcheck.gating.samples`) by fingerprint (order of the new run)."""
    where = {fp: i for i, fp in enumerate(baseline["fingerprint"])}
    mine = {fp: i for i, fp in enumerate(new["fingerprint"])}
    both = [(where[fp], i) for fp, i in mine.items() if fp in where]
    ids_b = baseline.get("id") or baseline["fingerprint"]
    ids_n = new.get("id") or new["fingerprint"]
    return Pairing(
        [b for b, _ in both],
        [n for _, n in both],
        [new["video"][n] for _, n in both],
        sorted(ids_b[i] for fp, i in where.items() if fp not in mine),
        sorted(ids_n[i] for fp, i in mine.items() if fp not in where),
    )


def verdict(exceeds: bool, significant: bool) -> str:
    """FAIL when both; otherwise which one holds (the table shows a move that is noise, or a real small change)."""
    if exceeds and significant:
        return FAIL
    return MOVED if exceeds else SIGNIFICANT if significant else PASS


def _clusters(config: GateConfig, videos: Sequence[str]) -> Sequence[str] | None:
    return list(videos) if config.resampling == "video" else None


def _ci(low: float, high: float, unit: str = "") -> str:
    return interval_text(low, high, "+.2f", unit)


def accuracy_rows(
    where: str, baseline: Mapping[str, Any], new: Mapping[str, Any], pairing: Pairing, config: GateConfig
) -> list[GateRow]:
    """One row per accuracy (``base_accuracy`` and each knockout both runs scored), in accuracy points (%)."""
    rows = []
    tol = config.tolerance("accuracy")
    for name in sorted(set(baseline["correct"]) & set(new["correct"])):
        b_marks, n_marks = baseline["correct"][name], new["correct"][name]
        keep = [
            (b, n, v)
            for b, n, v in zip(pairing.baseline, pairing.new, pairing.videos, strict=True)
            if b_marks[b] in "01" and n_marks[n] in "01"
        ]
        metric = f"{where}/{'base_accuracy' if name == 'base' else name}"
        if not keep:
            rows.append(GateRow(metric, "—", "—", "—", "—", "—", f"±{tol:g} pts", PASS, "no paired samples"))
            continue
        old = np.array([b_marks[b] == "1" for b, _, _ in keep], dtype=float)
        cur = np.array([n_marks[n] == "1" for _, n, _ in keep], dtype=float)
        test = mcnemar_exact(cur.astype(bool), old.astype(bool))
        diff, low, high = paired_bootstrap_ci(
            100 * cur,
            100 * old,
            clusters=_clusters(config, [v for _, _, v in keep]),
            seed=0,
            n_boot=config.n_boot,
            confidence=config.confidence,
        )
        exceeds = abs(diff) > tol + 1e-9
        rows.append(
            GateRow(
                metric,
                f"{100 * old.mean():.1f}%",
                f"{100 * cur.mean():.1f}%",
                f"{diff:+.2f} pts",
                _ci(low, high),
                f"{test.p_value:.3g}",
                f"±{tol:g} pts",
                verdict(exceeds, test.p_value < config.alpha),
                f"exact McNemar on {len(keep)} pairs ({test.only_a} right only now, {test.only_b} only before)",
            )
        )
    return rows


def selected_pairs(baseline: Mapping[str, Any], new: Mapping[str, Any], pairing: Pairing) -> list[tuple[int, int, str]]:
    """The pairs a curve compares: answered correctly in both runs (the paper's curve selection)."""
    b_ok, n_ok = baseline["correct"]["base"], new["correct"]["base"]
    return [
        (b, n, v)
        for b, n, v in zip(pairing.baseline, pairing.new, pairing.videos, strict=True)
        if b_ok[b] == "1" and n_ok[n] == "1"
    ]


Window = tuple[int, list[tuple[float, float, str]]]  # centre, (baseline value, new value, video) per pair


def paired_windows(
    baseline: Mapping[str, Any], new: Mapping[str, Any], condition: str, pairing: Pairing
) -> list[Window]:
    """Per window centre both runs swept, the paired values of `condition` of the pairs answered correctly in both."""
    b_curve, n_curve = baseline["curves"][condition], new["curves"][condition]
    chosen = [
        (b_curve["values"][b], n_curve["values"][n], v)
        for b, n, v in selected_pairs(baseline, new, pairing)
        if b_curve["values"][b] is not None and n_curve["values"][n] is not None
    ]
    windows = []
    for c in (c for c in n_curve["centers"] if c in b_curve["centers"]):
        bi, ni = b_curve["centers"].index(c), n_curve["centers"].index(c)
        triples = [(b[bi], n[ni], v) for b, n, v in chosen if b[bi] is not None and n[ni] is not None]
        if triples:
            windows.append((c, triples))
    return windows


def curve_rows(
    where: str, baseline: Mapping[str, Any], new: Mapping[str, Any], pairing: Pairing, config: GateConfig
) -> tuple[list[GateRow], dict[str, bool]]:
    """One row per condition both runs swept: the window whose paired mean difference fails (the largest such),
    else the largest difference; relative change in % at that window (layers from 1). Also, per condition, whether
    any window differs significantly (the profile check's significance)."""
    rows, any_significant = [], {}
    tol = config.tolerance("change_pct")
    for condition in sorted(set(baseline["curves"]) & set(new["curves"])):
        metric = f"{where}/{condition}/curve"
        windows = paired_windows(baseline, new, condition, pairing)
        if not windows:
            rows.append(GateRow(metric, "—", "—", "—", "—", "—", f"±{tol:g} %", PASS, "no pair correct in both runs"))
            continue
        level = config.alpha / len(windows) if config.curve_correction == "bonferroni" else config.alpha
        tested = []
        for c, triples in windows:
            old = np.array([t[0] for t in triples], dtype=float)
            cur = np.array([t[1] for t in triples], dtype=float)
            diff, low, high = paired_bootstrap_ci(
                cur,
                old,
                clusters=_clusters(config, [t[2] for t in triples]),
                seed=0,
                n_boot=config.n_boot,
                confidence=1 - level,
            )
            significant = (low > 0 or high < 0) and len(triples) >= config.min_curve_pairs
            exceeds = abs(diff) > tol + 1e-9
            tested.append((exceeds and significant, abs(diff), c, old, cur, diff, low, high, significant, exceeds))
        any_significant[condition] = any(t[8] for t in tested)
        _, _, c, old, cur, diff, low, high, significant, exceeds = max(tested, key=lambda t: (t[0], t[1]))
        n = old.size
        shown = (
            f"{metric}, all {len(windows)} windows equal"
            if not any(t[1] > 0 for t in tested)
            else f"{metric}, largest difference @ layer {c + 1}"
        )
        rows.append(
            GateRow(
                shown,
                f"{old.mean():+.2f}%",
                f"{cur.mean():+.2f}%",
                f"{diff:+.2f} pts",
                _ci(low, high) + (f" ({100 * (1 - level):.2f}%)" if level != config.alpha else ""),
                "—",
                f"±{tol:g} pts per window",
                verdict(exceeds, significant),
                f"paired bootstrap on {n} pairs correct in both runs, {len(windows)} windows"
                + (f", each at alpha/{len(windows)}" if level != config.alpha else "")
                + (
                    f"; fewer than {config.min_curve_pairs} pairs: never significant"
                    if n < config.min_curve_pairs
                    else ""
                ),
            )
        )
    return rows, any_significant
