"""Layer-wise answer probability at the last position (the paper's Fig. 9)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flowcheck.analyses.base import Analysis, ReportInput, TaskView, register, resampling_text
from flowcheck.analyses.hidden import last_position_states, readout_logits
from flowcheck.analyses.specs import SET1, TRUE_OPTION_COLOUR, Contribution, Figure, Panel, Series
from flowcheck.engine import Decoder
from flowcheck.models.base import EncodedSample
from flowcheck.stats import bootstrap_ci


@torch.inference_mode()
def answer_probability(
    decoder: Decoder, encoded: EncodedSample, final_norm: bool = False, reuse: bool = False
) -> list[list[float]]:
    """[L][options]: softmax (full vocabulary) of lm_head on each layer's output at the last position.

    `final_norm=False` is the authors' default for LLaVA (the last layer is normed either way, as
    in transformers' hidden states); VideoLLaMA3's script used True. `reuse`: share the sample's forward with the
    other analyses of the runner's loop (`last_position_states`).
    """
    states = last_position_states(decoder, encoded.inputs, reuse)
    probs = torch.softmax(readout_logits(decoder, states, final_norm), dim=-1)
    return [[float(p[i]) for i in encoded.option_ids] for p in probs]


@dataclass
class ProbabilityCurves:
    """Mean (over samples) probability in % per layer of the true option and of the best false option.

    `true_lo`/`true_hi` and `false_max_lo`/`false_max_hi` `[L]`: 95% bootstrap intervals (%) of `true_mean` and
    `false_max_mean`, resampled as `resampling` says ("video" or "sample"; empty in records written before
    intervals were added)."""

    layers: list[int]
    true_mean: list[float]
    false_mean: list[float]
    false_max_mean: list[float]
    true_beats_all_false: list[float]  # share of samples whose true option beats every false one
    n: int
    true_lo: list[float] = field(default_factory=list)
    true_hi: list[float] = field(default_factory=list)
    false_max_lo: list[float] = field(default_factory=list)
    false_max_hi: list[float] = field(default_factory=list)
    resampling: str = ""

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def probability_curves(
    per_sample: Sequence[tuple[list[list[float]], int]],
    *,
    clusters: Sequence[str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> ProbabilityCurves:
    """Aggregate (probabilities [L][options], true index) pairs, with per-layer bootstrap intervals
    (`flowcheck.stats.bootstrap_ci`; `clusters` `[n]`: each pair's video, None: samples resampled). Raises
    ValueError for no samples or cluster labels of the wrong length."""
    if not per_sample:
        raise ValueError("no samples")
    true, false, false_max, beats = [], [], [], []
    for probs, t in per_sample:
        p = np.asarray(probs) * 100
        others = np.delete(p, t, axis=1)
        true.append(p[:, t])
        false.append(others.mean(axis=1))
        false_max.append(others.max(axis=1))
        beats.append(p[:, t] > others.max(axis=1))
    layers = list(range(len(true[0])))
    rng = np.random.default_rng(seed)
    true_ci = [bootstrap_ci(column, clusters=clusters, seed=rng, n_boot=n_boot) for column in np.transpose(true)]
    false_ci = [bootstrap_ci(column, clusters=clusters, seed=rng, n_boot=n_boot) for column in np.transpose(false_max)]
    return ProbabilityCurves(
        layers,
        list(np.mean(true, axis=0)),
        list(np.mean(false, axis=0)),
        list(np.mean(false_max, axis=0)),
        list(np.mean(beats, axis=0)),
        len(per_sample),
        [lo for lo, _ in true_ci],
        [hi for _, hi in true_ci],
        [lo for lo, _ in false_ci],
        [hi for _, hi in false_ci],
        "sample" if clusters is None else "video",
    )


@register
class AnswerProbability(Analysis):
    """Option-letter probabilities read through lm_head at every layer (setting ``final_norm``, default False:
    the authors' LLaVA convention); summarised over the correctly answered samples (the paper's Fig. 9)."""

    name = "answer_probability"
    title = "Answer probability by layer (Fig. 9)"
    summary_type = ProbabilityCurves

    def parameters(self) -> dict[str, Any]:
        return {"final_norm": bool(self.setup.settings.get("final_norm", False))}

    def compute(self, decoder, encoded, sample) -> dict[str, Any]:
        final_norm = bool(self.setup.settings.get("final_norm", False))
        return {"probs": answer_probability(decoder, encoded, final_norm, reuse=True)}

    @classmethod
    def summarise(cls, view: TaskView) -> ProbabilityCurves | None:
        per = view.results.get(cls.name, {})
        chosen = [b for b in view.baselines if b.sample_id in view.chosen and b.sample_id in per]
        if not chosen:
            return None
        pairs = [(per[b.sample_id]["probs"], b.true_index) for b in chosen]
        videos = view.clusters()
        clusters = None if videos is None else [videos[b.sample_id] for b in chosen]
        return probability_curves(pairs, clusters=clusters, seed=view.seed, n_boot=view.n_boot)

    @classmethod
    def gate_numbers(cls, summary: ProbabilityCurves, task: str) -> dict[str, dict[str, float]]:
        return {} if task == "all" else {"probability": {"true_option_last_layer": summary.true_mean[-1]}}

    @classmethod
    def report(cls, runs: Sequence[ReportInput]) -> Contribution:
        out = Contribution()
        for run in runs:
            whose = f"{run.model} on {run.dataset}"
            panels, resampled = [], set()
            for task in run.temporal_tasks or run.tasks():
                a = run.get(task, cls.name)
                if a is None:
                    continue
                x = [layer + 1 for layer in a.layers]
                if a.true_lo:
                    resampled.add(a.resampling)
                series = [
                    Series("True option", x, a.true_mean, a.true_lo or None, a.true_hi or None, TRUE_OPTION_COLOUR),
                    Series(
                        "Best false option",
                        x,
                        a.false_max_mean,
                        a.false_max_lo or None,
                        a.false_max_hi or None,
                        SET1["blue"],
                    ),
                    Series("False options (mean)", x, a.false_mean, colour=SET1["blue"], linestyle=":"),
                ]
                panels.append(Panel(task.replace("_", " ").title(), series, note=f"n={a.n}"))
            if not panels:
                out.missing.append(f"Fig. 9 for {whose}: no answer probabilities (no correctly answered sample)")
                continue
            out.figures.append(
                Figure(
                    cls.title,
                    f"fig9-answer-probability-{run.file_stem()}.png",
                    "Mean probability of the true option letter vs the false ones at the last position"
                    + "".join(f" ({resampling_text(r)})" for r in sorted(resampled))
                    + ", lm_head on each layer's output, correctly answered samples.",
                    whose,
                    panels,
                    suptitle=f"Fig. 9 — Answer probability by layer: {whose}",
                    options={
                        "ylabel": "Probability (%)",
                        "num_layers": run.num_layers,
                        "zero_line": False,
                        "ylim": (-2, 102),
                    },
                )
            )
        return out
