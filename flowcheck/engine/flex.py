"""The FlexAttention backend: knockouts expressed as block masks (`torch.nn.attention.flex_attention`).

Selected with the `attention_backend` option ("flex"; default "sdpa"). The readable (query, key) pairs of a
forward (causal mask minus the knocked-out edges) become a `mask_mod` over a dense boolean tensor, from which
`create_block_mask` derives which key blocks each query block reads at all; fully blocked blocks are skipped
by the kernel. On CUDA the kernel is compiled (`torch.compile`); elsewhere flex runs its unfused reference
implementation (correct, slow: it exists so the backend can be tested on CPU against sdpa).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention


@functools.cache
def _compiled():
    return torch.compile(flex_attention, dynamic=False)


def flex_attention_forward(module, query, key, value, allowed: torch.Tensor, scaling: float | None = None, **kwargs):
    """Attention output [B, q, H, d] (transformers' layout) and None, like transformers' attention functions.

    query [B, H, q, d]; key and value [B, Hkv, kv, d]; allowed [B or 1, 1, q, kv] boolean (True = readable).
    Raises ValueError for what flex cannot reproduce here (softcapping, attention sinks, position bias).
    """
    for name in ("softcap", "s_aux", "sinks", "position_bias"):
        if kwargs.get(name) is not None:
            raise ValueError(f"the flex attention backend does not support {name}; use the sdpa backend")
    batch, heads, q_len, _ = query.shape
    kv_len = key.shape[-2]
    mask = allowed[:, 0].expand(batch, q_len, kv_len)

    def mask_mod(b, h, q_idx, kv_idx):
        return mask[b, q_idx, kv_idx]

    block_mask = create_block_mask(mask_mod, batch, None, q_len, kv_len, device=query.device)
    gqa = heads != key.shape[1]
    if query.device.type == "cuda":
        out = _compiled()(query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=gqa)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            out = flex_attention(query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None
