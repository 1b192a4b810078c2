"""Run the analyses of one model on one dataset: data -> frames -> encode -> engine -> per-sample results.

Every per-sample result is stored in the content-addressed cache as soon as it is computed, so
an interrupted run resumes where it stopped and an identical request computes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowcheck.analyses.answer_probability import answer_probability
from flowcheck.analyses.logit_lens import KeywordError, keyword_hits, load_keyword_file, resolve_keywords, video_top1
from flowcheck.analyses.pruning import PruningSample, prune_sample, scaled_paper_spec
from flowcheck.analyses.records import Baseline, KnockoutRecord, SampleSweep
from flowcheck.analyses.sweep import sweep_sample
from flowcheck.cache import ResultCache, cache_key
from flowcheck.data.frames import FRAME_RULE, FrameCache, FrameRequest, VideoError
from flowcheck.data.report import Skipped
from flowcheck.data.sample import Sample
from flowcheck.edges import PathwaySpec, paper_conditions, parse_layer_range, resolve_conditions, sweep_windows
from flowcheck.models.base import AdapterError, ModelAdapter
from flowcheck.models.handle import ModelHandle
from flowcheck.progress import ProgressSink, track

NOT_COMPUTED = "not in the result cache (not computed)"


@dataclass(frozen=True)
class AnalysisPlan:
    """What to compute. Conditions are paper names, family names or user specs (``video->post``)."""

    conditions: tuple[str, ...] = tuple(paper_conditions())
    window: int | None = None
    window_style: str = "center"
    accuracy: tuple[tuple[str, str], ...] = (("cross_frame", "first_half"),)
    answer_probability: bool = True
    final_norm: bool = False
    logit_lens: str | None = None
    lens_unembedding: str = "input"
    lens_norm: bool = False
    pruning: bool = True
    pathway: PathwaySpec | None = None
    random_mode: str = "uniform"
    seed: int = 0
    engine: dict = field(default_factory=dict)

    def describe(self) -> dict:
        d = asdict(self)
        d.pop("engine")
        return d


@dataclass
class ModelResults:
    """Per-sample results of one model on one dataset."""

    model: str
    fingerprint: str
    num_layers: int
    dataset: str
    baselines: list[Baseline] = field(default_factory=list)
    records: list[KnockoutRecord] = field(default_factory=list)
    answer_probs: dict[str, list[list[float]]] = field(default_factory=dict)
    lens_hits: dict[str, dict[str, list[list[int]]]] = field(default_factory=dict)
    lens_keywords: dict = field(default_factory=dict)
    pruning: list[PruningSample] = field(default_factory=list)
    pathway: dict = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    lens_problem: str = ""  # why the logit lens was not run (KeywordError message)

    def tasks(self) -> list[str]:
        return sorted({b.task for b in self.baselines})

    def for_task(self, task: str) -> ModelResults:
        """The same results restricted to one task."""
        ids = {b.sample_id for b in self.baselines if b.task == task}
        subset = ModelResults(
            self.model,
            self.fingerprint,
            self.num_layers,
            self.dataset,
            [b for b in self.baselines if b.sample_id in ids],
            [r for r in self.records if r.sample_id in ids],
            {k: v for k, v in self.answer_probs.items() if k in ids},
            {k: v for k, v in self.lens_hits.items() if k in ids},
            self.lens_keywords,
            [p for p in self.pruning if p.sample_id in ids],
            self.pathway,
            [s for s in self.skipped if f"/{task}/" in s.sample_id or s.sample_id.endswith(f"/{task}")],
        )
        subset.lens_problem = self.lens_problem
        return subset


def sample_fingerprint(sample: Sample) -> str:
    """Content identity of a sample: its annotation and its video bytes (portable across machines)."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [sample.id, sample.question, list(sample.options), sample.answer_index, sample.start, sample.end]
        ).encode()
    )
    with open(sample.video, "rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:24]


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


def pathway_for(model: ModelHandle, plan: AnalysisPlan) -> PathwaySpec:
    """The plan's spec, else the paper's scaled 7B spec (per-model specs come through the plan)."""
    if plan.pathway is not None:
        return plan.pathway
    return scaled_paper_spec(model.num_layers)


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
    """All analyses of `plan` for every sample, from the cache where possible (weights load only on a miss).

    `progress` is told ``start("<model>: <dataset>", len(samples))``, an ``update`` after every sample and
    ``finish()`` at the end (see `flowcheck.progress`; default: nothing shown). `skipped_before`: samples of the
    dataset already left out at load time, counted in the progress ``skipped`` so that it agrees with the report."""
    if isinstance(model, ModelAdapter):
        model = ModelHandle.from_adapter(model)
    layers = model.num_layers
    conditions = resolve_conditions(plan.conditions)
    windows = sweep_windows(layers, plan.window, plan.window_style)
    pairs = [(c, w) for c in conditions for w in windows]
    for name, layer_set in plan.accuracy:
        (condition,) = resolve_conditions([name])
        window = parse_layer_range(layer_set, layers)
        pairs.append((condition, type(window)(window.layers, None, f"explicit:{layer_set}")))
    spec = pathway_for(model, plan) if plan.pruning else None
    keywords, lens_problem = None, ""
    if plan.logit_lens:
        try:
            keywords = resolve_keywords(model.tokenizer, load_keyword_file(plan.logit_lens)["lists"])
        except KeywordError as err:  # only the logit-lens claim is affected; it reports this reason
            lens_problem = f"keywords {plan.logit_lens!r}: {err}"
    results = ModelResults(model.name, model.fingerprint(), layers, dataset, lens_problem=lens_problem)
    if spec is not None:
        results.pathway = {
            "name": spec.name,
            "cross_frame": spec.cross_frame,
            "video_to_question": spec.video_to_question,
            "question_to_last": spec.question_to_last,
        }
    if keywords is not None:
        results.lens_keywords = {
            "lists": keywords.lists,
            "token_ids": keywords.token_ids,
            "multi_token": keywords.multi_token,
        }
    frames_cache = frame_cache or FrameCache(max_items=8)
    base_description = result_identity(model)
    label = f"{Path(model.name).name}: {dataset}"
    counts = lambda: (results.computed, results.cached, skipped_before + len(results.skipped))  # noqa: E731
    for sample in track(samples, progress, label, counts):
        try:
            fingerprint = sample_fingerprint(sample)
        except OSError as err:
            results.skipped.append(Skipped(sample.id, str(sample.video), f"video not readable: {err}"))
            continue
        desc = {**base_description, "sample": fingerprint}
        keys = {
            "sweep": cache_key({**desc, "pairs": [(c.name, str(c.blocks), w.style, w.layers) for c, w in pairs]}),
        }
        if plan.answer_probability:
            keys["answer_probability"] = cache_key({**desc, "final_norm": plan.final_norm})
        if keywords is not None:
            keys["logit_lens"] = cache_key(
                {**desc, "keywords": keywords.token_ids, "unembedding": plan.lens_unembedding, "norm": plan.lens_norm}
            )
        if spec is not None:
            keys["pruning"] = cache_key(
                {
                    **desc,
                    "spec": [spec.cross_frame, spec.video_to_question, spec.question_to_last],
                    "seed": plan.seed,
                    "random_mode": plan.random_mode,
                }
            )
        stored = {kind: cache.get(kind, key) for kind, key in keys.items()}
        if all(v is not None for v in stored.values()):
            results.cached += 1
        elif not compute:
            results.skipped.append(Skipped(sample.id, str(sample.video), NOT_COMPUTED))
            continue
        else:
            adapter = model.adapter
            try:
                frames = frames_cache.get(FrameRequest.of(sample, model.num_frames))
                encoded = adapter.encode(sample, frames)
            except (VideoError, AdapterError) as err:
                results.skipped.append(Skipped(sample.id, str(sample.video), str(getattr(err, "reason", err))))
                continue
            decoder = adapter.decoder
            if stored["sweep"] is None:
                sweep = sweep_sample(decoder, encoded, pairs, task=sample.task, dataset=dataset, **plan.engine)
                stored["sweep"] = sweep.to_dict()
                cache.put("sweep", keys["sweep"], stored["sweep"])
            if "answer_probability" in keys and stored["answer_probability"] is None:
                stored["answer_probability"] = {"probs": answer_probability(decoder, encoded, plan.final_norm)}
                cache.put("answer_probability", keys["answer_probability"], stored["answer_probability"])
            if "logit_lens" in keys and stored["logit_lens"] is None:
                top1 = video_top1(decoder, encoded, plan.lens_unembedding, plan.lens_norm)
                stored["logit_lens"] = {"hits": keyword_hits(top1, keywords)}
                cache.put("logit_lens", keys["logit_lens"], stored["logit_lens"])
            if "pruning" in keys and stored["pruning"] is None:
                pruned = prune_sample(
                    decoder, encoded, spec, seed=plan.seed, random_mode=plan.random_mode, **plan.engine
                )
                stored["pruning"] = asdict(pruned)
                cache.put("pruning", keys["pruning"], stored["pruning"])
            results.computed += 1
        sweep = SampleSweep.from_dict(stored["sweep"])
        results.baselines.append(sweep.baseline)
        results.records.extend(sweep.records)
        if "answer_probability" in stored:
            results.answer_probs[sample.id] = stored["answer_probability"]["probs"]
        if "logit_lens" in stored:
            results.lens_hits[sample.id] = stored["logit_lens"]["hits"]
        if "pruning" in stored:
            results.pruning.append(PruningSample(**stored["pruning"]))
    return results
