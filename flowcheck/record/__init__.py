"""The run record: everything a finished run measured, as data (`results.json`), from which the report is drawn.

A `RunRecord` holds the run's metadata, the claim outcomes, per model x dataset x task the `TaskSummary` of every
registered analysis, the skipped samples and the facts the report needs about models and datasets. It is built by
the session (`flowcheck.session.FlowSession.record`) and read back by `flowcheck report results.json` on a
machine with no model and no cache.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowcheck.analyses.base import ReportInput, analyses
from flowcheck.analyses.specs import Contribution
from flowcheck.analyses.summary import TaskSummary
from flowcheck.claims import builtin
from flowcheck.record.schema import SCHEMA_VERSION, ClaimEntry, SchemaError, validate

__all__ = ["SCHEMA_VERSION", "RunRecord", "SchemaError"]


@dataclass
class RunRecord:
    """A finished run. `summaries[(model, dataset)][task]` (task ``"all"``: the whole dataset); `claims`: one entry
    per claim test (`flowcheck.record.schema.ClaimEntry` fields); `image_models` / `paper_models`: the registry's
    paired image model and paper model per model; `video_tokens`: video tokens per sample per model;
    `temporal_tasks`: per dataset, the tasks the paper's temporal claims and figures use; `findings`: the paper's
    findings (C1 ..) and their one-line statements; `claim_specs`: per claim, its finding and title;
    `analysis_titles`: the title of every analysis of the run (its section heading); `gates`: the run's gate results
    (`flowcheck.gating.GateResult.to_dict`)."""

    metadata: dict[str, Any]
    claims: list[dict[str, Any]]
    summaries: dict[tuple[str, str], dict[str, TaskSummary]]
    skipped: list[dict[str, str]]
    image_models: dict[str, str] = field(default_factory=dict)
    paper_models: dict[str, str] = field(default_factory=dict)
    video_tokens: dict[str, int] = field(default_factory=dict)
    temporal_tasks: dict[str, list[str]] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)
    claim_specs: dict[str, dict[str, str]] = field(default_factory=dict)
    analysis_titles: dict[str, str] = field(default_factory=dict)
    gates: list[dict[str, Any]] = field(default_factory=list)

    def finding_of(self) -> dict[str, str]:
        """Claim name -> the paper's finding it tests (C1 .. C5)."""
        return {name: spec["finding"] for name, spec in self.claim_specs.items()}

    def titles(self) -> dict[str, str]:
        """Claim name -> its title, in the registry's order."""
        return {name: spec["title"] for name, spec in self.claim_specs.items()}

    def to_json(self) -> dict:
        """The results.json object, validated against the schema (raises SchemaError on a malformed value)."""
        data = {
            "schema_version": SCHEMA_VERSION,
            "metadata": self.metadata,
            "claims": [_claim_entry(e) for e in self.claims],
            "summaries": {
                f"{m}|{d}|{t}": summary.to_dict()
                for (m, d), per in self.summaries.items()
                for t, summary in per.items()
            },
            "skipped": self.skipped,
            "image_models": self.image_models,
            "paper_models": self.paper_models,
            "video_tokens": self.video_tokens,
            "temporal_tasks": self.temporal_tasks,
            "findings": self.findings,
            "claim_specs": self.claim_specs,
            "analysis_titles": self.analysis_titles,
            "gates": self.gates,
        }
        return validate(builtin(data)).model_dump(mode="json")

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """Read a results.json object (raises SchemaError when it does not follow the schema)."""
        record = validate(data)
        summaries: dict[tuple[str, str], dict[str, TaskSummary]] = defaultdict(dict)
        for key, value in record.summaries.items():
            model, dataset, task = key.rsplit("|", 2)
            try:
                summaries[(model, dataset)][task] = TaskSummary.from_dict(value, model, dataset, task)
            except (KeyError, TypeError) as err:
                raise SchemaError(f"results.json summary {key!r} cannot be read: {type(err).__name__}: {err}") from None
        return cls(
            record.metadata.model_dump(mode="json"),
            [c.model_dump(mode="json") for c in record.claims],
            dict(summaries),
            [s.model_dump(mode="json") for s in record.skipped],
            record.image_models,
            record.paper_models,
            record.video_tokens,
            record.temporal_tasks,
            record.findings,
            {name: spec.model_dump() for name, spec in record.claim_specs.items()},
            record.analysis_titles,
            [g.model_dump(mode="json") for g in record.gates],
        )

    def report_inputs(self) -> list[ReportInput]:
        """One `ReportInput` per model x dataset whose model is a model of the run (paired image models appear
        inside their video model's input), in a deterministic order."""
        inputs = {key: self._input(*key) for key in sorted(self.summaries)}
        run_models = {m["name"] for m in self.metadata.get("models", [])} or {m for m, _ in self.summaries}
        out = []
        for (model, dataset), item in inputs.items():
            if model not in run_models:
                continue
            image = self.image_models.get(model)
            item.image = inputs.get((image, dataset)) if image else None
            out.append(item)
        return out

    def contributions(self) -> list[Contribution]:
        """Each analysis's tables and figures (as data) for this record: a registered analysis draws its own
        (`Analysis.report`); one that is in the record but not registered here (its module not imported, e.g.
        when `flowcheck report` re-renders a run that used a plugin's analysis) is shown as a table of its
        summaries' numbers under its recorded title, never left out."""
        inputs = self.report_inputs()
        if not inputs:
            return []
        known = analyses()
        out = [cls.report(inputs) for cls in known.values()]
        present = {name for per in self.summaries.values() for s in per.values() for name in s.analyses}
        for name in sorted(present - set(known)):
            title = self.analysis_titles.get(name, name)
            out.append(
                Contribution.scalar_table(f"{title} (analysis {name!r} not registered here)", name, inputs, dict)
            )
        return out

    def _input(self, model: str, dataset: str) -> ReportInput:
        per_task = self.summaries[(model, dataset)]
        first = next(iter(per_task.values()))
        tasks = [t for t in per_task if t != "all"]
        temporal = [t for t in self.temporal_tasks.get(dataset, tasks) if t in tasks]
        return ReportInput(
            model=model,
            dataset=dataset,
            num_layers=first.num_layers,
            summaries={task: s.analyses for task, s in per_task.items()},
            temporal_tasks=temporal,
            image_model=self.image_models.get(model, ""),
            paper_model=self.paper_models.get(model, ""),
            video_tokens=self.video_tokens.get(model, 0),
            problems=first.problems,
        )


def _claim_entry(entry: Mapping) -> dict:
    keys = ClaimEntry.model_fields
    return {k: v for k, v in entry.items() if k in keys}


def summary_line(claims: Sequence[Mapping]) -> str:
    """``N claim checks: P passed, F failed, X expected failures[, K not evaluable][, E errors]``."""
    counts: dict[str, int] = defaultdict(int)
    for e in claims:
        counts[e.get("outcome", "unknown")] += 1
    line = (
        f"{len(claims)} claim checks: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['xfailed']} expected failures"
    )
    for outcome, label in (
        ("not evaluable", "not evaluable"),
        ("unexpectedly passed", "unexpectedly passed (strict expected failure)"),
        ("error", "errors"),
        ("skipped", "skipped"),
    ):
        if counts[outcome]:
            line += f", {counts[outcome]} {label}"
    return line
