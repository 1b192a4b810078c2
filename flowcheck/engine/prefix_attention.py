"""Attention of suffix queries over a prefix every batch row shares, without copying the prefix per row.

The fast engine recomputes positions >= p of many knockouts as batch rows on top of the baseline's
keys and values of positions < p. Concatenating that prefix to each row's suffix keys copies it once
per row and layer (rows x p x heads x head_dim), which for one-position suffixes ("-> last") costs far
more than the attention itself. In shared-prefix mode the cache hands the prefix to the attention
function instead (`SharedPrefix`), which scores the queries of all rows against it in one matmul
(rows folded into the query dimension) and against each row's own suffix keys, then normalises both
parts with one softmax over the concatenated scores: the same arithmetic as sdpa's reference (math)
path, computed in two pieces (`matmul_two_piece`). On CPU (float32 and bfloat16) each piece runs through
torch's fused flash-attention kernel instead, which returns the log-sum-exp of its scores, and the two
normalised pieces are merged by their log-sum-exps (`flash_two_piece`): no score matrix is materialised,
so it pays off for suffixes of any length.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

FLASH_DTYPES = (torch.float32, torch.bfloat16)


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
    dtype and normalised in float32 (as transformers' eager attention does) by `matmul_two_piece`, or, where
    `flash_available`, by `flash_two_piece`.
    """
    two_piece = flash_two_piece if flash_available(query.device, query.dtype) else matmul_two_piece
    return two_piece(query, prefix, key, value, allowed, scaling)


def matmul_two_piece(
    query: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor,
    scaling: float | None,
) -> torch.Tensor:
    """`shared_prefix_attention` with explicit scores (any device): one matmul of all rows' queries over the
    prefix, one per row over its own suffix, one float32 softmax over both. Shapes as `shared_prefix_attention`."""
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


def flash_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Is torch's CPU flash-attention kernel with log-sum-exp output usable here (CPU, float32 or bfloat16)?"""
    return device.type == "cpu" and dtype in FLASH_DTYPES


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, scale: float):
    """Fused attention of one piece: output [B, H, L, d] and log-sum-exp [B, H, L] of the allowed scores, with
    -inf (and a zero output) for query rows that may read no key of this piece."""
    zero = torch.zeros((), dtype=q.dtype, device=q.device)
    additive = torch.where(allowed, zero, zero - float("inf"))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, False, attn_mask=additive, scale=scale
    )
    # the kernel reports 0 for a fully blocked row: its weight in the merge must be exp(-inf) = 0
    lse = lse.masked_fill(~allowed.any(-1), float("-inf"))
    return out, lse


def flash_two_piece(
    query: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor,
    scaling: float | None,
) -> torch.Tensor:
    """`shared_prefix_attention` through two fused flash-attention calls (CPU): the queries of all rows, folded
    into one sequence per key head, over the shared prefix; each row's queries over its own suffix keys. With
    out_i and lse_i each piece's normalised output and log-sum-exp, the full-row softmax is
    (exp(lse_1) out_1 + exp(lse_2) out_2) / (exp(lse_1) + exp(lse_2)), evaluated relative to the larger lse.
    Shapes as `shared_prefix_attention`; a query row that may read no key at all gets a zero output (where
    sdpa would give NaN).
    """
    rows, heads, s, d = query.shape
    prefix_keys, prefix_values = prefix
    kv_heads, p = prefix_keys.shape[1], prefix_keys.shape[-2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else d**-0.5
    allowed = allowed.expand(rows, 1, s, p + s)
    # rows and grouped heads folded into the query dimension, in (row, group, position) order
    folded = query.reshape(rows, kv_heads, group * s, d).transpose(0, 1).reshape(1, kv_heads, rows * group * s, d)
    prefix_allowed = allowed[..., :p].expand(rows, group, s, p).reshape(1, 1, rows * group * s, p)
    out_prefix, lse_prefix = _flash(folded, prefix_keys, prefix_values, prefix_allowed, scale)
    out_prefix = out_prefix.view(kv_heads, rows, group * s, d).transpose(0, 1)
    lse_prefix = lse_prefix.view(kv_heads, rows, group * s).transpose(0, 1)
    own_allowed = allowed[..., p:].expand(rows, group, s, s).reshape(rows, 1, group * s, s)
    out_own, lse_own = _flash(query.reshape(rows, kv_heads, group * s, d), key, value, own_allowed, scale)
    lse_prefix, lse_own = lse_prefix.float(), lse_own.float()
    top = torch.maximum(lse_prefix, lse_own)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    w_prefix, w_own = torch.exp(lse_prefix - top).unsqueeze(-1), torch.exp(lse_own - top).unsqueeze(-1)
    total = (w_prefix + w_own).clamp_min(torch.finfo(w_own.dtype).tiny)
    out = (out_prefix.float() * w_prefix + out_own.float() * w_own) / total  # [R, Hkv, g * s, d]
    return out.to(query.dtype).reshape(rows, heads, s, d).transpose(1, 2).contiguous()
