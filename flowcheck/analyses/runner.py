"""Run the analyses of one model on one dataset: data -> frames -> encode -> engine -> per-sample results.

Every per-sample result is stored in the content-addressed cache as soon as it is computed, so
an interrupted run resumes where it stopped and an identical request computes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowcheck.analyses.base import Analysis, AnalysisUnavailable, Setup, selected
from flowcheck.analyses.records import Baseline, OpenEndedSample
from flowcheck.cache import ResultCache, cache_key
from flowcheck.data.frames import FRAME_RULE, FrameCache, FrameRequest, VideoError
from flowcheck.data.report import Skipped
from flowcheck.data.sample import Sample
from flowcheck.models.base import AdapterError, ModelAdapter
from flowcheck.models.handle import ModelHandle
from flowcheck.progress import NullProgress, ProgressSink

NOT_COMPUTED = "not in the result cache (not computed)"
OPEN_ENDED_UNUSED = (
    "open-ended question (no candidates): none of the run's analyses answers open-ended questions; run "
    "answers_under_knockout or open_ended_flow (--flow-analyses open_ended_flow)"
)


@dataclass(frozen=True)
class AnalysisPlan:
    """What to compute for one model on one dataset.

    `analyses`: names of registered analyses (`flowcheck.analyses.base`), None for all of them; `settings`:
    per analysis name, its settings (e.g. ``{"sweep": {"conditions": ("cross_frame",)}, "logit_lens":
    {"keywords": "synthetic"}}``; each analysis documents its own); `selection`: which samples curves and
    layer-wise summaries average over (correct, wrong, all; the paper: correct); `seed`: bootstrap and random
    controls; `engine`: options of the knockout engine (batch size, memory budget, attention backend);
    `resampling`: how bootstrap intervals computed during the run resample ("video" or "sample", as
    `TaskView.resampling`; e.g. the pathway discovery's curves)."""

    analyses: tuple[str, ...] | None = None
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    selection: str = "correct"
    seed: int = 0
    resampling: str = "video"
    engine: Mapping[str, Any] = field(default_factory=dict)

    def setting(self, analysis: str) -> Mapping[str, Any]:
        return self.settings.get(analysis, {})


@dataclass
class ModelResults:
    """Per-sample results of one model on one dataset: each multiple-choice sample's baseline, each open-ended
    sample's record (`open_ended`: no options, so no baseline) and, per analysis name, its decoded per-sample
    results by sample id; `info` and `problems` per analysis (why one could not run); `videos`: each sample's video
    key (`video_key`, for video-clustered intervals; filled here, never cached)."""

    model: str
    fingerprint: str
    num_layers: int
    dataset: str
    baselines: list[Baseline] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    videos: dict[str, str] = field(default_factory=dict)
    open_ended: list[OpenEndedSample] = field(default_factory=list)

    def tasks(self) -> list[str]:
        return sorted({b.task for b in self.baselines} | {o.task for o in self.open_ended})

    def for_task(self, task: str) -> ModelResults:
        """The same results restricted to one task."""
        ids = {b.sample_id for b in self.baselines if b.task == task} | {
            o.sample_id for o in self.open_ended if o.task == task
        }
        return ModelResults(
            self.model,
            self.fingerprint,
            self.num_layers,
            self.dataset,
            [b for b in self.baselines if b.sample_id in ids],
            {name: {k: v for k, v in per.items() if k in ids} for name, per in self.results.items()},
            self.info,
            self.problems,
            [s for s in self.skipped if f"/{task}/" in s.sample_id or s.sample_id.endswith(f"/{task}")],
            videos={k: v for k, v in self.videos.items() if k in ids},
            open_ended=[o for o in self.open_ended if o.task == task],
        )


def sample_fingerprint(sample: Sample) -> str:
    """Content identity of a sample: its annotation and its video bytes (portable across machines)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(sample.annotation()).encode())
    with open(sample.video, "rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:24]


def video_key(sample: Sample) -> str:
    """The video a question is about: its video file and clip bounds (seconds), ``"<path>"`` or
    ``"<path>[start, end]"``. Questions with the same key form one cluster of a video-clustered bootstrap (TVBench and
    TOMATO ask several questions about one video)."""
    if sample.start is None and sample.end is None:
        return str(sample.video)
    return f"{sample.video}[{sample.start}, {sample.end}]"


def result_identity(model: ModelHandle) -> dict:
    """What every cached result of `model` depends on besides the sample and the analysis parameters: weights,
    dtype, frames and the rule that picks them, a family chosen by name and a non-default system-prompt mode (each
    changes the numbers)."""
    identity = {
        "model": model.fingerprint(),
        "dtype": model.dtype,
        "frames": model.num_frames,
        "frame_rule": FRAME_RULE,
    }
    if model.forced_family:
        identity["family"] = model.forced_family
    if (model.options.get("system_mode") or "auto") != "auto":
        identity["system_mode"] = model.options["system_mode"]
    return identity


def run_analyses(
    model: ModelHandle | ModelAdapter,
    samples: Sequence[Sample],
    plan: AnalysisPlan,
    cache: ResultCache,
    *,
    dataset: str = "",
    frame_cache: FrameCache | None = None,
    progress: ProgressSink | None = None,
    compute: bool = True,
    skipped_before: int = 0,
) -> ModelResults:
    """Every analysis of `plan` for every sample, from the cache where possible (weights load only on a miss).

    Each analysis's per-sample result is stored as soon as it is computed (cache kind = analysis name).
    `progress` sees every sample (`skipped_before`: samples of the dataset already left out at load time, counted
    so that the progress agrees with the report). Raises ValueError when no analysis of the plan gives the
    samples' baselines (the knockout sweep does)."""
    if isinstance(model, ModelAdapter):
        model = ModelHandle.from_adapter(model)
    progress = progress or NullProgress()
    layers = model.num_layers
    results = ModelResults(model.name, model.fingerprint(), layers, dataset)
    instances: list[Analysis] = []
    for cls in selected(plan.analyses):
        try:
            instances.append(cls(Setup(model, dataset, layers, plan, plan.setting(cls.name))))
        except AnalysisUnavailable as err:  # only the claims that need this analysis are affected
            results.problems[cls.name] = str(err)
    if not any(a.provides_baseline for a in instances):
        raise ValueError(f"the plan's analyses {plan.analyses} include none that gives each sample's baseline (sweep)")
    knockouts = [pair for analysis in instances for pair in analysis.knockouts()]
    later = [a for a in instances if a.needs_results()]
    first = [a for a in instances if a not in later]
    for analysis in instances:
        analysis.setup.knockouts = knockouts
        results.results[analysis.name] = {}
    for analysis in first:
        results.info[analysis.name] = analysis.info()
    parameters = {a.name: a.parameters() for a in first}
    frames_cache = frame_cache or FrameCache(max_items=8)
    identity = result_identity(model)
    label = f"{model.name}: {dataset}" if dataset else model.name
    status: dict[str, str] = {}
    _pass(
        label,
        model,
        samples,
        first,
        parameters,
        identity,
        cache,
        frames_cache,
        results,
        compute,
        progress,
        skipped_before,
        status,
    )
    # Second pass: analyses that read every sample's results of the first (e.g. pathways discovered from curves).
    ready = []
    for analysis in later:
        try:
            analysis.prepare(results)
        except AnalysisUnavailable as err:
            results.problems[analysis.name] = str(err)
            del results.results[analysis.name]
            continue
        results.info[analysis.name] = analysis.info()
        parameters[analysis.name] = analysis.parameters()
        ready.append(analysis)
    if ready:
        kept = {b.sample_id for b in results.baselines}
        names = ", ".join(a.name for a in ready)
        _pass(
            f"{label} ({names})",
            model,
            [s for s in samples if s.id in kept],
            ready,
            parameters,
            identity,
            cache,
            frames_cache,
            results,
            compute,
            progress,
            skipped_before,
            status,
        )
    results.computed = sum(v == "computed" for v in status.values())
    results.cached = sum(v == "cached" for v in status.values())
    return results


def _pass(
    label: str,
    model: ModelHandle,
    samples: Sequence[Sample],
    analyses: Sequence[Analysis],
    parameters: Mapping[str, dict | None],
    identity: dict,
    cache: ResultCache,
    frames_cache: FrameCache,
    results: ModelResults,
    compute: bool,
    progress: ProgressSink,
    skipped_before: int,
    status: dict[str, str],
) -> None:
    """One loop over the samples for `analyses`; `status[sample id]` becomes "computed" when any pass computed
    something for the sample, else "cached" (skipped samples have none)."""
    per_sample = [a for a in analyses if parameters[a.name] is not None]
    progress.start(label, len(samples))
    computed = cached = 0
    try:
        for done, sample in enumerate(samples, 1):
            outcome = _one_sample(
                model, sample, per_sample, parameters, identity, cache, frames_cache, results, compute
            )
            if outcome == "computed" or (outcome == "cached" and sample.id not in status):
                status[sample.id] = outcome
            computed += outcome == "computed"
            cached += outcome == "cached"
            progress.update(done, computed, cached, skipped_before + len(results.skipped))
    finally:
        progress.finish()


def _one_sample(
    model: ModelHandle,
    sample: Sample,
    analyses: Sequence[Analysis],
    parameters: Mapping[str, dict | None],
    identity: dict,
    cache: ResultCache,
    frames_cache: FrameCache,
    results: ModelResults,
    compute: bool,
) -> str:
    """One sample's results of `analyses` (from the cache or computed); "computed", "cached" or "skipped".

    An open-ended sample (`Sample.open_ended`) gets only the analyses that handle open-ended samples, encoded with
    the open-ended prompt, and an `OpenEndedSample` record instead of a baseline."""
    if sample.open_ended:
        analyses = [a for a in analyses if a.handles_open_ended]
        if not analyses:
            results.skipped.append(Skipped(sample.id, str(sample.video), OPEN_ENDED_UNUSED))
            return "skipped"
    try:
        fingerprint = sample_fingerprint(sample)
    except OSError as err:
        results.skipped.append(Skipped(sample.id, str(sample.video), f"video not readable: {err}"))
        return "skipped"
    desc = {**identity, "sample": fingerprint}
    keys = {}
    for a in analyses:
        try:
            keys[a.name] = cache_key({**desc, **parameters[a.name]})
        except TypeError as err:
            raise TypeError(f"analysis {a.name!r}: parameters(): {err}") from None
    stored = {a.name: cache.get(a.name, keys[a.name]) for a in analyses}
    loaded: dict[str, Any] = {}
    for a in analyses:
        if stored[a.name] is not None:
            try:
                loaded[a.name] = a.load(stored[a.name])
            except (KeyError, TypeError, ValueError, AttributeError):  # an entry of the wrong shape: recomputed
                stored[a.name] = None
    outcome = "cached"
    if all(v is not None for v in stored.values()):
        pass
    elif not compute:
        results.skipped.append(Skipped(sample.id, str(sample.video), NOT_COMPUTED))
        return "skipped"
    else:
        adapter = model.adapter
        try:
            frames = frames_cache.get(FrameRequest.of(sample, model.num_frames))
            encoded = adapter.encode_open_ended(sample, frames) if sample.open_ended else adapter.encode(sample, frames)
        except (VideoError, AdapterError) as err:
            results.skipped.append(Skipped(sample.id, str(sample.video), str(getattr(err, "reason", err))))
            return "skipped"
        for analysis in analyses:
            if stored[analysis.name] is None:
                value = as_json(analysis.name, analysis.compute(adapter.decoder, encoded, sample))
                cache.put(analysis.name, keys[analysis.name], value)
                stored[analysis.name], loaded[analysis.name] = value, analysis.load(value)
        outcome = "computed"
    results.videos[sample.id] = video_key(sample)
    if sample.open_ended:
        results.open_ended.append(OpenEndedSample(sample.id, sample.task, sample.dataset, sample.answer))
    for analysis in analyses:
        value = loaded[analysis.name]
        results.results[analysis.name][sample.id] = value
        baseline = analysis.baseline(value)
        if baseline is not None:
            results.baselines.append(baseline)
    return outcome


def as_json(name: str, value: Any) -> dict[str, Any]:
    """`value` as it reads back from the cache (a JSON round trip), so that a fresh run and a cached run summarise
    the same values. Raises TypeError naming the analysis when `compute()` gave no JSON object."""
    if not isinstance(value, dict):
        raise TypeError(f"analysis {name!r}: compute() must return a JSON object (dict), got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise TypeError(f"analysis {name!r}: compute() returned a value that is not JSON: {err}") from None
