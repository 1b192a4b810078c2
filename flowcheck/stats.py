"""Statistics shared by the analyses, the claims and the gate, all delegated to `scipy.stats`.

- `bootstrap_ci`: percentile bootstrap interval of a mean (the estimator of seaborn's ``errorbar=("ci", 95)``,
  which drew the paper's curves), optionally clustered: whole clusters (videos; TVBench and TOMATO ask several
  questions about one video) are resampled, and the statistic is the mean over the resampled clusters' samples.
- `paired_bootstrap_ci`: the same interval for the mean of paired differences ``a - b``.
- `mcnemar_exact`: exact McNemar test on paired binary outcomes (a two-sided binomial test on the discordant
  pairs; McNemar 1947, the exact form as in statsmodels' ``mcnemar(exact=True)``).
- `sign_test_greater`: one-sided exact sign test.

Sources: scipy.stats.bootstrap (``paired=True`` resamples the same indices in every array), scipy.stats.binomtest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

RESAMPLING = ("video", "sample")


def _cluster_sums(values: np.ndarray, clusters: Sequence[object] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: the sum of its values and its size, `[C]` each (every sample its own cluster when None)."""
    if clusters is None:
        return values, np.ones_like(values)
    if len(clusters) != len(values):
        raise ValueError(f"{len(values)} values but {len(clusters)} cluster labels; give one label per value")
    index: dict[object, int] = {}
    codes = np.fromiter((index.setdefault(c, len(index)) for c in clusters), dtype=np.int64, count=len(clusters))
    sums = np.bincount(codes, weights=values, minlength=len(index))
    sizes = np.bincount(codes, minlength=len(index)).astype(float)
    return sums, sizes


def _ratio_of_sums(sums: np.ndarray, sizes: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sum(sums, axis=axis) / np.sum(sizes, axis=axis)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    clusters: Sequence[object] | None = None,
    seed: int | np.random.Generator = 0,
    n_boot: int = 1000,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval `(low, high)` of the mean of `values` `[n]`.

    `clusters` `[n]` (e.g. the video of each question) resamples whole clusters: the statistic of a resample is
    the sum of its clusters' values over their total size, so a cluster counted twice weighs twice. Without
    clusters every value is its own cluster; two identical questions of one video give the interval of one.
    NaN for no values and for a single cluster (one value, or every question about one video: resampling it
    cannot estimate any spread, and a zero-width interval would read as certainty); `(v, v)` when every value of
    two or more clusters is v. Raises ValueError for non-finite values or labels of the wrong length.
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        return float("nan"), float("nan")
    if not np.all(np.isfinite(v)):
        raise ValueError("bootstrap_ci got NaN or infinite values; drop or fix them before computing an interval")
    sums, sizes = _cluster_sums(v, clusters)
    if sums.size == 1:
        return float("nan"), float("nan")
    if np.ptp(v) == 0:
        m = float(v.mean())
        return m, m
    result = sps.bootstrap(
        (sums, sizes),
        _ratio_of_sums,
        paired=True,
        vectorized=True,
        n_resamples=n_boot,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed) if isinstance(seed, int) else seed,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    clusters: Sequence[object] | None = None,
    seed: int | np.random.Generator = 0,
    n_boot: int = 1000,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of the paired differences `a - b` (`[n]` each, same samples in the same order) and its bootstrap
    interval: `(mean, low, high)`. Clusters as in `bootstrap_ci`. Raises ValueError when the lengths differ."""
    x, y = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired values must have the same length, got {x.size} and {y.size}")
    d = x - y
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = bootstrap_ci(d, clusters=clusters, seed=seed, n_boot=n_boot, confidence=confidence)
    return float(d.mean()), low, high


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of paired correctness: `only_a` samples right in a only, `only_b` in b only; `p_value`
    two-sided (1.0 without discordant pairs)."""

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    """Exact McNemar test on paired binary outcomes `[n]` each (same samples in the same order): a two-sided
    binomial test of the discordant pairs against 1/2 (scipy.stats.binomtest). Raises ValueError when the
    lengths differ."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"paired outcomes must have the same length, got {len(correct_a)} and {len(correct_b)}")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(correct_a, correct_b, strict=True))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(correct_a, correct_b, strict=True))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(sps.binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
    return McNemar(only_a, only_b, p)


def sign_test_greater(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(X >= wins) for X ~ Binomial(wins + losses, 1/2) (1.0 when both are 0)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(sps.binomtest(wins, n, 0.5, alternative="greater").pvalue)
