"""From per-sample results to what the claims and the report read: one `TaskSummary` per model x task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowcheck.analyses.base import AnalysisUnavailable, TaskView, analyses
from flowcheck.analyses.curves import select_samples

if TYPE_CHECKING:  # the report reads summaries without the runner
    from flowcheck.analyses.runner import ModelResults


@dataclass
class TaskSummary:
    """Every analysis's summary of one model on one task (``task="all"``: the whole dataset).

    `n` and `n_correct` count the multiple-choice samples (those with a baseline); `n_open_ended` the open-ended
    ones (no options: only generation analyses read them). `analyses[name]`: the summary of registered analysis
    `name` (its `summary_type`, or a JSON object), absent
    when it has nothing to summarise; `problems[name]`: why analysis `name` could not run for the model."""

    model: str
    dataset: str
    task: str
    num_layers: int
    n: int
    n_correct: int
    analyses: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    n_open_ended: int = 0

    def get(self, name: str) -> Any:
        """Analysis `name`'s summary, or None."""
        return self.analyses.get(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON object (layers 0-based, as the analyses count them)."""
        known = analyses()
        return {
            "n": self.n,
            "n_correct": self.n_correct,
            "n_open_ended": self.n_open_ended,
            "num_layers": self.num_layers,
            "analyses": {
                name: known[name].summary_to_dict(value) if name in known else value
                for name, value in self.analyses.items()
            },
            "problems": dict(self.problems),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], model: str, dataset: str, task: str) -> TaskSummary:
        """Inverse of `to_dict`; an analysis not registered here stays a JSON object."""
        known = analyses()
        return cls(
            model,
            dataset,
            task,
            data["num_layers"],
            data["n"],
            data["n_correct"],
            {
                name: known[name].summary_from_dict(value) if name in known else value
                for name, value in data.get("analyses", {}).items()
            },
            dict(data.get("problems", {})),
            data.get("n_open_ended", 0),
        )


def summarise(
    results: ModelResults,
    task: str | None = None,
    *,
    selection: str = "correct",
    seed: int = 0,
    n_boot: int = 1000,
    resampling: str = "video",
    curve_metric: str = "relative_change",
) -> TaskSummary:
    """Aggregate one task's results (all tasks when `task` is None) through every analysis that ran.

    `resampling`: "video" (default: bootstrap intervals resample whole videos, from `results.videos`) or "sample";
    `curve_metric`: "relative_change" (the paper's) or "margin" (see `TaskView`). Raises ValueError for an unknown
    resampling, or "video" when a sample has no video key."""
    subset = results.for_task(task) if task else results
    baselines = subset.baselines
    summary = TaskSummary(
        model=results.model,
        dataset=results.dataset,
        task=task or "all",
        num_layers=results.num_layers,
        n=len(baselines),
        n_correct=sum(b.correct for b in baselines),
        problems=dict(results.problems),
        n_open_ended=len(subset.open_ended),
    )
    if not baselines and not subset.open_ended:
        return summary
    view = TaskView(
        results.model,
        results.dataset,
        summary.task,
        results.num_layers,
        baselines,
        select_samples(baselines, selection),
        subset.results,
        subset.info,
        selection,
        seed,
        n_boot,
        videos=subset.videos,
        resampling=resampling,
        curve_metric=curve_metric,
        open_ended=subset.open_ended,
    )
    known = analyses()
    for name in subset.results:
        if not baselines and not known[name].handles_open_ended:
            continue  # only open-ended samples: the multiple-choice analyses have nothing to summarise
        try:
            value = known[name].summarise(view)
        except AnalysisUnavailable as err:
            summary.problems[name] = str(err)
            continue
        if value is not None:
            summary.analyses[name] = value
    return summary
