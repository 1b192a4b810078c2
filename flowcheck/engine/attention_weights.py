"""Attention weights of chosen query rows, without switching the model to eager attention.

The knockout attention function (`flowcheck.engine.attention`) shows every attention call its queries and keys
(RoPE already applied) and the final mask sdpa receives (`observing`). From them this module computes
``softmax(q k^T * scaling + mask)`` for the chosen query positions only: [rows, keys] per head instead of the
[n, n] per head that ``output_attentions=True`` needs (and that forces eager attention). Under a knockout the
mask already holds the blocked edges, so the weights are those of the knocked-out forward.

Convention: the same as eager attention in transformers (``eager_attention_forward``: keys and values repeated
for grouped-query heads, ``scaling`` from the attention module, softmax in float32). Models whose attention adds
soft-capping or attention sinks are refused (their weights are not this softmax).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch

from flowcheck.engine.attention import observing
from flowcheck.engine.knockout import knockout_plan
from flowcheck.engine.scoring import no_padding
from flowcheck.models.decoder import Decoder, LMInputs, UnsupportedModelError


def query_row_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None,
    rows: torch.Tensor,
    scaling: float | None = None,
) -> torch.Tensor:
    """Attention weights of query rows `rows` (indices into the q_len queries), [B, H, r, kv_len].

    `query` [B, H, q_len, d], `key` [B, Hk, kv_len, d] (H a multiple of Hk: grouped-query heads share keys, as
    transformers' ``repeat_kv``), `mask` boolean (True = may read) or additive, broadcastable to
    [B, H, q_len, kv_len], or None (causal, queries being the last q_len positions). `scaling` defaults to
    1/sqrt(d). A row with no readable key gives zeros (sdpa gives NaN there). Raises ValueError when the head
    counts do not divide."""
    _batch, heads, q_len, dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[-2]
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads do not share {kv_heads} key heads evenly")
    key = key.repeat_interleave(heads // kv_heads, dim=1)
    q = query[:, :, rows].float()
    scores = q @ key.float().transpose(-1, -2) * (dim**-0.5 if scaling is None else scaling)
    if mask is None:
        positions = torch.arange(kv_len - q_len, kv_len, device=query.device)[rows]
        allowed = positions[:, None] >= torch.arange(kv_len, device=query.device)[None, :]
        scores = scores.masked_fill(~allowed, float("-inf"))
    elif mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask[..., rows, -kv_len:], float("-inf"))
    else:
        scores = scores + mask[..., rows, -kv_len:].float()
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


class AttentionRecorder:
    """Collects head-averaged (or per-head) weights of chosen query positions in chosen layers during one forward.

    `weights[layer]`: [B, r, kv_len] (heads averaged) or [B, H, r, kv_len] (`average_heads=False`), rows in the
    order of `queries` (absolute positions of the full sequence)."""

    def __init__(self, decoder: Decoder, queries: Sequence[int], layers: Iterable[int], average_heads: bool = True):
        self.layer_of = {id(decoder.attention[layer]): int(layer) for layer in layers}
        self.queries = torch.as_tensor(list(queries), dtype=torch.long)
        self.average_heads = average_heads
        self.weights: dict[int, torch.Tensor] = {}

    def __call__(self, module, query, key, mask, kwargs) -> None:
        layer = self.layer_of.get(id(module))
        if layer is None:
            return
        if kwargs.get("softcap") is not None or getattr(module, "sinks", None) is not None:
            raise UnsupportedModelError(
                f"the attention of layer {layer} uses soft-capping or attention sinks; its weights are not a plain "
                "softmax of q k^T and flowcheck does not compute them"
            )
        q_len, kv_len = query.shape[-2], key.shape[-2]
        if q_len != kv_len:
            raise RuntimeError("attention weights are computed on full forwards (queries = keys), not on a suffix")
        rows = self.queries.to(query.device)
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= q_len):
            raise ValueError(f"query positions {self.queries.tolist()} are outside a sequence of {q_len}")
        scaling = kwargs.get("scaling", getattr(module, "scaling", None))
        w = query_row_weights(query, key, mask, rows, scaling)
        self.weights[layer] = (w.mean(dim=1) if self.average_heads else w).detach()


@contextmanager
def recording(
    decoder: Decoder, queries: Sequence[int], layers: Iterable[int], average_heads: bool = True
) -> Iterator[AttentionRecorder]:
    """Inside, full forwards of `decoder` that run through flowcheck's attention function (a `knockout_plan`
    context, possibly empty) record the weights of `queries` in `layers` (`AttentionRecorder.weights`)."""
    recorder = AttentionRecorder(decoder, queries, layers, average_heads)
    with observing(recorder):
        yield recorder


@torch.inference_mode()
def attention_rows(
    decoder: Decoder,
    inputs: LMInputs,
    queries: Sequence[int],
    layers: Iterable[int],
    plan: dict | None = None,
    average_heads: bool = True,
) -> dict[int, torch.Tensor]:
    """One full forward of `inputs` (under knockout `plan`: {layer: BlockedSpec}, none by default); per layer of
    `layers`, the attention weights of query positions `queries`: [r, n] with heads averaged, [H, r, n] otherwise
    (batch row 0). Raises UnsupportedModelError when a layer's attention did not run through flowcheck's function."""
    layers = sorted({int(layer) for layer in layers})
    with knockout_plan(decoder, plan or {}), recording(decoder, queries, layers, average_heads) as recorder:
        decoder.module(**inputs.kwargs(), attention_mask=no_padding(inputs), use_cache=False)
    missing = [layer for layer in layers if layer not in recorder.weights]
    if missing:
        raise UnsupportedModelError(
            f"the attention of layer(s) {missing} did not run through flowcheck's attention function; this model's "
            "attention does not dispatch on config._attn_implementation"
        )
    return {layer: recorder.weights[layer][0] for layer in layers}
