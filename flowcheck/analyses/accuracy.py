"""Accuracy under a knockout in a fixed layer set (e.g. cross-frame in the first half: the paper's Table 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flowcheck.analyses.records import Baseline, KnockoutRecord


@dataclass
class AccuracyUnderKnockout:
    """First-token accuracy over all samples, before and after the knockout.

    `knocked` counts every sample whose knocked-out argmax is its true letter; `knocked_authors`
    keeps baseline-wrong samples wrong, as the authors' script does (official-protocol.md 5.4).
    The paper's Table 2 does not say whether its drops are points or relative %; both are here.
    """

    condition: str
    layers: list[int]
    n: int
    base: float
    knocked: float
    knocked_authors: float

    @property
    def drop_points(self) -> float:
        """knocked - base, in accuracy points (negative = worse)."""
        return self.knocked - self.base

    @property
    def drop_relative(self) -> float:
        """(knocked - base) / base x 100."""
        return (self.knocked - self.base) / self.base * 100 if self.base else float("nan")

    def to_dict(self) -> dict:
        return {**self.__dict__, "drop_points": self.drop_points, "drop_relative": self.drop_relative}


def accuracy_under_knockout(
    baselines: Sequence[Baseline], records: Sequence[KnockoutRecord], condition: str, layers: Sequence[int]
) -> AccuracyUnderKnockout:
    """Accuracy (in %) of the samples whose records match `condition` in exactly `layers`."""
    wanted = sorted(layers)
    by_id = {r.sample_id: r for r in records if r.condition == condition and sorted(r.layers) == wanted}
    missing = [b.sample_id for b in baselines if b.sample_id not in by_id]
    if missing:
        raise ValueError(
            f"{len(missing)} samples have no {condition} record in layers {wanted} (e.g. {missing[0]}); "
            "accuracy under knockout needs every sample"
        )
    n = len(baselines)
    if n == 0:
        raise ValueError("no samples")
    base_hits = knocked = knocked_authors = 0
    for b in baselines:
        record = by_id[b.sample_id]
        right = record.new_argmax == b.option_ids[b.true_index]
        base_hits += b.correct
        knocked += right
        knocked_authors += right and b.correct
    return AccuracyUnderKnockout(
        condition, wanted, n, 100 * base_hits / n, 100 * knocked / n, 100 * knocked_authors / n
    )
