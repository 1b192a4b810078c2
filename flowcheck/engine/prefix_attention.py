"""Attention of suffix queries over a prefix every batch row shares, without copying the prefix per row.

The fast engine recomputes positions >= p of many knockouts as batch rows on top of the baseline's
keys and values of positions < p. Concatenating that prefix to each row's suffix keys copies it once
per row and layer (rows x p x heads x head_dim), which for one-position suffixes ("-> last") costs far
more than the attention itself. In shared-prefix mode the cache hands the prefix to the attention
function instead (`SharedPrefix`), which scores the queries of all rows against it in one matmul
(rows folded into the query dimension) and against each row's own suffix keys, then normalises both
parts with one softmax over the concatenated scores: the same arithmetic as sdpa's reference (math)
path, computed in two pieces.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch


class SharedPrefix:
    """One forward's hand-over of prefix keys and values from each cache layer to its attention call.

    A layer's cache `offer`s its prefix; the attention call of that layer `take`s it. An offer while the
    previous one is still pending means an attention module did not run through flowcheck's attention
    function (it would silently attend to the suffix only), so it raises.
    """

    def __init__(self) -> None:
        self.pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self.offered = 0
        self.taken = 0

    def offer(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        if self.pending is not None:
            raise RuntimeError(
                "flowcheck: a decoder layer's attention did not read its shared prefix (it does not dispatch "
                "through transformers' AttentionInterface); the fast engine cannot run this model in shared-prefix mode"
            )
        self.pending = (keys, values)
        self.offered += 1

    def take(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        prefix, self.pending = self.pending, None
        if prefix is not None:
            self.taken += 1
        return prefix

    def check_done(self) -> None:
        """Raise unless every offered prefix was taken (call after the forward)."""
        if self.pending is not None or self.taken != self.offered:
            raise RuntimeError(
                f"flowcheck: {self.offered - self.taken} shared prefix(es) offered by the cache were never read by "
                "an attention call; the forward's numbers would be wrong"
            )


_SHARED: ContextVar[SharedPrefix | None] = ContextVar("flowcheck_shared_prefix", default=None)


def current() -> SharedPrefix | None:
    return _SHARED.get()


@contextmanager
def shared_prefix() -> Iterator[SharedPrefix]:
    """Shared-prefix mode for the forwards inside; checks on exit that every prefix was consumed."""
    state = SharedPrefix()
    token = _SHARED.set(state)
    try:
        yield state
    finally:
        _SHARED.reset(token)
    state.check_done()


def supports(kwargs: dict) -> bool:
    """Can the two-piece computation reproduce this call (no softcapping, sinks or position bias)?"""
    return all(kwargs.get(name) is None for name in ("softcap", "s_aux", "sinks", "position_bias")) and not kwargs.get(
        "dropout"
    )


def shared_prefix_attention(
    query: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor,
    scaling: float | None,
) -> torch.Tensor:
    """Attention output [R, s, H, d] (transformers' layout) of suffix queries over prefix + own suffix.

    query [R, H, s, d]; prefix keys and values [1, Hkv, p, d]; key and value (the suffix's own) [R, Hkv, s, d];
    allowed [R or 1, 1, s, p + s] boolean (True = the query may read the key). Heads are grouped as in
    transformers' `repeat_kv` (query head h reads key head h // (H / Hkv)). Scores are computed in the input
    dtype and normalised in float32 (as transformers' eager attention does).
    """
    rows, heads, s, d = query.shape
    prefix_keys, prefix_values = prefix
    kv_heads, p = prefix_keys.shape[1], prefix_keys.shape[-2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else d**-0.5
    q = query.reshape(rows, kv_heads, group, s, d)
    folded = q.permute(1, 0, 2, 3, 4).reshape(kv_heads, rows * group * s, d)
    prefix_scores = torch.matmul(folded, prefix_keys[0].transpose(-1, -2)).view(kv_heads, rows, group, s, p)
    own_scores = torch.matmul(q, key.unsqueeze(2).transpose(-1, -2))  # [R, Hkv, g, s, s]
    scores = torch.cat([prefix_scores.permute(1, 0, 2, 3, 4), own_scores], dim=-1).float() * scale
    scores.masked_fill_(~allowed[:, :, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    from_prefix = probs[..., :p].permute(1, 0, 2, 3, 4).reshape(kv_heads, rows * group * s, p)
    out = torch.matmul(from_prefix, prefix_values[0]).view(kv_heads, rows, group, s, d).permute(1, 0, 2, 3, 4)
    out = out + torch.matmul(probs[..., p:], value.unsqueeze(2))
    return out.reshape(rows, heads, s, d).transpose(1, 2).contiguous()
