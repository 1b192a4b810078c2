"""Plain scoring: one encoded sample under many knockouts, one full forward per knockout.

Callers describe each knockout as a per-layer plan (`Knockout`) and get the probabilities of
the tokens they watch (the option letters) at the last position, plus the full-vocabulary
argmax (`Scored`). `score_plain` is the reference every faster strategy must match; the fast
strategy (`flowcheck.engine.fast`) builds on the pieces here, and `flowcheck.engine.dispatch.score`
picks between them. This module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from flowcheck.edges import Condition, Rect, Window
from flowcheck.engine.attention import BlockedSpec
from flowcheck.engine.knockout import knockout_plan
from flowcheck.layout import TokenLayout
from flowcheck.models.decoder import Decoder, LMInputs


@dataclass(frozen=True)
class Knockout:
    """One knockout: the edges removed in each layer (rectangles or a boolean [n, n] mask)."""

    key: str
    plan: Mapping[int, Sequence[Rect] | torch.Tensor]

    @property
    def first_layer(self) -> int:
        return min(self.plan)

    def earliest_query(self, n: int) -> int:
        """The first query position whose row any layer changes (n when nothing is blocked)."""
        first = n
        for spec in self.plan.values():
            if isinstance(spec, torch.Tensor):
                size = spec.shape[-1]
                rows = spec.reshape(-1, size, size).any(dim=0).tril().any(dim=-1).nonzero()
                if len(rows):
                    first = min(first, int(rows[0, 0]))
            else:
                for q, k in spec:
                    if len(q) and len(k) and k.start <= q.end - 1:
                        first = min(first, max(q.start, k.start))
        return first


def condition_knockout(condition: Condition, window: Window, layout: TokenLayout) -> Knockout:
    """The knockout of `condition` in the layers of `window`, keyed ``"<condition>@<window>"``."""
    rects = tuple(condition.rectangles(layout))
    return Knockout(f"{condition.name}@{window.label()}", {layer: rects for layer in window.layers})


@dataclass(frozen=True)
class Scored:
    """Probabilities at the last position: of each watched token, and of the full-vocabulary argmax."""

    probs: np.ndarray
    argmax: int
    argmax_prob: float


def score_logits(logits: torch.Tensor, watch: torch.Tensor) -> list[Scored]:
    """One `Scored` per row of `logits` [rows, vocab]: softmax probabilities of the `watch` ids, and the argmax."""
    probs = torch.softmax(logits.float(), dim=-1)
    top = probs.max(dim=-1)
    watched = probs[:, watch].double().cpu().numpy()
    return [Scored(watched[i], int(top.indices[i]), float(top.values[i])) for i in range(logits.shape[0])]


def no_padding(inputs: LMInputs, past: int = 0) -> torch.Tensor:
    """An all-ones 2D attention mask: without it transformers reads gaps in position ids as packed sequences."""
    embeds = inputs.inputs_embeds
    return torch.ones(embeds.shape[0], past + embeds.shape[1], dtype=torch.long, device=embeds.device)


@torch.inference_mode()
def last_logits(decoder: Decoder, inputs: LMInputs) -> torch.Tensor:
    """Full forward of the text decoder; logits of the last position, [1, vocab]."""
    out = decoder.module(**inputs.kwargs(), attention_mask=no_padding(inputs), use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return decoder.lm_head(hidden[:, -1])


def as_spec(spec: Sequence[Rect] | torch.Tensor) -> BlockedSpec:
    """A knockout plan's per-layer entry as the attention function's `BlockedSpec` (rectangles -> a list of pairs)."""
    return spec if isinstance(spec, torch.Tensor) else [(q, k) for q, k in spec]


def score_plain(
    decoder: Decoder,
    inputs: LMInputs,
    knockouts: Sequence[Knockout],
    watch_ids: Sequence[int],
    progress: Callable[[int], None] | None = None,
) -> tuple[Scored, list[Scored]]:
    """The reference strategy: one full forward for the baseline and one per knockout."""
    watch = torch.as_tensor(list(watch_ids), dtype=torch.long)
    base = score_logits(last_logits(decoder, inputs), watch)[0]
    results = []
    for ko in knockouts:
        with knockout_plan(decoder, {layer: as_spec(spec) for layer, spec in ko.plan.items()}):
            results.append(score_logits(last_logits(decoder, inputs), watch)[0])
        if progress is not None:
            progress(1)
    return base, results


def embed_text(decoder: Decoder, input_ids: torch.Tensor) -> LMInputs:
    """LMInputs of a text-only prompt (token embeddings, positions 0..n-1)."""
    with torch.inference_mode():
        embeds = decoder.input_embeddings()(input_ids.to(decoder.device))
    positions = torch.arange(input_ids.shape[-1], device=decoder.device)[None]
    return LMInputs(embeds, positions)
