"""Attention pruning (the paper's Table 3): effective pathways vs full attention vs random blocking."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register
from flowcheck.analyses.specs import Contribution, Table
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


def _paper_numbers() -> dict:
    return json.loads(resources.files("flowcheck.specs").joinpath("pathways.json").read_text())["models"]


@register
class Pruning(Analysis):
    """Accuracy with only the effective pathways vs full attention vs as many edges blocked at random (settings:
    ``pathway``, a `PathwaySpec`, default the paper's LLaVA-NeXT-7B spec scaled to the model's depth;
    ``random_mode``); over all samples, as the authors (the paper's Table 3)."""

    name = "pruning"
    title = "Table 3 — effective pathways vs full and random attention"
    summary_type = PruningSummary

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.spec = setup.settings.get("pathway") or scaled_paper_spec(setup.num_layers)
        self.random_mode = setup.settings.get("random_mode", "uniform")

    def parameters(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "spec": [spec.cross_frame, spec.video_to_question, spec.question_to_last],
            "seed": self.setup.plan.seed,
            "random_mode": self.random_mode,
        }

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        pruned = prune_sample(
            decoder,
            encoded,
            self.spec,
            seed=self.setup.plan.seed,
            random_mode=self.random_mode,
            **self.setup.plan.engine,
        )
        return asdict(pruned)

    def load(self, stored: dict[str, Any]) -> PruningSample:
        return PruningSample(**stored)

    def info(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "name": spec.name,
            "cross_frame": spec.cross_frame,
            "video_to_question": spec.video_to_question,
            "question_to_last": spec.question_to_last,
        }

    @classmethod
    def summarise(cls, view: TaskView) -> PruningSummary | None:
        samples = view.of(cls.name)
        return summarise_pruning(samples) if samples else None

    @classmethod
    def gate_numbers(cls, summary: PruningSummary, task: str) -> dict[str, dict[str, float]]:
        if task != "all":
            return {}
        return {
            "accuracy": {
                "pruning/full": summary.full_accuracy,
                "pruning/effective": summary.effective_accuracy,
                "pruning/random": summary.random_accuracy,
            },
            "fraction": {"pruning/kept_fraction": summary.kept_fraction},
        }

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        """Edges and accuracy under full / effective-pathway / random attention, one column per dataset."""
        if not any(run.get("all", cls.name) for run in runs):
            return Contribution()
        datasets = sorted({run.dataset for run in runs})
        by_key = {(run.model, run.dataset): run for run in runs}
        paper = _paper_numbers()
        rows = []
        for model in sorted({run.model for run in runs}):
            mine = [r for r in runs if r.model == model]
            for kind in ("full", "effective", "random"):
                row: list[Any] = [model, mine[0].video_tokens or "", kind]
                edges, accs = None, []
                for dataset in datasets:
                    run = by_key.get((model, dataset))
                    p = run.get("all", cls.name) if run else None
                    if p is None:
                        accs.append("")
                        continue
                    edges = edges or {"full": p.full_edges, "effective": p.effective_edges, "random": p.random_edges}
                    accs.append(f"{getattr(p, f'{kind}_accuracy'):.1f}")
                row.append(f"{edges[kind] / 1e3:.1f}k ({edges[kind] / edges['full']:.2f})" if edges else "")
                row += accs
                reference = paper.get(mine[0].paper_model)
                if reference:
                    e, fraction, tv, to = reference["paper"][kind]
                    row.append(f"{e}M ({fraction:.2f}); TVBench {tv}; TOMATO {to}")
                else:
                    row.append("")
                rows.append(row)
        table = Table(
            cls.title,
            ["model", "video tokens", "attention", "edges (kept)", *datasets, "paper"],
            rows,
            "Edges: causal (query, key) pairs of one head summed over layers, mean per sample; accuracy in %.",
        )
        return Contribution(tables=[table])
