"""`score`: one sample under many knockouts, through the strategy the caller picks.

The strategies are `score_plain` (`flowcheck.engine.scoring`, one full forward per knockout, the
reference) and `score_fast` (`flowcheck.engine.fast`, prefix and layer reuse with batched rows, the
same numbers). This module is the only one that knows both; neither strategy imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flowcheck.engine.attention import backend
from flowcheck.engine.fast import score_fast
from flowcheck.engine.scoring import Knockout, Scored, score_plain
from flowcheck.models.decoder import Decoder, LMInputs

Strategy = Callable[..., tuple[Scored, list[Scored]]]

STRATEGIES: dict[str, Strategy] = {"plain": score_plain, "fast": score_fast}


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

    Returns ``(baseline, [one Scored per knockout, in order])``. `strategy` is a key of `STRATEGIES`
    (``"fast"`` or ``"plain"``); `options` go to it (the fast strategy's `batch_size`,
    `memory_budget_mb`, `overhead_positions`). `attention_backend` ("sdpa" or "flex",
    `flowcheck.engine.attention.BACKENDS`) computes the knocked-out forwards' attention. An unknown
    strategy or backend raises ValueError naming the available ones.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown scoring strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    with backend(attention_backend):
        return STRATEGIES[strategy](decoder, inputs, knockouts, watch_ids, progress=progress, **options)
