"""The sweep-level API: score one encoded sample under many knockouts.

Callers describe each knockout as a per-layer plan (`Knockout`) and get the probabilities of
the tokens they watch (the option letters) at the last position, plus the full-vocabulary
argmax. `score` picks a strategy; the plain strategy runs one full forward per knockout and is
the reference every faster strategy must match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flowcheck.edges import Condition, Rect, Window
from flowcheck.engine.attention import BlockedSpec
from flowcheck.engine.decoder import Decoder
from flowcheck.engine.knockout import knockout_plan
from flowcheck.layout import TokenLayout


@dataclass
class LMInputs:
    """What the text decoder needs for one sample, with video already embedded.

    `position_ids` is [1, n] or, for multimodal rotary models, [k, 1, n]; `extra` holds further
    decoder keyword arguments (e.g. Qwen3-VL's ``visual_pos_masks`` and
    ``deepstack_visual_embeds``). When only a suffix is recomputed (positions >= start, from
    layer `first_layer` on, as `rows` batch rows), `suffix_extra(extra, start, first_layer, rows)`
    gives the extras; the default slices tensors whose second dimension is the sequence and
    repeats them over the rows.
    """

    inputs_embeds: torch.Tensor
    position_ids: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    suffix_extra: Callable[[dict[str, Any], int, int, int], dict[str, Any]] | None = None

    @property
    def n(self) -> int:
        return self.inputs_embeds.shape[1]

    def kwargs(self) -> dict[str, Any]:
        out = {"inputs_embeds": self.inputs_embeds, **self.extra}
        if self.position_ids is not None:
            out["position_ids"] = self.position_ids
        return out

    def suffix(self, start: int, first_layer: int = 0, rows: int = 1) -> LMInputs:
        """The inputs of positions ``>= start`` as `rows` batch rows (for a forward on top of a prefix cache)."""
        if self.suffix_extra is not None:
            extra = self.suffix_extra(self.extra, start, first_layer, rows)
        else:
            extra = {k: _rows(v[:, start:], rows) if _is_sequence(v, self.n) else v for k, v in self.extra.items()}
        positions = None
        if self.position_ids is not None:
            positions = self.position_ids[..., start:]
            if rows > 1:
                positions = positions.expand(*positions.shape[:-2], rows, positions.shape[-1])
        return LMInputs(_rows(self.inputs_embeds[:, start:], rows), positions, extra, self.suffix_extra)


def _is_sequence(value: Any, n: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == n


def _rows(value: torch.Tensor, rows: int) -> torch.Tensor:
    return value if rows == 1 else value.expand(rows, *value.shape[1:])


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


def _score_logits(logits: torch.Tensor, watch: torch.Tensor) -> list[Scored]:
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


def _as_spec(spec: Sequence[Rect] | torch.Tensor) -> BlockedSpec:
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
    base = _score_logits(last_logits(decoder, inputs), watch)[0]
    results = []
    for ko in knockouts:
        with knockout_plan(decoder, {layer: _as_spec(spec) for layer, spec in ko.plan.items()}):
            results.append(_score_logits(last_logits(decoder, inputs), watch)[0])
        if progress is not None:
            progress(1)
    return base, results


STRATEGIES: dict[str, Callable[..., tuple[Scored, list[Scored]]]] = {"plain": score_plain}


def _register_fast() -> None:
    from flowcheck.engine.fast import score_fast

    STRATEGIES["fast"] = score_fast


def score(
    decoder: Decoder,
    inputs: LMInputs,
    knockouts: Sequence[Knockout],
    watch_ids: Sequence[int],
    *,
    strategy: str = "fast",
    progress: Callable[[int], None] | None = None,
    attention_backend: str = "sdpa",
    **options: Any,
) -> tuple[Scored, list[Scored]]:
    """Baseline and knocked-out scores of one sample; `strategy` picks the implementation.

    `attention_backend` ("sdpa" or "flex", `flowcheck.engine.attention.BACKENDS`) computes the knocked-out
    forwards' attention; unknown names raise ValueError.
    """
    from flowcheck.engine.attention import backend

    if "fast" not in STRATEGIES:
        _register_fast()
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown scoring strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    with backend(attention_backend):
        return STRATEGIES[strategy](decoder, inputs, knockouts, watch_ids, progress=progress, **options)


def embed_text(decoder: Decoder, input_ids: torch.Tensor) -> LMInputs:
    """LMInputs of a text-only prompt (token embeddings, positions 0..n-1)."""
    with torch.inference_mode():
        embeds = decoder.input_embeddings()(input_ids.to(decoder.device))
    positions = torch.arange(input_ids.shape[-1], device=decoder.device)[None]
    return LMInputs(embeds, positions)
