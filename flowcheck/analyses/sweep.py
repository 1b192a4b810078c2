"""Sweep one encoded sample: its baseline and every requested condition x window."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register, resampling_text
from flowcheck.analyses.curves import Curve, knockout_curves
from flowcheck.analyses.records import Baseline, KnockoutRecord, SampleSweep
from flowcheck.analyses.specs import IMAGE_MODEL_COLOUR, Contribution, Figure, Panel, Series, condition_series
from flowcheck.edges import (
    Condition,
    Window,
    check_layout_for,
    condition_groups,
    paper_conditions,
    resolve_conditions,
    sweep_windows,
)
from flowcheck.engine import Decoder, Knockout, condition_knockout, last_logits, score
from flowcheck.models.base import EncodedSample


def baseline_of(decoder: Decoder, encoded: EncodedSample, task: str, dataset: str) -> Baseline:
    """The unblocked prediction (one forward)."""
    probs = torch.softmax(last_logits(decoder, encoded.inputs)[0].float(), dim=-1)
    top = int(probs.argmax())
    return Baseline(
        sample_id=encoded.sample_id,
        task=task,
        dataset=dataset,
        true_index=encoded.layout.true_index,
        option_ids=list(encoded.option_ids),
        option_probs=[float(probs[i]) for i in encoded.option_ids],
        argmax=top,
        argmax_prob=float(probs[top]),
        layout=encoded.layout.to_dict(),
    )


def sweep_sample(
    decoder: Decoder,
    encoded: EncodedSample,
    pairs: Sequence[tuple[Condition, Window]],
    *,
    task: str,
    dataset: str,
    progress: Callable[[int], None] | None = None,
    **engine_options,
) -> SampleSweep:
    """Baseline plus one record per (condition, window) pair for one sample."""
    base = baseline_of(decoder, encoded, task, dataset)
    for condition in {c.name: c for c, _ in pairs}.values():
        check_layout_for(condition, encoded.layout)
    knockouts: list[Knockout] = [condition_knockout(c, w, encoded.layout) for c, w in pairs]
    watch = [base.argmax, *encoded.option_ids]
    _, scored = score(decoder, encoded.inputs, knockouts, watch, progress=progress, **engine_options)
    records = [
        KnockoutRecord(
            sample_id=encoded.sample_id,
            condition=c.name,
            group=c.group,
            window_center=w.center,
            window_style=w.style,
            layers=list(w.layers),
            p_base=base.argmax_prob,
            p_new=float(s.probs[0]),
            new_argmax=s.argmax,
            new_option_probs=[float(p) for p in s.probs[1:]],
        )
        for (c, w), s in zip(pairs, scored, strict=True)
    ]
    return SampleSweep(base, records)


@dataclass
class Curves:
    """The sweep's summary: one curve per condition (`Curve`; the paper's Figs. 2 and 3).

    `curves`: relative change (%), always computed: the paper's metric, the one the claims are written in (their
    thresholds are in %), so the claims read these whatever `metric` is. `margin`: the change of the forced-choice
    margin (nats), computed when the run selects it (``--flow-curve-metric margin``). `metric`: which of the two the
    figures and the gate show (`shown`)."""

    curves: dict[str, Curve]
    margin: dict[str, Curve] = field(default_factory=dict)
    metric: str = "relative_change"

    def shown(self) -> dict[str, Curve]:
        """The curves of the selected metric (what figures draw and the gate compares)."""
        return self.margin if self.metric == "margin" else self.curves

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "curves": {name: curve.to_dict() for name, curve in self.curves.items()},
            "margin": {name: curve.to_dict() for name, curve in self.margin.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Curves:
        """Inverse of `to_dict`; a record written before the margin metric (``{condition: curve}``) reads as its
        relative-change curves."""
        nested = isinstance(data.get("curves"), Mapping) and "centers" not in data["curves"]
        if not nested:
            return cls(_curves(data))
        return cls(_curves(data["curves"]), _curves(data.get("margin", {})), data.get("metric", "relative_change"))


def _curves(data: Mapping[str, Any]) -> dict[str, Curve]:
    fields = Curve.__dataclass_fields__
    return {name: Curve(**{k: v for k, v in c.items() if k in fields}) for name, c in data.items()}


def curve_caption(curves: Sequence[Curve]) -> str:
    """What a knockout figure's curves `[>= 1]` are: metric, unit, interval and how it resampled (from the curves'
    own record), and the samples a margin curve left out."""
    first = curves[0]
    ci = "; ".join(sorted({resampling_text(c.resampling) for c in curves}))
    excluded = sum(c.excluded for c in curves)
    if first.metric == "margin":
        text = (
            "Mean change of the forced-choice margin log p(true) - max log p(false) over the option letters, "
            f"knockout minus baseline, in nats ({ci})"
        )
        if excluded:
            text += f"; {excluded} samples left out of a curve (an option letter's probability underflowed to 0)"
        return text
    return f"Mean relative change of the predicted letter's probability ({ci})"


def curve_options(curves: Sequence[Curve], num_layers: int) -> dict[str, Any]:
    """The drawing options of a knockout figure (the y label names the metric's unit)."""
    options: dict[str, Any] = {"num_layers": num_layers}
    if curves and curves[0].metric == "margin":
        options["ylabel"] = "Change in margin (nats)"
    return options


FIGURE_GROUPS = (
    ("vql-to-ql", "Video -> Question -> Last (Fig. 3)", "fig3-route"),
    ("question-and-options-to-last", "Question and options -> Last", "fig3b-options"),
    ("vq-to-true-opt", "Video and question -> true option", "fig3c-true-option"),
)


def _x(centers: Sequence[int]) -> list[int]:
    return [c + 1 for c in centers]  # layers counted from 1, as the paper plots window centres


def _title(task: str) -> str:
    return task.replace("_", " ").title()


def _note(curve: Curve) -> str:
    """A panel's sample count: ``n=12`` or, when videos were counted, ``n=12, 6 videos``."""
    return f"n={curve.n}, {curve.videos} videos" if curve.videos else f"n={curve.n}"


@register
class KnockoutSweep(Analysis):
    """Attention knockout per condition x window (settings: ``conditions``, ``window``, ``window_style``); computes
    every registered analysis's knockouts in one batched pass per sample and gives each sample's baseline."""

    name = "sweep"
    title = "Attention knockout (Figs. 2 and 3)"
    summary_type = Curves
    provides_baseline = True

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        settings = setup.settings
        conditions = resolve_conditions(settings.get("conditions", tuple(paper_conditions())))
        windows = sweep_windows(setup.num_layers, settings.get("window"), settings.get("window_style", "center"))
        self.pairs = [(c, w) for c in conditions for w in windows]

    def knockouts(self) -> list[tuple[Condition, Window]]:
        return self.pairs

    def parameters(self) -> dict[str, Any]:
        return {"pairs": [(c.name, str(c.blocks), w.style, w.layers) for c, w in self.setup.knockouts]}

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        pairs = self.setup.knockouts
        swept = sweep_sample(
            decoder, encoded, pairs, task=sample.task, dataset=self.setup.dataset, **self.setup.plan.engine
        )
        return swept.to_dict()

    def load(self, stored: dict[str, Any]) -> SampleSweep:
        return SampleSweep.from_dict(stored)

    def baseline(self, result: SampleSweep) -> Baseline:
        return result.baseline

    @classmethod
    def summarise(cls, view: TaskView) -> Curves:
        records = [r for sweep in view.of(cls.name) for r in sweep.records]
        options = {"selection": view.selection, "clusters": view.clusters(), "seed": view.seed, "n_boot": view.n_boot}
        curves = knockout_curves(view.baselines, records, metric="relative_change", **options)
        if view.curve_metric == "relative_change":
            return Curves(curves)
        return Curves(curves, knockout_curves(view.baselines, records, metric=view.curve_metric, **options), "margin")

    @classmethod
    def summary_from_dict(cls, data: Mapping[str, Any]) -> Curves:
        return Curves.from_dict(data)

    @classmethod
    def gate_numbers(cls, summary: Curves, task: str) -> dict[str, dict[str, float]]:
        """Per condition, the minimum and the window centre of the minimum (from 1) of the curves of the selected
        metric: ``change_pct`` and ``layer`` ``<condition>/argmin`` for relative change; ``margin_nats`` and
        ``layer`` ``<condition>/margin_argmin`` for the margin."""
        if task == "all":
            return {}
        margin = summary.metric == "margin"
        value_kind, argmin_name = ("margin_nats", "margin_argmin") if margin else ("change_pct", "argmin")
        out: dict[str, dict[str, float]] = {value_kind: {}, "layer": {}}
        for condition, curve in sorted(summary.shown().items()):
            out[value_kind][f"{condition}/minimum"] = curve.minimum
            out["layer"][f"{condition}/{argmin_name}"] = curve.argmin + 1
        return out

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        out = Contribution()
        groups = condition_groups()
        labels = {name: c.label for name, c in paper_conditions().items()}
        for run in runs:
            tasks = run.temporal_tasks or run.tasks()
            whose = f"{run.model} on {run.dataset}"
            stem = run.file_stem()
            panels, shown = [], []
            for task in tasks:
                sweep = run.get(task, cls.name)
                curve = sweep.shown().get("cross_frame") if sweep else None
                panel = Panel(_title(task), note=_note(curve) if curve else "")
                if curve:
                    shown.append(curve)
                    panel.series.append(
                        condition_series("cross_frame", run.model, _x(curve.centers), curve.mean, curve.lo, curve.hi)
                    )
                image = run.image.get(task, cls.name) if run.image else None
                if image and "cross_frame" in image.shown():
                    c = image.shown()["cross_frame"]
                    shown.append(c)
                    panel.series.append(
                        Series(
                            f"{run.image.model} (image model)", _x(c.centers), c.mean, c.lo, c.hi, IMAGE_MODEL_COLOUR
                        )
                    )
                panels.append(panel)
            if any(p.series for p in panels):
                out.figures.append(
                    Figure(
                        "Cross-frame knockout (Fig. 2)",
                        f"fig2-cross-frame-{stem}.png",
                        f"{curve_caption(shown)}, window centred at each layer, correctly answered samples.",
                        whose,
                        panels,
                        suptitle=f"Fig. 2 — No cross-frame interactions: {whose}",
                        options=curve_options(shown, run.num_layers),
                    )
                )
            else:
                out.missing.append(
                    f"Fig. 2 for {whose}: no cross-frame curve (no correctly answered sample in "
                    f"{', '.join(tasks) or 'any task'})"
                )
            for group, title, tag in FIGURE_GROUPS:
                panels, shown = [], []
                for task in tasks:
                    sweep = run.get(task, cls.name)
                    panel = Panel(_title(task))
                    for condition in groups.get(group, []):
                        curve = sweep.shown().get(condition) if sweep else None
                        if curve:
                            shown.append(curve)
                            panel.series.append(
                                condition_series(
                                    condition, labels[condition], _x(curve.centers), curve.mean, curve.lo, curve.hi
                                )
                            )
                    panels.append(panel)
                if any(p.series for p in panels):
                    out.figures.append(
                        Figure(
                            title,
                            f"{tag}-{stem}.png",
                            f"{curve_caption(shown)} per blocked pathway, correctly answered samples.",
                            whose,
                            panels,
                            suptitle=f"{title}: {whose}",
                            options=curve_options(shown, run.num_layers),
                        )
                    )
        return out
