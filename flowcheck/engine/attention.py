"""The knockout attention function, registered with transformers' AttentionInterface.

It wraps sdpa (or, as an option, FlexAttention: `flowcheck.engine.flex`). When a knockout is
active, every attention module of the targeted decoder layers removes its blocked (query, key)
edges by turning them off in the boolean attention mask (equivalent to an additive -inf before the
softmax; the rest of the row renormalises). Queries are the last `q_len` positions of the key
sequence, which covers full forwards and forwards over a suffix on top of a KV cache. Under the fast
engine's shared-prefix mode (`flowcheck.engine.prefix_attention`) the keys passed in are the
suffix's only and the prefix comes from the cache through a context variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

IMPLEMENTATION = "flowcheck_sdpa"
BACKENDS = ("sdpa", "flex")
"""Attention backends of knocked-out forwards: torch's sdpa (default) or FlexAttention with block masks."""


class LazyMask:
    """A blocked mask built when its layer's attention runs (so a batch holds one layer's masks at a time).

    `build(kv_len, device)` returns a boolean [B, r, kv_len] tensor of the last r query rows.
    """

    def __init__(self, build: Callable[[int, torch.device], torch.Tensor]) -> None:
        self.build = build


BlockedSpec = torch.Tensor | LazyMask | Sequence[tuple[object, object]]
"""A boolean [n, n] or [B, n, n] tensor (True = edge removed), a `LazyMask`, or (query positions, key positions)
pairs."""


@dataclass
class ActiveKnockout:
    """Blocked edges of the modules currently knocked out, keyed by ``id(attention module)``."""

    blocked: dict[int, list[BlockedSpec]] = field(default_factory=dict)
    calls: dict[int, int] = field(default_factory=dict)


_ACTIVE: ContextVar[ActiveKnockout | None] = ContextVar("flowcheck_active_knockout", default=None)


def _positions(p: object) -> torch.Tensor | slice:
    if hasattr(p, "start") and hasattr(p, "end") and not isinstance(p, torch.Tensor):
        return slice(int(p.start), int(p.end))  # flowcheck Span
    if isinstance(p, range) and p.step == 1:
        return slice(p.start, p.stop)
    if isinstance(p, slice):
        return p
    return torch.as_tensor(list(p) if not isinstance(p, torch.Tensor) else p, dtype=torch.long)


def materialize(spec: BlockedSpec, kv_len: int, device: torch.device, first_row: int = 0) -> torch.Tensor:
    """A boolean [kv_len, kv_len] (or [B, kv_len, kv_len]) blocked mask from a spec.

    A tensor with fewer rows than kv_len columns ([..., r, kv_len]) holds the rows of the last r
    query positions only (what a forward over a suffix needs; earlier queries block nothing) and is
    returned as is. `first_row` > 0 builds only the rows of queries >= first_row ([kv_len - first_row, kv_len]).
    """
    if isinstance(spec, LazyMask):
        return spec.build(kv_len, device)
    if isinstance(spec, torch.Tensor):
        if spec.dtype != torch.bool:
            raise TypeError("a blocked mask must be a boolean tensor (True = edge removed)")
        size = spec.shape[-1]
        if spec.shape[-2] < size and size == kv_len:
            return spec.to(device)
        if spec.shape[-2] != size:
            raise ValueError(
                f"a blocked mask must be square in its last two dims or hold the last rows of a "
                f"{kv_len}-key mask, got {tuple(spec.shape)}"
            )
        if size >= kv_len:
            return spec[..., first_row:kv_len, :kv_len].to(device)
        grown = torch.zeros(*spec.shape[:-2], kv_len, kv_len, dtype=torch.bool, device=device)
        grown[..., :size, :size] = spec.to(device)
        return grown[..., first_row:, :]
    mask = torch.zeros(kv_len - first_row, kv_len, dtype=torch.bool, device=device)
    index = torch.arange(kv_len, device=device)
    for queries, keys in spec:
        q, k = _positions(queries), _positions(keys)
        rows = index[q] if isinstance(q, slice) else q.to(device)
        rows = rows[rows >= first_row] - first_row
        if isinstance(k, slice) and rows.numel() and bool((rows[1:] - rows[:-1] == 1).all()):
            mask[int(rows[0]) : int(rows[-1]) + 1, k] = True  # a contiguous block: no index tensors
            continue
        cols = index[k] if isinstance(k, slice) else k.to(device)
        mask[rows.unsqueeze(-1), cols.unsqueeze(0)] = True
    return mask


def _query_rows(blocked: torch.Tensor, q_len: int) -> torch.Tensor:
    """The blocked rows of the last q_len query positions (masks end at the last position; rows a mask
    does not hold block nothing)."""
    held = blocked.shape[-2]
    if held >= q_len:
        return blocked[..., held - q_len :, :]
    free = torch.zeros(*blocked.shape[:-2], q_len - held, blocked.shape[-1], dtype=torch.bool, device=blocked.device)
    return torch.cat([free, blocked], dim=-2)


def _restrict(attention_mask: torch.Tensor | None, rows: torch.Tensor, query: torch.Tensor, kv_len: int):
    q_len = query.shape[-2]
    rows = rows[None, None] if rows.dim() == 2 else rows[:, None]
    if attention_mask is None:
        q_pos = torch.arange(kv_len - q_len, kv_len, device=query.device)
        causal = q_pos[:, None] >= torch.arange(kv_len, device=query.device)[None, :]
        return causal[None, None] & ~rows
    if attention_mask.dtype == torch.bool:
        return attention_mask[..., -q_len:, -kv_len:] & ~rows
    return attention_mask[..., -q_len:, -kv_len:].masked_fill(rows, torch.finfo(attention_mask.dtype).min)


def flowcheck_attention(module, query, key, value, attention_mask, **kwargs):
    """sdpa (or flex) attention that removes the active knockout's edges for targeted modules.

    Inside `last_query_only(module)` the module's call attends for its last query position only and returns
    zeros [B, q_len - 1, H, d] for the others (transformers' [B, q_len, H, d] output layout).
    """
    q_len = query.shape[-2]
    if _LAST_QUERY_ONLY.get() == id(module) and q_len > 1 and _OBSERVER.get() is None:
        if attention_mask is not None:
            attention_mask = attention_mask[..., -1:, :]
        out, weights = _attend(module, query[..., -1:, :], key, value, attention_mask, **kwargs)
        full = out.new_zeros(out.shape[0], q_len, *out.shape[2:])
        full[:, -1:] = out
        return full, weights
    return _attend(module, query, key, value, attention_mask, **kwargs)


def _attend(module, query, key, value, attention_mask, **kwargs):
    from flowcheck.engine import prefix_attention

    active = _ACTIVE.get()
    specs = None if active is None else active.blocked.get(id(module))
    shared = prefix_attention.current()
    prefix = shared.take() if shared is not None else None
    q_len = query.shape[-2]
    kv_len = key.shape[-2] + (0 if prefix is None else prefix[0].shape[-2])
    rows = None
    if specs:
        active.calls[id(module)] = active.calls.get(id(module), 0) + 1
        rows = _query_rows(materialize(specs[0], kv_len, query.device), q_len)
        for extra in specs[1:]:
            rows = rows | _query_rows(materialize(extra, kv_len, query.device), q_len)
    if prefix is not None:
        if _OBSERVER.get() is not None:
            raise RuntimeError(
                "attention weights cannot be observed in the fast engine's shared-prefix mode; observe a full forward"
            )
        boolean = attention_mask is None or attention_mask.dtype == torch.bool
        if boolean and prefix_attention.supports(kwargs) and _BACKEND.get() == "sdpa":
            allowed = _allowed(attention_mask, rows, query, kv_len)
            out = prefix_attention.shared_prefix_attention(query, prefix, key, value, allowed, kwargs.get("scaling"))
            return out, None
        # not reproducible in two pieces: attend to the full keys, each row with its own copy of the prefix
        batch = key.shape[0]
        key = torch.cat([prefix[0].expand(batch, *prefix[0].shape[1:]), key], dim=-2)
        value = torch.cat([prefix[1].expand(batch, *prefix[1].shape[1:]), value], dim=-2)
    if rows is not None:
        attention_mask = _restrict(attention_mask, rows, query, kv_len)
        kwargs["is_causal"] = False
    observer = _OBSERVER.get()
    if observer is not None:
        observer(module, query, key, attention_mask, kwargs)
    if _BACKEND.get() == "flex":
        from flowcheck.engine.flex import flex_attention_forward

        if attention_mask is not None and attention_mask.dtype != torch.bool:
            low = torch.finfo(attention_mask.dtype).min / 2
            if not bool(((attention_mask == 0) | (attention_mask <= low)).all()):
                raise ValueError("the flex backend takes 0 / -inf attention masks only; this model adds a bias")
        allowed = _allowed(attention_mask, None, query, kv_len)
        return flex_attention_forward(module, query, key, value, allowed, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _allowed(attention_mask: torch.Tensor | None, rows: torch.Tensor | None, query: torch.Tensor, kv_len: int):
    """The boolean [B or 1, 1, q_len, kv_len] mask of readable keys (causal when no mask is given)."""
    q_len = query.shape[-2]
    if attention_mask is None:
        q_pos = torch.arange(kv_len - q_len, kv_len, device=query.device)
        mask = (q_pos[:, None] >= torch.arange(kv_len, device=query.device)[None, :])[None, None]
    elif attention_mask.dtype == torch.bool:
        mask = attention_mask[..., -q_len:, -kv_len:]
    else:
        mask = attention_mask[..., -q_len:, -kv_len:] > torch.finfo(attention_mask.dtype).min / 2
    if rows is not None:
        mask = mask & ~(rows[None, None] if rows.dim() == 2 else rows[:, None])
    return mask


_BACKEND: ContextVar[str] = ContextVar("flowcheck_attention_backend", default="sdpa")

_LAST_QUERY_ONLY: ContextVar[int | None] = ContextVar("flowcheck_last_query_only", default=None)


@contextmanager
def last_query_only(module) -> Iterator[None]:
    """Inside, flowcheck attention calls of `module` (an attention module) compute the output of their last query
    position only; the other positions' outputs are zeros.

    For a forward whose caller reads only the last position of this module's layer (the fast engine's last
    decoder layer: the logits read the last position only, and no later layer reads this one's other
    positions). The keys and values of every position are still computed by the module (its own projections),
    so the cache is unaffected.
    """
    token = _LAST_QUERY_ONLY.set(id(module))
    try:
        yield
    finally:
        _LAST_QUERY_ONLY.reset(token)


Observer = Callable[..., None]
"""Called as ``observer(module, query, key, mask, kwargs)`` by every attention call of a full forward, with the
queries [B, H, q_len, d] and keys [B, Hk, kv_len, d] after RoPE and the final mask (boolean or additive,
[B or 1, 1, q_len, kv_len], knockout applied; None: causal) that sdpa receives
(`flowcheck.engine.attention_weights`)."""

_OBSERVER: ContextVar[Observer | None] = ContextVar("flowcheck_attention_observer", default=None)


@contextmanager
def observing(observer: Observer) -> Iterator[None]:
    """Every flowcheck attention call inside is shown to `observer` before it runs (one observer at a time)."""
    if _OBSERVER.get() is not None:
        raise RuntimeError("an attention observer is already active; observers do not nest")
    token = _OBSERVER.set(observer)
    try:
        yield
    finally:
        _OBSERVER.reset(token)


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Knocked-out forwards inside use attention backend `name` (one of BACKENDS); raises ValueError otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; available: {', '.join(BACKENDS)}")
    token = _BACKEND.set(name)
    try:
        yield
    finally:
        _BACKEND.reset(token)


def flowcheck_mask(*args, **kwargs):
    """sdpa's boolean mask, always materialised (never the `is_causal` shortcut)."""
    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def register() -> None:
    """Register the attention and mask functions with transformers (idempotent)."""
    AttentionInterface.register(IMPLEMENTATION, flowcheck_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, flowcheck_mask)


register()


def active() -> ActiveKnockout | None:
    return _ACTIVE.get()


def set_active(state: ActiveKnockout | None):
    return _ACTIVE.set(state)


def reset_active(token) -> None:
    _ACTIVE.reset(token)
