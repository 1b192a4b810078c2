"""Knockout curves: the mean per window centre of a per-sample metric, with a seeded 95% bootstrap CI.

Two metrics (`METRICS`):

- ``relative_change`` (the paper's, the default): (p_knockout - p_base) / p_base x 100 of the letter the unblocked
  model predicted, in %;
- ``margin``: the change of the forced-choice margin log p(true) - max log p(false) over the option letters
  (knockout minus baseline, in nats; the margin of attention-knockout toolkits, robust when p_base is small). Full-
  vocabulary log probabilities, so the margin is the difference of the two logits.

The interval is `flowcheck.stats.bootstrap_ci` (the percentile bootstrap of seaborn's ``errorbar=("ci", 95)``, which
drew the paper's curves), resampling whole videos when given each sample's video (TVBench and TOMATO ask several
questions about one video), else every sample on its own.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flowcheck.analyses.records import Baseline, KnockoutRecord
from flowcheck.stats import bootstrap_ci

SELECTIONS = ("correct", "wrong", "all")
METRICS = ("relative_change", "margin")
METRIC_UNITS = {"relative_change": "%", "margin": "nats"}


@dataclass
class Curve:
    """One condition's curve: x = window centre (0-indexed layer), mean and CI per centre of the metric (`metric`:
    relative change in %, or the change in margin in nats), over `n` samples of `videos` videos (0: not recorded).
    `resampling`: what the bootstrap resampled ("video" or "sample"; records written before intervals were
    clustered resampled samples). `excluded`: samples left out because their margin is not finite (an option
    letter's stored probability underflowed to 0)."""

    condition: str
    centers: list[int]
    mean: list[float]
    lo: list[float]
    hi: list[float]
    n: int
    metric: str = "relative_change"
    resampling: str = "sample"
    videos: int = 0
    excluded: int = 0

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


def forced_choice_margin(option_probs: Sequence[float], true_index: int) -> float:
    """log p(true) - max over the false options of log p(false), in nats, from the option letters' probabilities
    `[options]` (full-vocabulary softmax). -inf / +inf when a stored probability is 0 (float underflow); NaN for
    fewer than two options. Raises ValueError when `true_index` is not an option."""
    if not 0 <= true_index < len(option_probs):
        raise ValueError(f"true option {true_index} is not one of the {len(option_probs)} stored option probabilities")
    if len(option_probs) < 2:
        return float("nan")
    false_max = max(p for i, p in enumerate(option_probs) if i != true_index)
    with np.errstate(divide="ignore"):
        return float(np.log(option_probs[true_index]) - np.log(false_max))


def margin_change(baseline: Baseline, record: KnockoutRecord) -> float:
    """The knockout's change of the forced-choice margin (`forced_choice_margin` under the knockout minus without
    it), in nats; not finite when a probability underflowed. Raises ValueError when the record stores no option
    probabilities (a malformed cache entry)."""
    if len(record.new_option_probs) != len(baseline.option_probs):
        raise ValueError(
            f"sample {record.sample_id}, {record.condition}: the knockout record stores "
            f"{len(record.new_option_probs)} option probabilities but the baseline {len(baseline.option_probs)}; "
            "the margin needs both (clear the sweep's cache entry to recompute it)"
        )
    new = forced_choice_margin(record.new_option_probs, baseline.true_index)
    old = forced_choice_margin(baseline.option_probs, baseline.true_index)
    with np.errstate(invalid="ignore"):
        return float(np.subtract(new, old))


def knockout_curves(
    baselines: Sequence[Baseline],
    records: Iterable[KnockoutRecord],
    *,
    metric: str = "relative_change",
    selection: str = "correct",
    clusters: Mapping[str, str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    style: str = "center",
) -> dict[str, Curve]:
    """Curves per condition over the selected samples (records of one window style), of `metric` (`METRICS`).

    `clusters`: sample id -> video key; given, the bootstrap resamples videos (every selected sample needs a key),
    else samples. A sample whose margin is not finite at some window is left out of that condition's margin curve
    and counted in `Curve.excluded`. Raises ValueError for an unknown metric or selection, or a sample without a
    video key."""
    if metric not in METRICS:
        raise ValueError(f"unknown curve metric {metric!r}; choose one of {', '.join(METRICS)}")
    chosen = select_samples(baselines, selection)
    by_id = {b.sample_id: b for b in baselines}
    if clusters is not None:
        missing = sorted(i for i in chosen if i not in clusters)
        if missing:
            raise ValueError(
                f"{len(missing)} samples have no video key (e.g. {missing[0]}); give every sample's video or "
                "resample samples"
            )
    values: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.sample_id in chosen and r.window_style == style and r.window_center is not None:
            value = r.relative_change if metric == "relative_change" else margin_change(by_id[r.sample_id], r)
            values[r.condition][r.window_center][r.sample_id] = value
    curves = {}
    for condition, per_center in values.items():
        samples = set().union(*(set(v) for v in per_center.values()))
        bad = {i for v in per_center.values() for i, x in v.items() if not math.isfinite(x)}
        kept = sorted(samples - bad)
        if not kept:
            continue
        rng = np.random.default_rng(seed)
        keep = set(kept)
        centers = sorted(c for c, v in per_center.items() if keep & set(v))
        means, los, his = [], [], []
        for c in centers:
            ids = [i for i in kept if i in per_center[c]]
            v = np.asarray([per_center[c][i] for i in ids], dtype=float)
            labels = None if clusters is None else [clusters[i] for i in ids]
            means.append(float(v.mean()))
            lo, hi = bootstrap_ci(v, clusters=labels, seed=rng, n_boot=n_boot)
            los.append(lo)
            his.append(hi)
        n_videos = len({clusters[i] for i in kept}) if clusters is not None else 0
        resampling = "sample" if clusters is None else "video"
        curves[condition] = Curve(
            condition, centers, means, los, his, len(kept), metric, resampling, n_videos, len(bad)
        )
    return curves


def relative_change_curves(
    baselines: Sequence[Baseline],
    records: Iterable[KnockoutRecord],
    *,
    selection: str = "correct",
    clusters: Mapping[str, str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    style: str = "center",
) -> dict[str, Curve]:
    """The paper's curves: `knockout_curves` of the relative change (%)."""
    return knockout_curves(
        baselines,
        records,
        metric="relative_change",
        selection=selection,
        clusters=clusters,
        seed=seed,
        n_boot=n_boot,
        style=style,
    )
