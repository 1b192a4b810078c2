"""Video-language alignment needs cross-frame attention (the paper's "video-language alignment enables selective
spatiotemporal propagation"): logit-lens keyword hits in the video tokens, unblocked and with cross-frame attention
blocked in the first half of the layers.

Per sample: per keyword list (spatial, temporal) and layer, how many video positions read as one of its keywords
(top-1 logit lens, as `flowcheck.analyses.logit_lens`), for both forwards. Summarised over the correctly answered
samples: the relative drop of each list's hits (summed over layers), and the paired comparison of the temporal
drop with the spatial change per sample (`flowcheck.stats.paired_bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flowcheck.analyses.base import Analysis, ReportInput, Setup, TaskView, register
from flowcheck.analyses.logit_lens import list_hits, setup_keywords, video_top1
from flowcheck.analyses.specs import Contribution, Table, interval_text
from flowcheck.edges import parse_layer_range, resolve_conditions
from flowcheck.engine.knockout import knockout_plan
from flowcheck.engine.scoring import as_spec, condition_knockout
from flowcheck.stats import paired_bootstrap_ci

BASELINE = "baseline"
TEMPORAL, SPATIAL = "temporal", "spatial"


def relative_drop(base: float, knocked: float) -> float:
    """(base - knocked) / base x 100: the share of hits lost, in % (negative: hits gained); NaN without hits."""
    return (base - knocked) / base * 100.0 if base else float("nan")


@register
class LensAlignment(Analysis):
    """Keyword hits of the video tokens with and without cross-frame attention (settings: ``keywords``, default the
    logit lens's, with a ``spatial`` and a ``temporal`` list; ``knockout_layers``, default ``first_half``;
    ``unembedding``, ``norm`` as the logit lens)."""

    name = "lens_alignment"
    title = "Alignment needs cross-frame attention (logit-lens hits under cross-frame knockout)"

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        lens = setup.plan.setting("logit_lens")
        self.keywords = setup_keywords(setup)
        self.unembedding = setup.settings.get("unembedding", lens.get("unembedding", "input"))
        self.norm = bool(setup.settings.get("norm", lens.get("norm", False)))
        window = parse_layer_range(setup.settings.get("knockout_layers", "first_half"), setup.num_layers)
        self.window = window
        (self.condition,) = resolve_conditions(["cross_frame"])

    def parameters(self) -> dict[str, Any]:
        return {
            "keywords": self.keywords.token_ids,
            "unembedding": self.unembedding,
            "norm": self.norm,
            "knockout_layers": list(self.window.layers),
        }

    def info(self) -> dict[str, Any]:
        return {"knockout_layers": list(self.window.layers), "condition": self.condition.name}

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        knockout = condition_knockout(self.condition, self.window, encoded.layout)
        base = video_top1(decoder, encoded, self.unembedding, self.norm)
        with knockout_plan(decoder, {layer: as_spec(spec) for layer, spec in knockout.plan.items()}):
            knocked = video_top1(decoder, encoded, self.unembedding, self.norm)
        return {
            "hits": {BASELINE: list_hits(base, self.keywords), self.condition.name: list_hits(knocked, self.keywords)}
        }

    @classmethod
    def summarise(cls, view: TaskView) -> dict[str, Any] | None:
        results = view.of(cls.name, chosen_only=True)
        if not results:
            return None
        label = next(k for k in results[0]["hits"] if k != BASELINE)
        totals = {
            k: {name: int(sum(sum(r["hits"][k][name]) for r in results)) for name in results[0]["hits"][k]}
            for k in (BASELINE, label)
        }
        change = {name: -relative_drop(totals[BASELINE][name], totals[label][name]) for name in totals[BASELINE]}
        summary: dict[str, Any] = {"n": len(results), "condition": label, "hits": totals, "change_pct": change}
        info = view.info.get(cls.name, {})
        summary["knockout_layers"] = info.get("knockout_layers", [])
        if TEMPORAL not in totals[BASELINE] or SPATIAL not in totals[BASELINE]:
            return {**summary, "n_paired": 0}
        temporal, spatial = [], []
        for r in results:
            t0, t1 = sum(r["hits"][BASELINE][TEMPORAL]), sum(r["hits"][label][TEMPORAL])
            s0, s1 = sum(r["hits"][BASELINE][SPATIAL]), sum(r["hits"][label][SPATIAL])
            if t0 and s0:  # a relative change needs hits to change from
                temporal.append(relative_drop(t0, t1))
                spatial.append(abs(relative_drop(s0, s1)))
        gap, low, high = paired_bootstrap_ci(temporal, spatial, seed=view.seed, n_boot=view.n_boot)
        return {
            **summary,
            "n_paired": len(temporal),
            "temporal_drop_pct": float(np.mean(temporal)) if temporal else float("nan"),
            "spatial_abs_change_pct": float(np.mean(spatial)) if spatial else float("nan"),
            "gap_pct": gap,
            "gap_low": low,
            "gap_high": high,
        }

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        rows = []
        for run in runs:
            for task in [*run.tasks(), "all"]:
                s = run.get(task, cls.name)
                if not s:
                    continue
                base, knocked = s["hits"][BASELINE], s["hits"][s["condition"]]
                rows.append(
                    [
                        run.model,
                        run.dataset,
                        task,
                        *(_hits(base.get(k, 0), knocked.get(k, 0)) for k in (TEMPORAL, SPATIAL)),
                        _num(s.get("temporal_drop_pct")),
                        _num(s.get("spatial_abs_change_pct")),
                        f"{_num(s.get('gap_pct'))} "
                        + interval_text(s.get("gap_low", np.nan), s.get("gap_high", np.nan), ".1f")
                        if s.get("n_paired")
                        else "",
                        f"{s.get('n_paired', 0)}/{s['n']}",
                    ]
                )
        if not rows:
            return Contribution()
        return Contribution(
            tables=[
                Table(
                    cls.title,
                    [
                        "model",
                        "dataset",
                        "task",
                        "temporal hits (base -> blocked)",
                        "spatial hits (base -> blocked)",
                        "temporal drop per sample (%)",
                        "|spatial change| per sample (%)",
                        "gap (points) [95% CI]",
                        "paired / n",
                    ],
                    rows,
                    "Video positions whose top-1 logit-lens token is a keyword, summed over layers and correctly "
                    "answered samples, unblocked -> with cross-frame attention blocked in the first half of the "
                    "layers. Per sample (samples with hits of both lists): the temporal drop and the absolute spatial "
                    "change in %; gap = temporal drop - |spatial change|, paired bootstrap over samples.",
                )
            ]
        )


def _hits(base: int, knocked: int) -> str:
    change = relative_drop(base, knocked)
    return f"{base} -> {knocked}" + ("" if np.isnan(change) else f" ({-change:+.1f}%)")


def _num(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.1f}"
