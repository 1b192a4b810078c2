"""Accuracy under a knockout in a fixed layer set (e.g. cross-frame in the first half: the paper's Table 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register, resampling_text
from flowcheck.analyses.records import Baseline, KnockoutRecord
from flowcheck.analyses.specs import Contribution, Table, interval_text
from flowcheck.edges import Condition, Window, parse_layer_range, resolve_conditions


@dataclass
class AccuracyUnderKnockout:
    """First-token accuracy over all samples, before and after the knockout.

    `knocked` counts every sample whose knocked-out argmax is its true letter; `knocked_authors`
    keeps baseline-wrong samples wrong, as the authors' script does (official-protocol.md 5.4).
    The paper's Table 2 does not say whether its drops are points or relative %; both are here.
    `base_ci`, `knocked_ci`, `drop_ci`: 95% bootstrap intervals `[low, high]` in points of the base and knocked
    accuracy and of the paired drop (knocked - base per sample), resampled as `resampling` says ("video" or
    "sample"; empty in records written before intervals were added).
    """

    condition: str
    layers: list[int]
    n: int
    base: float
    knocked: float
    knocked_authors: float
    correctness_change: dict[str, int] = field(default_factory=dict)  # sample id -> knocked - base (-1, 0, 1)
    base_ci: list[float] = field(default_factory=list)
    knocked_ci: list[float] = field(default_factory=list)
    drop_ci: list[float] = field(default_factory=list)
    resampling: str = ""

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
    change = {}
    for b in baselines:
        record = by_id[b.sample_id]
        right = record.new_argmax == b.option_ids[b.true_index]
        base_hits += b.correct
        knocked += right
        knocked_authors += right and b.correct
        change[b.sample_id] = int(right) - int(b.correct)
    return AccuracyUnderKnockout(
        condition, wanted, n, 100 * base_hits / n, 100 * knocked / n, 100 * knocked_authors / n, change
    )


def with_intervals(summary: AccuracyUnderKnockout, view: TaskView) -> AccuracyUnderKnockout:
    """`summary` with the bootstrap intervals of its base and knocked accuracy and of the paired drop, over the
    view's samples (`TaskView.interval`: videos or samples resampled, seeded)."""
    ids = [b.sample_id for b in view.baselines]
    base = [100.0 * b.correct for b in view.baselines]
    drop = [100.0 * summary.correctness_change[i] for i in ids]
    knocked = [b + d for b, d in zip(base, drop, strict=True)]
    summary.base_ci = list(view.interval(base, ids))
    summary.knocked_ci = list(view.interval(knocked, ids))
    summary.drop_ci = list(view.interval(drop, ids))
    summary.resampling = view.resampling
    return summary


# The paper's Table 2 (accuracy drop with cross-frame attention blocked in the first half), LLaVA-NeXT-7B-Video-FT.
PAPER_TABLE2 = {
    "LLaVA-NeXT-7B-Video-FT": {
        "action_antonym": -24.1,
        "action_sequence": -20.2,
        "scene_transition": -18.0,
        "moving_direction": -44.8,
        "object_count": -60.8,
    }
}


@register
class AccuracyAnalysis(Analysis):
    """First-token accuracy with a knockout in a fixed layer set (setting ``knockouts``: (condition, layers)
    pairs, layers as `parse_layer_range` reads them; default cross-frame in the first half, the paper's Table 2).
    Its knockouts are scored by the sweep's batched pass; the summary is the first pair's."""

    name = "accuracy"
    title = "Accuracy under knockout (Table 2)"
    summary_type = AccuracyUnderKnockout

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.sets = [tuple(pair) for pair in setup.settings.get("knockouts", (("cross_frame", "first_half"),))]
        self.pairs: list[tuple[Condition, Window]] = []
        for name, layer_set in self.sets:
            (condition,) = resolve_conditions([name])
            window = parse_layer_range(layer_set, setup.num_layers)
            self.pairs.append((condition, type(window)(window.layers, None, f"explicit:{layer_set}")))

    def knockouts(self) -> list[tuple[Condition, Window]]:
        return self.pairs

    def info(self) -> dict[str, Any]:
        return {"knockouts": [[c.name, w.style] for c, w in self.pairs]}

    @classmethod
    def summarise(cls, view: TaskView) -> AccuracyUnderKnockout | None:
        wanted = view.info.get(cls.name, {}).get("knockouts")
        if not wanted or not view.baselines:
            return None
        condition, style = wanted[0]
        records = [
            r
            for sweep in view.of("sweep")
            for r in sweep.records
            if r.condition == condition and r.window_style == style
        ]
        if len(records) != len(view.baselines):
            return None
        summary = accuracy_under_knockout(view.baselines, records, condition, records[0].layers)
        return with_intervals(summary, view)

    @classmethod
    def gate_numbers(cls, summary: AccuracyUnderKnockout, task: str) -> dict[str, dict[str, float]]:
        return {} if task == "all" else {"accuracy": {f"{summary.condition}_first_half": summary.knocked}}

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        tasks = sorted({t for run in runs for t in run.tasks() if run.get(t, cls.name) is not None})
        if not tasks:
            return Contribution()
        rows, resampled = [], set()
        for run in runs:
            row = [run.model, run.dataset]
            paper = PAPER_TABLE2.get(run.paper_model, {})
            for task in tasks:
                a = run.get(task, cls.name)
                if a is None:
                    row.append("")
                    continue
                if a.drop_ci:
                    resampled.add(a.resampling)
                if a.base <= 0:
                    row.append(f"n/a (0 of {a.n} correct)")
                else:
                    ci = f" {interval_text(*a.drop_ci)}" if a.drop_ci else ""
                    cell = f"{a.drop_points:+.1f}{ci} ({a.drop_relative:+.0f}%)"
                    row.append(cell + (f" {{paper {paper[task]:+.1f}}}" if task in paper else ""))
            rows.append(row)
        table = Table(
            "Table 2 — accuracy drop with cross-frame attention blocked in the first half of the layers (1 to L/2)",
            ["model", "dataset", *tasks],
            rows,
            "Drop in points of first-token accuracy over all samples"
            + "".join(f"; [square brackets]: the drop's {resampling_text(r)}" for r in sorted(resampled))
            + "; (round brackets): relative %; curly braces: the paper's values (it does not say whether they are "
            "points or relative %).",
        )
        return Contribution(tables=[table])
