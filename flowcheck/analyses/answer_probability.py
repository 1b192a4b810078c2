"""Layer-wise answer probability at the last position (the paper's Fig. 9)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from flowcheck.analyses.hidden import hidden_states, layer_outputs
from flowcheck.engine import Decoder
from flowcheck.models.base import EncodedSample


@torch.inference_mode()
def answer_probability(decoder: Decoder, encoded: EncodedSample, final_norm: bool = False) -> list[list[float]]:
    """[L][options]: softmax (full vocabulary) of lm_head on each layer's output at the last position.

    `final_norm=False` is the authors' default for LLaVA (the last layer is normed either way, as
    in transformers' hidden states); VideoLLaMA3's script used True.
    """
    states = hidden_states(decoder, encoded.inputs)
    rows = []
    for h in layer_outputs(states, decoder, final_norm):
        probs = torch.softmax(decoder.lm_head(h[:, -1]).float(), dim=-1)[0]
        rows.append([float(probs[i]) for i in encoded.option_ids])
    return rows


@dataclass
class ProbabilityCurves:
    """Mean (over samples) probability in % per layer of the true option and of the best false option."""

    layers: list[int]
    true_mean: list[float]
    false_mean: list[float]
    false_max_mean: list[float]
    true_beats_all_false: list[float]  # share of samples whose true option beats every false one
    n: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def probability_curves(per_sample: Sequence[tuple[list[list[float]], int]]) -> ProbabilityCurves:
    """Aggregate (probabilities [L][options], true index) pairs."""
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
    return ProbabilityCurves(
        layers,
        list(np.mean(true, axis=0)),
        list(np.mean(false, axis=0)),
        list(np.mean(false_max, axis=0)),
        list(np.mean(beats, axis=0)),
        len(per_sample),
    )
