"""One pytest session's view of flowcheck: the grid of cases, datasets, models and their results.

Results are computed once per (model, dataset) and shared by every claim on that model; they go
through the content-addressed cache, so other workers, shards and later runs reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowcheck.analyses.runner import AnalysisPlan, ModelResults, run_analyses
from flowcheck.analyses.summary import summarise
from flowcheck.cache import ResultCache
from flowcheck.claims import Registry, TaskSummary
from flowcheck.data.frames import FrameCache
from flowcheck.data.registry import load_dataset
from flowcheck.data.report import LoadReport
from flowcheck.data.sample import Sample
from flowcheck.edges import PathwaySpec, paper_pathways
from flowcheck.options import FlowOptions

SYNTHETIC_TEMPORAL = ("action_antonym", "action_sequence", "moving_direction", "object_count", "scene_transition")


@dataclass(frozen=True, order=True)
class Case:
    """One cell of the grid a claim is tested on: a model on a dataset's task (or the whole dataset)."""

    model: str
    dataset: str
    task: str

    def test_id(self, several_datasets: bool) -> str:
        model = Path(self.model).name if "/" in self.model and Path(self.model).exists() else self.model.split("/")[-1]
        where = f"{self.dataset}:{self.task}" if several_datasets else self.task
        return f"{model}-{where}"


def temporal_tasks(dataset: str, tasks: list[str]) -> list[str]:
    """The tasks the paper's temporal claims are tested on."""
    if dataset == "synthetic":
        return [t for t in tasks if t in SYNTHETIC_TEMPORAL]
    if dataset == "tvbench":
        from flowcheck.data.tvbench import PAPER_TASKS

        return [t for t in tasks if t in PAPER_TASKS]
    return list(tasks)


@dataclass
class FlowSession:
    """Datasets, model handles and results of a run (lazily loaded, memoised)."""

    options: FlowOptions
    registry: Registry
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    reports: dict[str, LoadReport] = field(default_factory=dict)
    _handles: dict = field(default_factory=dict)
    _results: dict = field(default_factory=dict)
    _summaries: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cache = ResultCache(self.options.cache_dir)
        self.frames = FrameCache(max_items=64)

    # -- data ----------------------------------------------------------------------------------
    def dataset(self, name: str) -> list[Sample]:
        if name not in self.samples:
            samples, report = load_dataset(
                name, self.options.data.get(name), self.options.tasks, self.options.max_samples
            )
            self.samples[name], self.reports[name] = samples, report
        return self.samples[name]

    def tasks(self, dataset: str) -> list[str]:
        return sorted({s.task for s in self.dataset(dataset)})

    def cases(self, scope: str, which: str) -> list[Case]:
        """Every (model, dataset, task) a claim of this scope applies to, in a deterministic order."""
        out = []
        for model in self.options.models:
            for dataset in self.options.data:
                if scope == "dataset":
                    out.append(Case(model, dataset, "all"))
                    continue
                tasks = self.tasks(dataset)
                for task in temporal_tasks(dataset, tasks) if which == "temporal" else tasks:
                    out.append(Case(model, dataset, task))
        return sorted(out)

    def in_shard(self, case: Case) -> bool:
        """Whether this process computes `case` (deterministic split of the (model, dataset, task) grid)."""
        if self.options.shard is None:
            return True
        index, total = self.options.shard
        grid = sorted({(c.model, c.dataset, c.task) for c in self.cases("task", "all")})
        key = (case.model, case.dataset, case.task)
        if key not in grid:  # dataset-scope cases belong to the shard of the model's first cell
            key = next((g for g in grid if g[0] == case.model and g[1] == case.dataset), key)
        return grid.index(key) % total == index if key in grid else index == 0

    # -- models and results --------------------------------------------------------------------
    def handle(self, model: str):
        if model not in self._handles:
            from flowcheck.models.handle import ModelHandle

            self._handles[model] = ModelHandle(
                model,
                dtype=self.options.dtype,
                device=self.options.device,
                trust_remote_code=self.options.trust_remote_code,
            )
        return self._handles[model]

    def pathway(self, model: str, num_layers: int) -> PathwaySpec | None:
        spec = self.registry.model_setting(model, "pathway")
        if spec:
            return PathwaySpec.from_dict({"num_layers": num_layers, **spec}, name=f"{model} (registry)")
        paper = self.registry.model_setting(model, "paper_model")
        return paper_pathways().get(paper) if paper else None

    def plan(self, model: str, dataset: str) -> AnalysisPlan:
        handle = self.handle(model)
        keywords = self.registry.model_setting(model, "keywords") or {"synthetic": "synthetic"}.get(
            dataset, "action_sequence"
        )
        engine = {
            k: v
            for k, v in (("batch_size", self.options.batch_size), ("memory_budget_mb", self.options.memory_budget_mb))
            if v is not None
        }
        engine["attention_backend"] = self.options.attention_backend
        return AnalysisPlan(
            window=self.options.window,
            logit_lens=keywords,
            final_norm=bool(self.registry.model_setting(model, "answer_final_norm", False)),
            pathway=self.pathway(model, handle.num_layers),
            seed=self.options.seed,
            engine=engine,
        )

    def results(self, model: str, dataset: str, compute: bool = True) -> ModelResults:
        key = (model, dataset)
        if key not in self._results:
            samples = self.dataset(dataset)
            if self.options.shard is not None:
                mine = {
                    c.task
                    for c in self.cases("task", "all")
                    if c.model == model and c.dataset == dataset and self.in_shard(c)
                }
                samples = [s for s in samples if s.task in mine]
            self._results[key] = run_analyses(
                self.handle(model),
                samples,
                self.plan(model, dataset),
                self.cache,
                dataset=dataset,
                frame_cache=self.frames,
                compute=compute,
            )
        return self._results[key]

    def summary(self, case: Case, compute: bool = True) -> TaskSummary:
        if case not in self._summaries:
            results = self.results(case.model, case.dataset, compute)
            self._summaries[case] = summarise(
                results, None if case.task == "all" else case.task, seed=self.options.seed
            )
        return self._summaries[case]

    def gate_numbers(self, model: str) -> dict[str, dict[str, float]]:
        """The model's key numbers over every dataset and task of the run (for checkpoint gating)."""
        from flowcheck.gating import key_numbers

        per_dataset = {}
        for dataset in self.options.data:
            results = self.results(model, dataset)
            tasks = [*results.tasks(), "all"]
            per_dataset[dataset] = {t: self.summary(Case(model, dataset, t)) for t in tasks}
        return key_numbers(per_dataset)
