"""Sweep one encoded sample: its baseline and every requested condition x window."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from flowcheck.analyses.records import Baseline, KnockoutRecord, SampleSweep
from flowcheck.edges import Condition, Window, check_layout_for
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
            family=c.family,
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
