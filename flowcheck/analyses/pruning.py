"""Attention pruning (the paper's Table 3): effective pathways vs full attention vs random blocking.

Which pathways (`Pruning`, in this order): the spec the run gives (the claims registry's ``pathway_layers`` or the
paper's Table 3 spec of the model's ``paper_model``; setting ``pathway``); the paper's LLaVA-NeXT-7B spec scaled
to the model's depth only when asked (setting ``mode="paper-scaled"``, ``--flow-pathway paper-scaled``); otherwise
the pathways discovered from the model's own knockout curves (`flowcheck.analyses.pathways`) on a seeded half of
the samples and validated on the other half (no sample validates the spec it was discovered on). Discovery runs
in every case, so the report can show the model's own ranges beside the ones used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from flowcheck.analyses.base import Analysis, AnalysisUnavailable, ReportInput, Setup, TaskView, analysis, register
from flowcheck.analyses.curves import select_samples
from flowcheck.analyses.pathways import Discovery, discover, discovery_settings, split_samples
from flowcheck.analyses.specs import Contribution, Table, interval_text
from flowcheck.edges import (
    PathwaySpec,
    RouteSpec,
    full_edges,
    matched_random_counts,
    paper_pathways,
    random_blocked_mask,
)
from flowcheck.engine import Decoder, Knockout, score
from flowcheck.models.base import EncodedSample
from flowcheck.stats import bootstrap_ci

PATHWAY_MODES = ("discovered", "paper-scaled")


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


def random_seeds(seed: int, count: int | None = None) -> list[int]:
    """The random control's seeds: `seed`, `seed` + 1, ... (`count` default ``[random_control] seeds``)."""
    count = discovery_settings()["random_control"]["seeds"] if count is None else count
    if count < 1:
        raise ValueError(f"the random control needs at least one seed, got {count}")
    return [seed + i for i in range(count)]


@dataclass
class PruningSample:
    """One sample under full attention, the pathway spec and the random control (one result per seed)."""

    sample_id: str
    full_correct: bool
    effective_correct: bool
    random_correct: list[bool]
    full_edges: int
    effective_edges: int
    random_edges: int
    video: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.random_correct, bool):  # results stored before several seeds
            self.random_correct = [self.random_correct]

    @property
    def random_accuracy(self) -> float:
        """Share of the seeds whose random control answers correctly (0..1)."""
        return sum(self.random_correct) / len(self.random_correct)


def prune_sample(
    decoder: Decoder,
    encoded: EncodedSample,
    spec: RouteSpec | PathwaySpec,
    *,
    seeds: Sequence[int] = (0,),
    random_mode: str = "uniform",
    video: str = "",
    **engine_options,
) -> PruningSample:
    """Score one sample with the spec's masks and with seeded random controls removing as many edges (one forward
    per seed, batched with the spec's). Raises ValueError when the spec's depth is not the model's."""
    layout = encoded.layout
    if spec.num_layers != decoder.num_layers:
        raise ValueError(f"the pathway spec has {spec.num_layers} layers but the model has {decoder.num_layers}")
    plan = dict(enumerate(spec.plan(layout)))
    removed = spec.blocked_per_layer(layout)
    counts = matched_random_counts(removed, random_mode)
    randoms = [
        Knockout(
            f"random:{seed}",
            {
                layer: random_blocked_mask(layout, c, seed=seed, key=encoded.sample_id, layer=layer)
                for layer, c in enumerate(counts)
            },
        )
        for seed in seeds
    ]
    true_id = encoded.true_id
    base, (effective, *random) = score(
        decoder, encoded.inputs, [Knockout("effective", plan), *randoms], [true_id], **engine_options
    )
    full = full_edges(layout.n) * decoder.num_layers
    return PruningSample(
        encoded.sample_id,
        base.argmax == true_id,
        effective.argmax == true_id,
        [r.argmax == true_id for r in random],
        full,
        full - sum(removed),
        full - sum(counts),
        video,
    )


@dataclass
class PruningSummary:
    """Accuracy (%) under each attention type and mean edges per sample (the shape of Table 3), on the samples
    the spec is validated on (`half`: "validation" for a discovered spec, "all" otherwise).

    `random_accuracy` is the mean over the seeds; `random_lo`/`random_hi` its 95% bootstrap CI over samples
    (clustered by video; each sample's accuracy averaged over the seeds); `random_per_seed` one accuracy per seed.
    `spec`: the pathways in the route syntax (layers from 1), `source` where they came from; `discovered`: the
    model's own ranges (`Discovery.to_dict`); `discovery_half`: the same accuracies on the discovery half."""

    n: int
    full_accuracy: float
    effective_accuracy: float
    random_accuracy: float
    full_edges: float
    effective_edges: float
    random_edges: float
    random_lo: float = float("nan")
    random_hi: float = float("nan")
    random_per_seed: list[float] = field(default_factory=list)
    spec: str = ""
    source: str = ""
    half: str = "all"
    discovered: dict = field(default_factory=dict)
    discovery_half: dict = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        return self.effective_edges / self.full_edges

    def to_dict(self) -> dict:
        return {**self.__dict__, "kept_fraction": self.kept_fraction}


def summarise_pruning(samples: Sequence[PruningSample], *, seed: int = 0, n_boot: int = 1000) -> PruningSummary:
    """Accuracies over all `samples` (no correctness filter, as the authors) and mean edges per sample. Raises
    ValueError for no samples."""
    if not samples:
        raise ValueError("no samples")
    n = len(samples)

    def pct(attr: str) -> float:
        return 100 * sum(getattr(s, attr) for s in samples) / n

    def mean(attr: str) -> float:
        return sum(getattr(s, attr) for s in samples) / n

    seeds = min(len(s.random_correct) for s in samples)
    per_sample = [100 * s.random_accuracy for s in samples]
    lo, hi = bootstrap_ci(per_sample, clusters=[s.video or s.sample_id for s in samples], seed=seed, n_boot=n_boot)
    return PruningSummary(
        n,
        pct("full_correct"),
        pct("effective_correct"),
        sum(per_sample) / n,
        mean("full_edges"),
        mean("effective_edges"),
        mean("random_edges"),
        lo,
        hi,
        [100 * sum(s.random_correct[i] for s in samples) / n for i in range(seeds)],
    )


def _video_label(video: Any) -> str:
    """``<folder>/<file>`` of a sample's video: the cluster of the random control's bootstrap (questions about one
    video resample together), portable across machines."""
    path = Path(str(video))
    return f"{path.parent.name}/{path.name}"


def _paper_numbers() -> dict:
    return json.loads(resources.files("flowcheck.specs").joinpath("pathways.json").read_text())["models"]


@register
class Pruning(Analysis):
    """Accuracy with only the effective pathways vs full attention vs as many edges blocked at random (the paper's
    Table 3), over all samples the spec is validated on.

    Settings: ``pathway`` (a `RouteSpec` or `PathwaySpec` to use; None: see ``mode``), ``pathway_source`` (its
    label, e.g. "registry"), ``mode`` ("discovered", the default, or "paper-scaled"), ``random_mode``,
    ``random_seeds`` (default ``[random_control] seeds``), ``window`` (the sweep's window width, for discovery)."""

    name = "pruning"
    title = "Table 3 — effective pathways vs full and random attention"
    summary_type = PruningSummary

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        settings = setup.settings
        mode = settings.get("mode") or "discovered"
        if mode not in PATHWAY_MODES:
            raise ValueError(f"unknown pathway mode {mode!r}; use one of {', '.join(PATHWAY_MODES)}")
        given = settings.get("pathway")
        if given is not None:
            self.source = settings.get("pathway_source") or "given"
        elif mode == "paper-scaled":
            given, self.source = scaled_paper_spec(setup.num_layers), "paper-scaled"
        else:
            self.source = "discovered"
        self.spec: RouteSpec | None = given.routes() if isinstance(given, PathwaySpec) else given
        self.random_mode = settings.get("random_mode", "uniform")
        self.seeds = random_seeds(setup.plan.seed, settings.get("random_seeds"))
        self.discovery: Discovery | None = None
        self.discovery_ids: list[str] = []
        self.problem = ""

    def needs_results(self) -> bool:
        return True

    def prepare(self, results) -> None:
        """Discover the pathways on the seeded discovery half from the sweep's curves (`KnockoutSweep.summarise`)."""
        sweep = results.results.get("sweep")
        discovery_ids, _ = split_samples(((b.sample_id, b.task) for b in results.baselines), self.setup.plan.seed)
        if sweep:
            chosen_ids = set(discovery_ids)
            baselines = [b for b in results.baselines if b.sample_id in chosen_ids]
            selection = self.setup.plan.selection
            view = TaskView(
                results.model,
                results.dataset,
                "all",
                results.num_layers,
                baselines,
                select_samples(baselines, selection),
                results.results,
                results.info,
                selection=selection,
                seed=self.setup.plan.seed,
                videos=results.videos,
                resampling=self.setup.plan.resampling,
            )
            curves = analysis("sweep").summarise(view).curves
            self.discovery = discover(curves, results.num_layers, window=self.setup.settings.get("window"))
        else:
            self.problem = results.problems.get("sweep") or "the knockout sweep did not run"
        if self.spec is None:
            if self.discovery is None:
                raise AnalysisUnavailable(f"pathway discovery needs the knockout sweep's curves: {self.problem}")
            self.spec = self.discovery.spec
            self.discovery_ids = sorted(discovery_ids)

    def parameters(self) -> dict[str, Any]:
        return {"spec": self.spec.text(), "mode": self.spec.mode, "seeds": self.seeds, "random_mode": self.random_mode}

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        pruned = prune_sample(
            decoder,
            encoded,
            self.spec,
            seeds=self.seeds,
            random_mode=self.random_mode,
            video=_video_label(sample.video),
            **self.setup.plan.engine,
        )
        return asdict(pruned)

    def load(self, stored: dict[str, Any]) -> PruningSample:
        return PruningSample(**stored)

    def info(self) -> dict[str, Any]:
        return {
            "spec": self.spec.text() if self.spec else "",
            "source": self.source,
            "layer_index_base": 1,
            "discovered": self.discovery.to_dict() if self.discovery else {},
            "discovery_samples": self.discovery_ids,
            "random_seeds": self.seeds,
        }

    @classmethod
    def summarise(cls, view: TaskView) -> PruningSummary | None:
        info: Mapping[str, Any] = view.info.get(cls.name, {})
        held_out = set(info.get("discovery_samples", []))
        samples = view.of(cls.name)
        validation = [s for s in samples if s.sample_id not in held_out]
        if not validation:
            return None
        summary = summarise_pruning(validation, seed=view.seed, n_boot=view.n_boot)
        summary.spec, summary.source = info.get("spec", ""), info.get("source", "")
        summary.discovered = dict(info.get("discovered", {}))
        summary.half = "validation" if held_out else "all"
        discovery = [s for s in samples if s.sample_id in held_out]
        if discovery:
            d = summarise_pruning(discovery, seed=view.seed, n_boot=view.n_boot)
            summary.discovery_half = {
                "n": d.n,
                "full_accuracy": d.full_accuracy,
                "effective_accuracy": d.effective_accuracy,
                "random_accuracy": d.random_accuracy,
                "kept_fraction": d.kept_fraction,
            }
        return summary

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
        """Edges and accuracy under full / effective-pathway / random attention, one column per dataset; which
        spec each row used and, for the paper's models, the discovered ranges beside the paper's."""
        if not any(run.get("all", cls.name) for run in runs):
            return Contribution()
        datasets = sorted({run.dataset for run in runs})
        by_key = {(run.model, run.dataset): run for run in runs}
        paper = _paper_numbers()
        rows, spec_rows = [], []
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
                    accs.append(_accuracy_cell(p, kind))
                row.append(f"{edges[kind] / 1e3:.1f}k ({edges[kind] / edges['full']:.2f})" if edges else "")
                row += accs
                reference = paper.get(mine[0].paper_model)
                if reference:
                    e, fraction, tv, to = reference["paper"][kind]
                    row.append(f"{e}M ({fraction:.2f}); TVBench {tv}; TOMATO {to}")
                else:
                    row.append("")
                rows.append(row)
            for run in mine:
                p = run.get("all", cls.name)
                if p is not None:
                    spec_rows.append(_spec_row(run, p, paper.get(run.paper_model)))
        table = Table(
            cls.title,
            ["model", "video tokens", "attention", "edges (kept)", *datasets, "paper"],
            rows,
            "Edges: causal (query, key) pairs of one head summed over layers, mean per sample; accuracy in % on the "
            "samples the spec is validated on (the held-out half for discovered pathways); random: mean over the "
            "seeds [95% bootstrap CI over samples, clustered by video].",
        )
        specs = Table(
            "Table 3 — pathway spec of each row",
            ["model", "dataset", "spec used (layers from 1)", "source", "samples", "discovered ranges", "paper ranges"],
            spec_rows,
            "Spec syntax: route@first-last (keep-only: a listed route is removed outside its range; @none: removed in "
            "every layer). Discovered: from the model's own knockout curves on the discovery half "
            "(flowcheck/specs/pathway_discovery.toml); discovery-half accuracies in brackets. A route whose curve "
            "never reaches the discovery threshold gets no range and is removed in every layer, as in the paper's "
            "protocol; `flowcheck pathways --model M` lists each route's curve minimum.",
        )
        return Contribution(tables=[table, specs])


def _accuracy_cell(p: PruningSummary, kind: str) -> str:
    value = getattr(p, f"{kind}_accuracy")
    if kind == "random" and p.random_per_seed:
        return f"{value:.1f} {interval_text(p.random_lo, p.random_hi, '.1f')}"
    if kind == "effective" and p.random_per_seed and value < p.random_lo:
        # keeping these pathways hurts more than removing as many edges at random: a route the spec removes (in
        # every layer for @none) carries the answer for this model
        return f"{value:.1f} (below the random control: a removed route carries the answer)"
    return f"{value:.1f}"


def _ranges(routes: Mapping[str, Any]) -> str:
    shown = []
    for route, found in routes.items():
        layers = found.get("layers")
        shown.append(f"{route}@{layers[0]}-{layers[1]}" if layers else f"{route}@none")
    return ", ".join(shown)


def _spec_row(run: ReportInput, p: PruningSummary, reference: Mapping[str, Any] | None) -> list[Any]:
    samples = f"{p.n} ({p.half})"
    if p.discovery_half:
        d = p.discovery_half
        samples += (
            f" [discovery n={d['n']}: full {d['full_accuracy']:.1f}, effective {d['effective_accuracy']:.1f}, "
            f"random {d['random_accuracy']:.1f}]"
        )
    paper_ranges = ""
    if reference:
        spec = PathwaySpec.from_dict(reference).routes()
        paper_ranges = spec.text()
    return [run.model, run.dataset, p.spec, p.source, samples, _ranges(p.discovered.get("routes", {})), paper_ranges]
