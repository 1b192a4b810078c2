"""Curve-profile tolerances: does a new curve keep the baseline's shape, whatever its values?

Both curves are the mean relative change (%) per window over the same samples: the pairs both runs answer correctly
(`flowcheck.gating.paired.paired_windows`), so that a different set of samples never passes for a different shape.
Checks (`ProfileTolerance`, per condition in ``[gating.profile]``): Spearman rank correlation
(`scipy.stats.spearmanr`) of the two curves, the shift of the argmin window (layers), and how many of the most
harmful windows (lowest mean) both curves share. As for every gate row, a profile outside its tolerances fails
only when the curves differ significantly in at least one window (the paired bootstrap of `curve_rows`); otherwise
its verdict is "moved, not significant".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from flowcheck.gating.config import GateConfig, ProfileTolerance
from flowcheck.gating.paired import Pairing, paired_windows, verdict
from flowcheck.gating.table import GateRow


@dataclass(frozen=True)
class Profile:
    """Two curves compared over `centers` (0-based window centres): `rho` (NaN when a curve is constant),
    argmin centres, the top harmful centres of each and the verdict's reasons (empty: passes)."""

    centers: list[int]
    rho: float
    argmin_baseline: int
    argmin_new: int
    top_baseline: list[int]
    top_new: list[int]
    flat: bool
    reasons: list[str]

    @property
    def overlap(self) -> int:
        return len(set(self.top_baseline) & set(self.top_new))


def compare_profiles(
    centers: Sequence[int], baseline: Sequence[float], new: Sequence[float], tolerance: ProfileTolerance
) -> Profile:
    """Compare two curves `[W]` (mean relative change in %, on the same window `centers`) by `tolerance`.

    A curve pair whose ranges (max - min) are both below ``min_range_pct`` is flat: no check applies (reasons
    empty). Raises ValueError when the lengths differ or fewer than two windows are given."""
    b, n = np.asarray(baseline, dtype=float), np.asarray(new, dtype=float)
    if not (len(centers) == b.size == n.size):
        raise ValueError(f"curves of {b.size} and {n.size} values on {len(centers)} windows; give one value per window")
    if b.size < 2:
        raise ValueError("a profile needs at least two windows")
    k = min(tolerance.top_windows, b.size)
    top_b = sorted(int(centers[i]) for i in np.argsort(b, kind="stable")[:k])
    top_n = sorted(int(centers[i]) for i in np.argsort(n, kind="stable")[:k])
    arg_b, arg_n = int(centers[int(np.argmin(b))]), int(centers[int(np.argmin(n))])
    flat = float(np.ptp(b)) < tolerance.min_range_pct and float(np.ptp(n)) < tolerance.min_range_pct
    rho = float("nan") if np.ptp(b) == 0 or np.ptp(n) == 0 else float(sps.spearmanr(b, n).statistic)
    reasons = []
    if not flat:
        if not rho >= tolerance.min_spearman:  # NaN (one curve constant, the other not) fails too
            reasons.append(f"Spearman {rho:.2f} < {tolerance.min_spearman:g}")
        if abs(arg_n - arg_b) > tolerance.argmin_layers:
            reasons.append(f"argmin moved {arg_n - arg_b:+d} layers (> ±{tolerance.argmin_layers})")
        shared = len(set(top_b) & set(top_n))
        if shared < tolerance.min_top_overlap:
            reasons.append(f"{shared} of the top {k} harmful windows shared (< {tolerance.min_top_overlap})")
    return Profile(list(centers), rho, arg_b, arg_n, top_b, top_n, flat, reasons)


def _layers(centers: Sequence[int]) -> str:
    return ",".join(str(c + 1) for c in centers)


def profile_rows(
    where: str,
    baseline: Mapping[str, Any],
    new: Mapping[str, Any],
    pairing: Pairing,
    config: GateConfig,
    significant: Mapping[str, bool],
) -> tuple[list[GateRow], int]:
    """One row per condition whose curves are not flat (layers from 1) and the number of flat ones skipped.
    `significant`: per condition, whether any window differs significantly (`curve_rows`)."""
    rows, flat = [], 0
    for condition in sorted(set(baseline["curves"]) & set(new["curves"])):
        windows = paired_windows(baseline, new, condition, pairing)
        if len(windows) < 2:
            continue
        common = [c for c, _ in windows]
        b = [float(np.mean([t[0] for t in triples])) for _, triples in windows]
        n = [float(np.mean([t[1] for t in triples])) for _, triples in windows]
        tol = config.profile_for(condition)
        p = compare_profiles(common, b, n, tol)
        if p.flat:
            flat += 1
            continue
        moved = bool(p.reasons)
        rows.append(
            GateRow(
                f"{where}/{condition}/profile",
                f"argmin {p.argmin_baseline + 1}; top {_layers(p.top_baseline)}",
                f"argmin {p.argmin_new + 1}; top {_layers(p.top_new)}",
                f"Spearman {p.rho:.2f}; argmin {p.argmin_new - p.argmin_baseline:+d}; "
                f"shared {p.overlap}/{len(p.top_new)}",
                "—",
                "—",
                f"Spearman ≥ {tol.min_spearman:g}; argmin ±{tol.argmin_layers}; ≥ {tol.min_top_overlap} of top "
                f"{tol.top_windows}",
                verdict(moved, moved and significant.get(condition, False)),
                f"curve profile on {len(windows[0][1])} pairs correct in both runs"
                + (": " + "; ".join(p.reasons) if p.reasons else "")
                + ("" if not moved or significant.get(condition) else "; no window differs significantly"),
            )
        )
    return rows, flat
