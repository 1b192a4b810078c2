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
from itertools import pairwise

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

    query [R, H, s, d]; prefix keys and values [1, Hkv, p, d]; key and value (the suffix's own) [R, Hkv, t, d]
    with t >= s (the queries are the suffix's last s positions: t = s, or s = 1 for the last position only);
    allowed [R or 1, 1, s, p + t] boolean (True = the query may read the key). Heads are grouped as in
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
    own_scores = torch.matmul(q, key.unsqueeze(2).transpose(-1, -2))  # [R, Hkv, g, s, own]
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


def prefix_segments(allowed: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
    """Split the prefix keys into runs of columns that every query reads or skips alike.

    allowed [R, s, p] boolean (True = the query may read the key). Returns (start, end, readers) per run of
    consecutive key columns with identical columns, readers [R, s] the queries that read every key of the run.
    Knockouts remove rectangles (e.g. the video's keys for the question's queries), so a prefix splits into a
    few runs; a run no query reads can be skipped, and the others need no mask.
    """
    p = allowed.shape[-1]
    if p == 0:
        return []
    flat = allowed.reshape(-1, p)
    changes = (flat[:, 1:] != flat[:, :-1]).any(dim=0).nonzero().flatten().tolist()
    edges = [0, *(c + 1 for c in changes), p]
    return [(a, b, allowed[..., a]) for a, b in pairwise(edges)]


def _merge(pieces: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Normalised outputs out_i [..., L, d] with log-sum-exps lse_i [..., L] (float32, -inf: the piece read nothing)
    merged into the softmax over all pieces' keys: sum_i exp(lse_i - top) out_i / sum_i exp(lse_i - top), top the
    largest finite lse; a query that read nothing in any piece gets a zero output."""
    top = pieces[0][1]
    for _, lse in pieces[1:]:
        top = torch.maximum(top, lse)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    numerator, denominator = None, None
    for out, lse in pieces:
        weight = torch.exp(lse - top).unsqueeze(-1)
        term = out.float() * weight
        numerator = term if numerator is None else numerator + term
        denominator = weight if denominator is None else denominator + weight
    return numerator / denominator.clamp_min(torch.finfo(denominator.dtype).tiny)


MASK_SHARE = 0.2
"""What an additive mask adds to a fused CPU flash call, as a share of its (query, key) pairs (measured: 17.2 vs
13.9 ms for 1,950 queries over 1,200 keys, 8 heads of 32; 2 threads)."""
RUN_OVERHEAD_PAIRS = 60_000
"""The fixed cost of attending to one more run of prefix keys (a fused call, the query gather and scatter, one
more piece to merge), in (query, key) pairs of one call's work. Measured on the "-> last" group of
`benchmarks/bench_sweep.py` (96 one-position rows, 14 runs of 1,260 keys): 14 runs took about 3.7 ms per layer
more than one masked call of 121,000 pairs (0.5 ms), about 0.25 ms (60,000 pairs) per run. Only speed depends on
it, never the numbers."""


def _prefix_pieces(
    folded: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    allowed: torch.Tensor,
    group: int,
    scale: float,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The folded queries [1, Hkv, M, d] (M = rows x group x s, in (row, group, position) order) over the shared
    prefix, one fused call per run of `prefix_segments` (allowed [R, s, p]): a run every query reads runs without a
    mask, a run some queries read runs over those queries only, a run no query reads is skipped. Where the runs
    would cost more than they save (`RUN_OVERHEAD_PAIRS`), one masked call over the whole prefix instead. Returns
    (out [1, Hkv, M, d], lse [1, Hkv, M] float32) per call."""
    prefix_keys, prefix_values = prefix
    rows, s, p = allowed.shape
    kv_heads, m, d = folded.shape[1:]
    runs = prefix_segments(allowed)
    queries = rows * s
    read = sum(int(readers.sum()) * (end - start) for start, end, readers in runs)
    saved = MASK_SHARE * queries * p + (queries * p - read)
    if len(runs) > 1 and saved < len(runs) * RUN_OVERHEAD_PAIRS:
        mask = allowed[:, None].expand(rows, group, s, p).reshape(1, 1, m, p)
        out, lse = _flash(folded, prefix_keys, prefix_values, mask, scale)
        return [(out, lse.float())]
    pieces = []
    for start, end, readers in runs:
        keys, values = prefix_keys[..., start:end, :], prefix_values[..., start:end, :]
        reading = readers[:, None, :].expand(rows, group, s).reshape(m)
        if bool(reading.all()):
            out, lse = _fused(folded, keys, values, None, scale)
            pieces.append((out, lse.float()))
            continue
        chosen = reading.nonzero().flatten()
        if chosen.numel() == 0:
            continue
        out_some, lse_some = _fused(folded.index_select(2, chosen).contiguous(), keys, values, None, scale)
        out = folded.new_zeros(1, kv_heads, m, d)
        out.index_copy_(2, chosen, out_some)
        lse = torch.full((1, kv_heads, m), float("-inf"), dtype=torch.float32, device=folded.device)
        lse.index_copy_(2, chosen, lse_some.float())
        pieces.append((out, lse))
    return pieces


def _fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=mask, scale=scale)


def flash_two_piece(
    query: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor,
    scaling: float | None,
) -> torch.Tensor:
    """`shared_prefix_attention` through fused flash-attention calls (CPU): the queries of all rows, folded into one
    sequence per key head, over the shared prefix (one call per run of prefix keys that every query reads or skips
    alike, `prefix_segments`: knocked-out runs are skipped for the queries that may not read them, and no prefix
    mask is built); each row's queries over its own suffix keys. With out_i and lse_i each piece's normalised
    output and log-sum-exp, the full-row softmax is sum_i exp(lse_i) out_i / sum_i exp(lse_i), evaluated relative
    to the largest lse (`_merge`). Shapes as `shared_prefix_attention`; a query row that may read no key at all
    gets a zero output (where sdpa would give NaN).
    """
    rows, heads, s, d = query.shape
    kv_heads, p, own = prefix[0].shape[1], prefix[0].shape[-2], key.shape[-2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else d**-0.5
    allowed = allowed.expand(rows, 1, s, p + own)
    # rows and grouped heads folded into the query dimension, in (row, group, position) order
    folded = query.reshape(rows, kv_heads, group * s, d).transpose(0, 1).reshape(1, kv_heads, rows * group * s, d)
    pieces = [
        (out.view(kv_heads, rows, group * s, d).transpose(0, 1), lse.view(kv_heads, rows, group * s).transpose(0, 1))
        for out, lse in _prefix_pieces(folded, prefix, allowed[:, 0, :, :p], group, scale)
    ]
    own_allowed = allowed[..., p:].expand(rows, group, s, own).reshape(rows, 1, group * s, own)
    out_own, lse_own = _flash(query.reshape(rows, kv_heads, group * s, d), key, value, own_allowed, scale)
    pieces.append((out_own, lse_own.float()))
    out = _merge(pieces)  # [R, Hkv, g * s, d]
    return out.to(query.dtype).reshape(rows, heads, s, d).transpose(1, 2).contiguous()
