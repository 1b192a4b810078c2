"""Mean relative change per window centre with a seeded 95% bootstrap CI (the paper's curves)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from flowcheck.analyses.records import Baseline, KnockoutRecord

SELECTIONS = ("correct", "wrong", "all")


@dataclass
class Curve:
    """One condition's curve: x = window centre (0-indexed layer), mean and CI of the relative change (%)."""

    condition: str
    centers: list[int]
    mean: list[float]
    lo: list[float]
    hi: list[float]
    n: int

    def at(self, center: int) -> float:
        return self.mean[self.centers.index(center)]

    @property
    def argmin(self) -> int:
        """The window centre of the curve's minimum."""
        return self.centers[int(np.argmin(self.mean))]

    @property
    def minimum(self) -> float:
        return float(np.min(self.mean))

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def select_samples(baselines: Iterable[Baseline], selection: str = "correct") -> set[str]:
    """Sample ids by the authors' sample modes: correctly answered (default), wrong, or all."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown sample selection {selection!r}; choose one of {', '.join(SELECTIONS)}")
    keep = {"correct": lambda b: b.correct, "wrong": lambda b: not b.correct, "all": lambda b: True}[selection]
    return {b.sample_id for b in baselines if keep(b)}


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = 1000) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean (seaborn's estimator)."""
    if len(values) == 0:
        return float("nan"), float("nan")
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def relative_change_curves(
    baselines: Sequence[Baseline],
    records: Iterable[KnockoutRecord],
    *,
    selection: str = "correct",
    seed: int = 0,
    n_boot: int = 1000,
    style: str = "center",
) -> dict[str, Curve]:
    """Curves per condition over the selected samples (records of one window style)."""
    chosen = select_samples(baselines, selection)
    by_condition: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    samples: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.sample_id in chosen and r.window_style == style and r.window_center is not None:
            by_condition[r.condition][r.window_center].append(r.relative_change)
            samples[r.condition].add(r.sample_id)
    curves = {}
    for condition, per_center in by_condition.items():
        rng = np.random.default_rng(seed)
        centers = sorted(per_center)
        means, los, his = [], [], []
        for c in centers:
            values = np.asarray(per_center[c], dtype=float)
            means.append(float(values.mean()))
            lo, hi = bootstrap_ci(values, rng, n_boot)
            los.append(lo)
            his.append(hi)
        curves[condition] = Curve(condition, centers, means, los, his, len(samples[condition]))
    return curves
