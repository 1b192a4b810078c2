"""The knockout engine: attention edges removed per layer on any transformers decoder.

Low level: `knockout(model, blocked, layers)` (a context manager). Sweep level:
`score(decoder, inputs, knockouts, watch_ids)` scores one sample under many knockouts.
`Decoder`, `LMInputs` and `find_decoder` belong to the models (`flowcheck.models.decoder`) and are
re-exported here for callers of the engine.
"""

from flowcheck.engine.attention import IMPLEMENTATION, BlockedSpec
from flowcheck.engine.dispatch import STRATEGIES, score
from flowcheck.engine.knockout import knockout, knockout_plan
from flowcheck.engine.scoring import Knockout, Scored, condition_knockout, embed_text, last_logits, score_plain
from flowcheck.models.decoder import Decoder, LMInputs, UnsupportedModelError, find_decoder

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
