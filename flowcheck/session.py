"""One pytest session's view of flowcheck: the grid of cases, datasets, models and their results.

Results are computed once per (model, dataset) and shared by every claim on that model; they go
through the content-addressed cache, so other workers, shards and later runs reuse them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from flowcheck.analyses.base import analyses, check_settings, selected
from flowcheck.analyses.contract import CACHE_KIND as CONTRACT_KIND
from flowcheck.analyses.contract import Verification, choose_sample, verification_key, verify
from flowcheck.analyses.runner import NOT_COMPUTED, AnalysisPlan, ModelResults, run_analyses
from flowcheck.analyses.summary import TaskSummary, summarise
from flowcheck.cache import ResultCache
from flowcheck.claims import ClaimResult, Evidence, Registry, RegistryError, evaluate
from flowcheck.data.frames import FrameCache, FrameRequest, VideoError
from flowcheck.data.registry import dataset_spec, load_dataset
from flowcheck.data.report import LoadReport
from flowcheck.data.sample import Sample
from flowcheck.edges import ConditionError, PathwaySpec, RouteSpec, paper_pathways
from flowcheck.models.identity import model_refs
from flowcheck.options import FlowOptions
from flowcheck.progress import NullProgress, ProgressSink
from flowcheck.provenance import git_commit, prompt_template_hash, resolved_options, versions
from flowcheck.record import RunRecord

# A model's registry settings that change its numbers (`FlowSession.plan`), recorded in its provenance.
NUMBER_SETTINGS = ("pathway_layers", "paper_model", "keywords", "answer_final_norm")


@dataclass(frozen=True, order=True)
class Case:
    """One cell of the grid a claim is tested on: a model on a dataset's task (or the whole dataset)."""

    model: str
    dataset: str
    task: str

    def test_id(self, several_datasets: bool) -> str:
        """``<model name>-<task>`` (``<model>-<dataset>:<task>`` with several datasets); model names are unique."""
        where = f"{self.dataset}:{self.task}" if several_datasets else self.task
        return f"{self.model}-{where}"


def temporal_tasks(dataset: str, tasks: list[str]) -> list[str]:
    """The tasks the paper's temporal claims are tested on (the dataset's own declaration, `DatasetSpec`)."""
    return dataset_spec(dataset).temporal_tasks(tasks)


class ContractError(RuntimeError):
    """A model whose adapter fails the adapter contract on the run's data (see `flowcheck verify`)."""


def registry_pathway(spec: dict, num_layers: int, model: str) -> dict[str, tuple[int, int]]:
    """A registry's ``pathway_layers`` (``route = [first, last]``, layers counted from 1, inclusive) as the 0-based
    inclusive ranges of `PathwaySpec`. Raises RegistryError on a missing route or a range outside 1..num_layers."""
    routes = ("cross_frame", "video_to_question", "question_to_last")
    missing = [r for r in routes if r not in spec]
    if missing or set(spec) - set(routes):
        raise RegistryError(
            f"[models.{model!r}] pathway_layers needs exactly {', '.join(routes)} (got {', '.join(spec)})"
        )
    out = {}
    for route in routes:
        first, last = spec[route]
        if not 1 <= first <= last <= num_layers:
            raise RegistryError(
                f"[models.{model!r}] pathway_layers.{route} = [{first}, {last}]: layers count from 1 to {num_layers}"
            )
        out[route] = (first - 1, last - 1)
    return out


def _skip_row(dataset: str, skipped, models: str) -> dict[str, str]:
    return {
        "dataset": dataset,
        "sample_id": skipped.sample_id,
        "file": skipped.file,
        "reason": skipped.reason,
        "models": models,
    }


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
    _verifications: dict = field(default_factory=dict)
    _identities: dict = field(default_factory=dict)
    progress: ProgressSink = field(default_factory=NullProgress)  # live progress of the computations

    def __post_init__(self) -> None:
        self.cache = ResultCache(self.options.cache_dir)
        self.frames = FrameCache(max_items=64)
        self.refs = {ref.name: ref for ref in model_refs(self.options.models)}
        for ref in self.refs.values():
            self.registry.alias(ref.name, ref.source)

    @property
    def models(self) -> list[str]:
        """The run's unique model names, in the order given."""
        return list(self.refs)

    def source(self, model: str) -> str:
        """Where `model` loads from: its run entry's path or hub id, else the name itself (a paired image model)."""
        ref = self.refs.get(model)
        return ref.source if ref else model

    # -- data ----------------------------------------------------------------------------------
    def dataset(self, name: str) -> list[Sample]:
        if name not in self.samples:
            samples, report = load_dataset(
                name, self.options.data.get(name), self.options.tasks, self.options.max_samples, self.options.data_dir
            )
            self.samples[name], self.reports[name] = samples, report
        return self.samples[name]

    def tasks(self, dataset: str) -> list[str]:
        return sorted({s.task for s in self.dataset(dataset)})

    def cases(self, scope: str, which: str) -> list[Case]:
        """Every (model, dataset, task) a claim of this scope applies to, in a deterministic order."""
        out = []
        for model in self.models:
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
                self.source(model),
                name=model,
                dtype=self.options.dtype,
                device=self.options.device,
                system_mode=self.options.system_prompt,
                trust_remote_code=self.options.trust_remote_code,
            )
        return self._handles[model]

    def pathway(self, model: str, num_layers: int) -> PathwaySpec | None:
        """The model's registered effective-pathway spec: the registry's ``pathway_layers`` (layers from 1,
        inclusive), else the paper's spec of its ``paper_model``, else None (the pruning analysis discovers the
        model's own, or scales the paper's 7B spec with ``--flow-pathway paper-scaled``)."""
        spec = self.registry.model_setting(model, "pathway_layers")
        if spec:
            return PathwaySpec.from_dict(
                {"num_layers": num_layers, **registry_pathway(spec, num_layers, model)}, name=f"{model} (registry)"
            )
        paper = self.registry.model_setting(model, "paper_model")
        return paper_pathways().get(paper) if paper else None

    def pruning_settings(self, model: str, num_layers: int) -> dict:
        """The pruning analysis's settings (`flowcheck.analyses.pruning.Pruning`): a route spec given with
        ``--flow-pathway``, else the registered spec, else ``discovered`` / ``paper-scaled``. Raises RegistryError
        for a spec that does not parse."""
        choice = (self.options.values.get("pathway") or "discovered").strip()
        settings: dict = {"window": self.options.window}
        if choice not in ("discovered", "paper-scaled"):
            try:
                spec = RouteSpec.parse(choice, num_layers, "keep", name=f"{model} (--flow-pathway)")
            except ConditionError as err:
                raise RegistryError(f"--flow-pathway: {err}") from None
            return {**settings, "pathway": spec, "pathway_source": "--flow-pathway"}
        registered = self.pathway(model, num_layers)
        if registered is not None:
            source = "registry" if self.registry.model_setting(model, "pathway_layers") else "paper (Table 3)"
            return {**settings, "pathway": registered, "pathway_source": source}
        return {**settings, "mode": choice}

    def plan(self, model: str, dataset: str) -> AnalysisPlan:
        """What the run computes for `model` on `dataset`: every registered analysis, with the registry's settings
        for the model (keyword list, final norm, pathway spec) and the run's options."""
        handle = self.handle(model)
        keywords = self.registry.model_setting(model, "keywords") or dataset_spec(dataset).keywords
        engine = {
            k: v
            for k, v in (("batch_size", self.options.batch_size), ("memory_budget_mb", self.options.memory_budget_mb))
            if v is not None
        }
        engine["attention_backend"] = self.options.attention_backend
        settings = {
            "sweep": {"window": self.options.window},
            "logit_lens": {"keywords": keywords},
            "answer_probability": {"final_norm": bool(self.registry.model_setting(model, "answer_final_norm", False))},
            "pruning": self.pruning_settings(model, handle.num_layers),
        }
        extra = tuple(getattr(self.options, "analyses", None) or ())
        names = None if not extra else tuple(dict.fromkeys([*(c.name for c in selected(None)), *extra]))
        given_settings = self.options.values.get("setting") or {}
        for name, given in check_settings(given_settings, names, handle.num_layers).items():
            settings[name] = {**settings.get(name, {}), **given}
        return AnalysisPlan(
            analyses=names,
            settings=settings,
            seed=self.options.seed,
            engine=engine,
            resampling=self.options.ci_resampling,
        )

    def verification(self, model: str, compute: bool = True) -> Verification | None:
        """The adapter contract (`flowcheck.analyses.contract`) of `model` on one sample of the run's first dataset,
        from the result cache when it is there; None when it was not computed (`compute=False`) or no sample
        could be read."""
        if model in self._verifications:
            return self._verifications[model]
        handle = self.handle(model)
        # the contract checks a multiple-choice prompt: the first dataset with such samples
        samples = next(
            (mc for name in self.options.data if (mc := [s for s in self.dataset(name) if not s.open_ended])), []
        )
        result = None
        if samples:
            sample = choose_sample(samples)
            try:
                frames = self.frames.get(FrameRequest.of(sample, handle.num_frames))
            except VideoError:
                frames = None
            if frames is not None and compute:
                result = verify(handle, sample, frames, cache=self.cache)
            elif frames is not None:
                stored = self.cache.get(CONTRACT_KIND, verification_key(handle, sample, frames))
                result = Verification.from_json(stored) if stored is not None else None
        if result is not None or compute:
            self._verifications[model] = result
        return result

    def results(self, model: str, dataset: str, compute: bool = True) -> ModelResults:
        """Every analysis of `model` on `dataset` (computed, or read from the cache only when not `compute`).

        Raises ContractError when the model's adapter fails its contract: its numbers would be wrong."""
        key = (model, dataset)
        if key not in self._results and compute:
            verification = self.verification(model)
            if verification is not None and not verification.ok:
                raise ContractError(
                    f"{model}: the adapter contract failed on sample {verification.sample_id} "
                    f"({'; '.join(verification.check(name).line() for name in verification.failed)}); its inputs "
                    f"differ from what the model itself sees, so no number is computed. Details: "
                    f"flowcheck verify {self.source(model)}"
                )
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
                skipped_before=len(self.reports[dataset].skipped) if dataset in self.reports else 0,
                progress=self.progress if compute else NullProgress(),  # cache reads for the report: no display
            )
        return self._results[key]

    def summary(self, case: Case, compute: bool = True) -> TaskSummary:
        if case not in self._summaries:
            results = self.results(case.model, case.dataset, compute)
            self._summaries[case] = summarise(
                results,
                None if case.task == "all" else case.task,
                seed=self.options.seed,
                resampling=self.options.ci_resampling,
                curve_metric=self.options.curve_metric,
            )
        return self._summaries[case]

    def evaluate(self, claim: str, case: Case) -> ClaimResult:
        """Evaluate `claim` on `case`. Raises NotEvaluable (with the reason) when the case gives no evidence."""
        evidence = Evidence(
            self.summary(case),
            self.registry.thresholds(claim, case.model),
            lambda key: self.registry.model_setting(case.model, key),
            lambda other: self.summary(Case(other, case.dataset, case.task)),
        )
        return evaluate(self.registry, claim, evidence)

    def skipped_rows(self) -> list[dict[str, str]]:
        """Every sample left out of the run, once per (dataset, sample, reason): at load time (all models) or while
        computing (the models named). The one source of the skipped counts in the report and the terminal."""
        rows: dict[tuple[str, str, str], dict[str, str]] = {}
        for dataset, report in sorted(self.reports.items()):
            for s in report.skipped:
                rows.setdefault((dataset, s.sample_id, s.reason), _skip_row(dataset, s, "all models"))
        for (model, dataset), results in sorted(self._results.items()):
            if model not in self.refs:  # a paired image model: its samples are the run's, counted for the run's models
                continue
            for s in results.skipped:
                if s.reason == NOT_COMPUTED:
                    continue
                row = rows.setdefault((dataset, s.sample_id, s.reason), _skip_row(dataset, s, ""))
                row["models"] = ", ".join(m for m in (row["models"], model) if m)
        return list(rows.values())

    def skipped_counts(self) -> dict[str, int]:
        """Per dataset, how many distinct samples were left out (see `skipped_rows`)."""
        counts = {name: set() for name in self.options.data}
        for row in self.skipped_rows():
            counts.setdefault(row["dataset"], set()).add(row["sample_id"])
        return {name: len(ids) for name, ids in counts.items()}

    def skipped_lines(self) -> list[str]:
        """One terminal line per dataset with skipped samples."""
        lines = []
        for name, count in self.skipped_counts().items():
            if count:
                report = self.reports.get(name)
                total = report.loaded + len({s.sample_id for s in report.skipped}) if report else count
                lines.append(f"{name}: {count} of {total} samples skipped (listed in REPORT.md and results.json)")
        return lines

    def gate_numbers(self, model: str) -> dict[str, dict[str, float]]:
        """The model's key numbers over every dataset and task of the run (for checkpoint gating)."""
        from flowcheck.gating import key_numbers

        per_dataset = {}
        for dataset in self.options.data:
            results = self.results(model, dataset)
            tasks = [*results.tasks(), "all"]
            per_dataset[dataset] = {t: self.summary(Case(model, dataset, t)) for t in tasks}
        return key_numbers(per_dataset)

    # -- gating: per-sample records and provenance --------------------------------------------
    def gate_config(self):
        """The gate's settings (`flowcheck.gating.config.GateConfig`) from the registry's ``[gating]`` tables."""
        from flowcheck.gating import gate_config

        return gate_config(self.registry.sources, self.registry.tolerances)

    def sample_identities(self, dataset: str) -> dict[str, tuple[str, str]]:
        """Sample id -> (fingerprint, video hash) of every readable sample of `dataset`
        (`flowcheck.gating.samples.sample_identity`; memoised: it reads each video once)."""
        from flowcheck.gating.samples import sample_identity

        if dataset not in self._identities:
            identities = {}
            for sample in self.dataset(dataset):
                try:
                    identities[sample.id] = sample_identity(dataset, sample)
                except OSError:  # an unreadable video: the sample is skipped by the run as well
                    continue
            self._identities[dataset] = identities
        return self._identities[dataset]

    def run_provenance(self, root: Path | None = None) -> dict:
        """What the run's numbers depend on besides the models: the resolved options with their source, versions,
        git commit, dtype and device, and each loaded dataset's fingerprint (`flowcheck.gating.samples`)."""
        from flowcheck.gating.samples import dataset_fingerprint

        found = versions()
        return {
            "flowcheck": found["flowcheck"],
            "git_commit": git_commit(root or Path.cwd()),
            "versions": found,
            "options": resolved_options(self.options.values, self.options.sources),
            "dtype": self.options.dtype,
            "device": self.options.device,
            "datasets": {
                name: {
                    "fingerprint": dataset_fingerprint(self.sample_identities(name)),
                    "samples": len(self.sample_identities(name)),
                }
                for name in self.options.data
                if name in self.samples
            },
        }

    def model_provenance(self, model: str) -> dict:
        """What a model's numbers depend on: its source and weights fingerprint, layers, the hash of its prompt
        template, its registry settings that enter the analyses, the knockout window (width resolved for its depth,
        style) and the frame sampling."""
        from flowcheck.data.frames import FRAME_RULE
        from flowcheck.edges import default_window_width

        handle = self.handle(model)
        layers = handle.num_layers
        return {
            "source": self.source(model),
            "fingerprint": handle.fingerprint(),
            "layers": layers,
            "prompt_template": prompt_template_hash(handle.path),
            # the registry's settings that enter the analyses (effective pathways, logit-lens keywords, final norm)
            "settings": {k: v for k, v in self.registry.models.get(model, {}).items() if k in NUMBER_SETTINGS},
            "window": {"width": self.options.window or default_window_width(layers), "style": "center"},
            "frame_sampling": {"frames": handle.num_frames, "rule": FRAME_RULE},
        }

    def gate_record(self, model: str, root: Path | None = None) -> dict:
        """The model's gating record (`flowcheck.gating.compare`): provenance, the summary numbers and per task the
        per-sample records (`flowcheck.gating.samples`) of every dataset of the run."""
        from flowcheck.gating import FORMAT
        from flowcheck.gating.samples import per_sample_records

        decimals = self.gate_config().curve_decimals
        samples = {}
        for dataset in self.options.data:
            results = self.results(model, dataset)
            samples[dataset] = per_sample_records(
                results, self.dataset(dataset), self.sample_identities(dataset), decimals
            )
        about = self.model_provenance(model)
        provenance = {
            **self.run_provenance(root),
            "window": about.pop("window"),
            "frame_sampling": about.pop("frame_sampling"),
            "model": about,
        }
        return {"format": FORMAT, "provenance": provenance, "numbers": self.gate_numbers(model), "samples": samples}

    # -- the run record ------------------------------------------------------------------------
    def record(
        self, entries: list[dict], *, started: float, root: Path | None = None, gates: list[dict] | None = None
    ) -> RunRecord:
        """The finished run as a `RunRecord`: metadata (with the run's provenance), the claim entries, every summary
        of the run's models and their paired image models (memoised or read from the cache, never computed),
        skipped samples, and the gate results (`flowcheck.gating.GateResult.to_dict`) of the run's gating tests."""
        gates = list(gates or [])
        pairs = {(e["model"], e["dataset"]) for e in entries if e.get("dataset")}
        pairs |= {(g["model"], dataset) for g in gates for dataset in self.options.data if g["model"] in self.refs}
        for model, dataset in list(pairs):
            image = self.registry.model_setting(model, "image_model")
            if image:
                pairs.add((image, dataset))
        summaries, video_tokens = {}, {}
        for model, dataset in sorted(pairs):
            try:
                results = self.results(model, dataset, compute=False)
            except Exception:  # a model that cannot even be opened here (e.g. no config offline)
                continue
            if not results.baselines and not results.open_ended:
                continue
            per_task = {task: self.summary(Case(model, dataset, task), compute=False) for task in results.tasks()}
            per_task["all"] = self.summary(Case(model, dataset, "all"), compute=False)
            summaries[(model, dataset)] = per_task
            if results.baselines:
                video_tokens[model] = len(results.baselines[0].token_layout.video)
        models = {m for m, _ in summaries}
        return RunRecord(
            metadata=self._metadata(started, root or Path.cwd()),
            claims=[dict(e) for e in entries],
            summaries=summaries,
            skipped=self.skipped_rows(),
            image_models=self._settings(models, "image_model"),
            paper_models=self._settings(models, "paper_model"),
            video_tokens=video_tokens,
            temporal_tasks={d: temporal_tasks(d, self.tasks(d)) for d in self.options.data if d in self.samples},
            findings=dict(self.registry.findings),
            claim_specs={
                name: {"finding": spec.claim, "title": spec.title} for name, spec in self.registry.claims.items()
            },
            analysis_titles={name: cls.title or name for name, cls in analyses().items()},
            gates=gates,
        )

    def _settings(self, models, key: str) -> dict[str, str]:
        return {m: self.registry.model_setting(m, key) for m in sorted(models) if self.registry.model_setting(m, key)}

    def _metadata(self, started: float, root: Path) -> dict:
        options = self.options
        models = []
        for model in self.models:
            info = {"name": model, "source": self.source(model)}
            try:
                handle = self.handle(model)
                info.update(path=str(handle.path), fingerprint=handle.fingerprint(), layers=handle.num_layers)
                verification = self.verification(model, compute=False)
                info["contract"] = verification.summary() if verification is not None else "not verified in this run"
                if verification is not None and verification.prompt_notes:
                    info["prompt"] = "; ".join(f"{k}: {v}" for k, v in verification.prompt_notes.items())
            except Exception as err:
                info["error"] = str(err)
            models.append(info)
        counts = self.skipped_counts()
        datasets = []
        for name in options.data:
            report = self.reports.get(name)
            datasets.append(
                {
                    "name": name,
                    "root": report.root if report else options.data.get(name),
                    "loaded": report.loaded if report else 0,
                    "skipped": counts.get(name, 0),
                }
            )
        return {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "duration_s": round(time.time() - started, 1),
            "git_commit": git_commit(root),
            "versions": versions(),
            "device": options.device,
            "dtype": options.dtype,
            "seed": options.seed,
            "models": models,
            "datasets": datasets,
            "registry": self.registry.sources,
            "provenance": self._provenance(root),
        }

    def _provenance(self, root: Path) -> dict:
        """The run's provenance for results.json (`run_provenance` and, per model, `model_provenance`); a model that
        cannot be opened here is left out (its error is in the metadata's models)."""
        out = self.run_provenance(root)
        out["models"] = {}
        for model in self.models:
            try:
                out["models"][model] = self.model_provenance(model)
            except Exception:
                continue
        return out
