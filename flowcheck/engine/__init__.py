"""The knockout engine: attention edges removed per layer on any transformers decoder.

Low level: `knockout(model, blocked, layers)` (a context manager). Sweep level:
`score(decoder, inputs, knockouts, watch_ids)` scores one sample under many knockouts.
"""

from flowcheck.engine.attention import IMPLEMENTATION, BlockedSpec
from flowcheck.engine.decoder import Decoder, UnsupportedModelError, find_decoder
from flowcheck.engine.knockout import knockout, knockout_plan
from flowcheck.engine.scoring import (
    STRATEGIES,
    Knockout,
    LMInputs,
    Scored,
    condition_knockout,
    embed_text,
    last_logits,
    score,
    score_plain,
)

__all__ = [
    "IMPLEMENTATION",
    "STRATEGIES",
    "BlockedSpec",
    "Decoder",
    "Knockout",
    "LMInputs",
    "Scored",
    "UnsupportedModelError",
    "condition_knockout",
    "embed_text",
    "find_decoder",
    "knockout",
    "knockout_plan",
    "last_logits",
    "score",
    "score_plain",
]
