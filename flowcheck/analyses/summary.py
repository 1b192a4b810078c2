"""From per-sample results to what the claims and the report read: one `TaskSummary` per model x task."""

from __future__ import annotations

import numpy as np

from flowcheck.analyses.accuracy import accuracy_under_knockout
from flowcheck.analyses.answer_probability import probability_curves
from flowcheck.analyses.curves import relative_change_curves, select_samples
from flowcheck.analyses.logit_lens import summarise_hits
from flowcheck.analyses.pruning import summarise_pruning
from flowcheck.analyses.runner import ModelResults
from flowcheck.claims import TaskSummary

FIRST_HALF = "explicit:first_half"


def lens_bin_size(num_layers: int) -> int:
    """Eight bins over the depth, as the paper's 5-layer bins over 40 layers."""
    return max(1, round(num_layers / 8))


def summarise(
    results: ModelResults, task: str | None = None, *, selection: str = "correct", seed: int = 0, n_boot: int = 1000
) -> TaskSummary:
    """Aggregate one task's results (all tasks when `task` is None)."""
    subset = results.for_task(task) if task else results
    baselines = subset.baselines
    summary = TaskSummary(
        model=results.model,
        dataset=results.dataset,
        task=task or "all",
        num_layers=results.num_layers,
        n=len(baselines),
        n_correct=sum(b.correct for b in baselines),
        lens_problem=results.lens_problem,
    )
    if not baselines:
        return summary
    summary.curves = relative_change_curves(baselines, subset.records, selection=selection, seed=seed, n_boot=n_boot)
    first_half = [r for r in subset.records if r.condition == "cross_frame" and r.window_style == FIRST_HALF]
    if len(first_half) == len(baselines):
        summary.accuracy = accuracy_under_knockout(baselines, first_half, "cross_frame", first_half[0].layers)
        knocked = {r.sample_id: r.new_argmax for r in first_half}
        summary.correctness_change = {
            b.sample_id: int(knocked[b.sample_id] == b.option_ids[b.true_index]) - int(b.correct) for b in baselines
        }
    chosen = select_samples(baselines, selection)
    probs = [
        (subset.answer_probs[b.sample_id], b.true_index)
        for b in baselines
        if b.sample_id in chosen and b.sample_id in subset.answer_probs
    ]
    if probs:
        summary.answer = probability_curves(probs)
    hits = [
        subset.lens_hits[b.sample_id] for b in baselines if b.sample_id in chosen and b.sample_id in subset.lens_hits
    ]
    if hits:
        total = {
            name: np.sum([np.asarray(h[name]).reshape(-1, results.num_layers) for h in hits], axis=0).tolist()
            for name in hits[0]
        }
        summary.lens = summarise_hits(total, lens_bin_size(results.num_layers), results.num_layers, samples=len(hits))
    if subset.pruning:
        summary.pruning = summarise_pruning(subset.pruning)
    return summary
