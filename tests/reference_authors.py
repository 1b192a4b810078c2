"""An independent implementation of the authors' knockout (official-protocol.md 2.1-2.3), for tests.

Eager attention, a dense additive mask of shape (1, H, n, n) with finfo.min where blocked,
swapped into the targeted layers' attention calls, one full forward per (condition, window).
It shares nothing with flowcheck's engine except the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def authors_mask(n: int, heads: int, pairs: Sequence[tuple[Iterable[int], Iterable[int]]], dtype) -> torch.Tensor:
    """`precompute_attention_masks`: tril ones, zero every (query, key) block, then (1 - A) * min."""
    allowed = torch.tril(torch.ones(n, n, dtype=torch.uint8))
    for queries, keys in pairs:
        q, k = list(queries), list(keys)
        if q and k:
            allowed[torch.tensor(q)[:, None], torch.tensor(k)[None, :]] = 0
    mask = allowed[None, None].repeat(1, heads, 1, 1).to(dtype)
    return (1 - mask) * torch.finfo(dtype).min


def _decoder_layers(model):
    lm = model.model.language_model if hasattr(model.model, "language_model") else model.model
    return lm.layers, lm.config


@torch.no_grad()
def authors_last_probs(
    model,
    forward_kwargs: dict,
    pairs: Sequence[tuple[Iterable[int], Iterable[int]]],
    layers: Iterable[int],
    attention: str = "eager",
) -> torch.Tensor:
    """Softmax over the vocabulary at the last position with `pairs` blocked in `layers` (eager by default;
    ``attention="sdpa"`` runs the same protocol with sdpa kernels)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(attention)
    decoder_layers, text_config = _decoder_layers(model)
    n = forward_kwargs["input_ids"].shape[1]
    dtype = next(model.parameters()).dtype
    mask = authors_mask(n, text_config.num_attention_heads, pairs, dtype)

    def swap_mask(_module, args, kwargs):
        kwargs["attention_mask"] = mask
        return args, kwargs

    hooks = [decoder_layers[i].self_attn.register_forward_pre_hook(swap_mask, with_kwargs=True) for i in layers]
    try:
        logits = model(**forward_kwargs).logits
    finally:
        for hook in hooks:
            hook.remove()
        model.set_attn_implementation(previous)
    return torch.softmax(logits[0, -1].float(), dim=-1)
