"""Attention pruning (the paper's Table 3): effective pathways vs full attention vs random blocking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flowcheck.edges import PathwaySpec, full_edges, matched_random_counts, paper_pathways, random_blocked_mask
from flowcheck.engine import Decoder, Knockout, score
from flowcheck.models.base import EncodedSample


def scaled_paper_spec(num_layers: int, reference: str = "LLaVA-NeXT-7B-Video-FT") -> PathwaySpec:
    """A pathway spec for a model without its own: the reference model's layer ranges scaled to `num_layers`.

    A range [a, b] of an L-layer model becomes [round(a * n / L), round((b + 1) * n / L) - 1].
    """
    ref = paper_pathways()[reference]

    def scale(r: tuple[int, int]) -> tuple[int, int]:
        a = round(r[0] * num_layers / ref.num_layers)
        b = max(a, round((r[1] + 1) * num_layers / ref.num_layers) - 1)
        return a, min(b, num_layers - 1)

    return PathwaySpec(
        num_layers,
        scale(ref.cross_frame),
        scale(ref.video_to_question),
        scale(ref.question_to_last),
        name=f"{reference} scaled to {num_layers} layers",
    )


@dataclass
class PruningSample:
    """One sample under full, effective-pathway and random attention: correctness and edge counts."""

    sample_id: str
    full_correct: bool
    effective_correct: bool
    random_correct: bool
    full_edges: int
    effective_edges: int
    random_edges: int


def prune_sample(
    decoder: Decoder,
    encoded: EncodedSample,
    spec: PathwaySpec,
    *,
    seed: int,
    random_mode: str = "uniform",
    **engine_options,
) -> PruningSample:
    """Score one sample with the effective-pathway masks and with a seeded random control of as many edges."""
    layout = encoded.layout
    if spec.num_layers != decoder.num_layers:
        raise ValueError(f"the pathway spec has {spec.num_layers} layers but the model has {decoder.num_layers}")
    plan = {layer: rects for layer, rects in enumerate(spec.plan(layout))}
    removed = spec.blocked_per_layer(layout)
    counts = matched_random_counts(removed, random_mode)
    random_plan = {
        layer: random_blocked_mask(layout, c, seed=seed, key=encoded.sample_id, layer=layer)
        for layer, c in enumerate(counts)
    }
    true_id = encoded.true_id
    base, (effective, random) = score(
        decoder,
        encoded.inputs,
        [Knockout("effective", plan), Knockout("random", random_plan)],
        [true_id],
        **engine_options,
    )
    full = full_edges(layout.n) * decoder.num_layers
    return PruningSample(
        encoded.sample_id,
        base.argmax == true_id,
        effective.argmax == true_id,
        random.argmax == true_id,
        full,
        full - sum(removed),
        full - sum(counts),
    )


@dataclass
class PruningSummary:
    """Accuracy (%) under each attention type and mean edges (the shape of Table 3)."""

    n: int
    full_accuracy: float
    effective_accuracy: float
    random_accuracy: float
    full_edges: float
    effective_edges: float
    random_edges: float

    @property
    def kept_fraction(self) -> float:
        return self.effective_edges / self.full_edges

    def to_dict(self) -> dict:
        return {**self.__dict__, "kept_fraction": self.kept_fraction}


def summarise_pruning(samples: Sequence[PruningSample]) -> PruningSummary:
    """Accuracies over all samples (no correctness filter, as the authors) and mean edges per sample."""
    if not samples:
        raise ValueError("no samples")
    n = len(samples)

    def pct(attr: str) -> float:
        return 100 * sum(getattr(s, attr) for s in samples) / n

    def mean(attr: str) -> float:
        return sum(getattr(s, attr) for s in samples) / n

    return PruningSummary(
        n,
        pct("full_correct"),
        pct("effective_correct"),
        pct("random_correct"),
        mean("full_edges"),
        mean("effective_edges"),
        mean("random_edges"),
    )
