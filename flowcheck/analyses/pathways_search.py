"""The minimal-pathway search on a model: validation accuracy of candidate keep-only specs, cached per sample.

`flowcheck.analyses.pathways.minimal_pathways` is the greedy algorithm on an accuracy function; this module gives it
the model's accuracy on the validation samples: one knockout forward per sample and candidate spec, each stored in
the result cache (kind ``pathway_search``, keyed by the model identity, the sample's fingerprint and the spec text),
so a repeated or resumed search spends no forward on a spec it has scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowcheck.analyses.pathways import MinimalPathways, discovery_settings, minimal_pathways
from flowcheck.analyses.runner import result_identity, sample_fingerprint
from flowcheck.cache import ResultCache, cache_key
from flowcheck.data.frames import FrameCache, FrameRequest
from flowcheck.data.sample import Sample
from flowcheck.edges import RouteSpec
from flowcheck.engine import Knockout, score
from flowcheck.models.handle import ModelHandle
from flowcheck.progress import NullProgress, ProgressSink

CACHE_KIND = "pathway_search"


class SpecScorer:
    """Validation accuracy (%) of keep-only specs on `samples` for one model, cached per (sample, spec).

    `forwards` counts the knockout forwards actually run (cache hits cost none). Encoded samples are kept in
    memory once computed."""

    def __init__(
        self,
        model: ModelHandle,
        samples: Sequence[Sample],
        cache: ResultCache,
        *,
        engine: Mapping[str, Any] | None = None,
        frame_cache: FrameCache | None = None,
    ) -> None:
        self.model, self.samples, self.cache = model, list(samples), cache
        self.engine = dict(engine or {})
        self.frames = frame_cache or FrameCache(max_items=8)
        self.identity = result_identity(model)
        self.fingerprints = {s.id: sample_fingerprint(s) for s in self.samples}
        self._encoded: dict[str, Any] = {}
        self.forwards = 0

    def _encode(self, sample: Sample):
        if sample.id not in self._encoded:
            frames = self.frames.get(FrameRequest.of(sample, self.model.num_frames))
            self._encoded[sample.id] = self.model.adapter.encode(sample, frames)
        return self._encoded[sample.id]

    def correct(self, sample: Sample, spec: RouteSpec) -> tuple[bool, bool]:
        """(full attention correct, spec correct) for one sample."""
        key = cache_key(
            {**self.identity, "sample": self.fingerprints[sample.id], "spec": spec.text(), "mode": spec.mode}
        )
        stored = self.cache.get(CACHE_KIND, key)
        if stored is None:
            encoded = self._encode(sample)
            plan = dict(enumerate(spec.plan(encoded.layout)))
            base, (pruned,) = score(
                self.model.adapter.decoder, encoded.inputs, [Knockout("spec", plan)], [encoded.true_id], **self.engine
            )
            self.forwards += 1
            stored = {"full": base.argmax == encoded.true_id, "spec": pruned.argmax == encoded.true_id}
            self.cache.put(CACHE_KIND, key, stored)
        return bool(stored["full"]), bool(stored["spec"])

    def accuracy(self, spec: RouteSpec) -> float:
        """Accuracy (%) with only `spec`'s pathways on the samples."""
        return 100 * sum(self.correct(s, spec)[1] for s in self.samples) / len(self.samples)

    def full_accuracy(self, spec: RouteSpec) -> float:
        """Accuracy (%) with full attention (read from the same scores as `spec`'s)."""
        return 100 * sum(self.correct(s, spec)[0] for s in self.samples) / len(self.samples)


def search_minimal(
    model: ModelHandle,
    samples: Sequence[Sample],
    start: RouteSpec,
    cache: ResultCache,
    *,
    max_loss_points: float,
    max_forwards: int | None = None,
    engine: Mapping[str, Any] | None = None,
    progress: ProgressSink | None = None,
    frame_cache: FrameCache | None = None,
) -> MinimalPathways:
    """The greedy minimal-pathway search (`minimal_pathways`) from `start` on the validation `samples`.

    `max_forwards` (default ``[minimal] max_forwards``) bounds the knockout forwards (one per sample and candidate);
    the progress shows candidates scored. Kept fractions are measured on the first sample's layout. Raises
    ValueError for no samples."""
    if not samples:
        raise ValueError("the minimal-pathway search needs validation samples; none were given")
    budget = discovery_settings()["minimal"]["max_forwards"] if max_forwards is None else max_forwards
    scorer = SpecScorer(model, samples, cache, engine=engine, frame_cache=frame_cache)
    layout = scorer._encode(samples[0]).layout
    sink = progress or NullProgress()
    candidates = max(1, budget // len(samples))
    sink.start(f"{model.name}: minimal pathways (candidate specs)", candidates)
    counts = {"computed": 0, "cached": 0}

    def accuracy(spec: RouteSpec) -> float:
        before = scorer.forwards
        value = scorer.accuracy(spec)
        counts["computed" if scorer.forwards > before else "cached"] += 1
        done = counts["computed"] + counts["cached"]
        sink.update(min(done, candidates), counts["computed"], counts["cached"], 0)
        return value

    try:
        full = scorer.full_accuracy(start)
        return minimal_pathways(
            start,
            accuracy,
            lambda spec: spec.kept_edges(layout).kept_fraction,
            full_accuracy=full,
            max_loss_points=max_loss_points,
            forwards_per_spec=len(samples),
            max_forwards=budget,
        )
    finally:
        sink.finish()
