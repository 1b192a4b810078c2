"""The vision attention of the authors' VideoLLaMA3 runs, for transformers' VideoLlama3VisionModel.

The authors load VideoLLaMA3 with ``attn_implementation="eager"`` (official-protocol.md 1.2), and the
remote encoder's eager attention adds its boolean block-diagonal mask to the scores instead of
masking with it (``attn_weights + attention_mask``): pairs in the same frame get +1, pairs across
frames 0, nothing is removed. So in those runs every video token attends to every frame inside the
vision encoder. Its flash-attention path, and transformers' class, attend within each frame only.
`use_authors_vision_attention` makes a loaded model compute the former.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface

IMPLEMENTATION = "flowcheck_videollama3_authors_eager"


def authors_eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    frame_length: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores over the whole video plus 1 where query and key share a frame; softmax in fp32."""
    if frame_length is None:
        raise RuntimeError("the authors' VideoLLaMA3 vision attention needs the frame length (see the forward hook)")
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    frame = torch.arange(query.shape[2], device=query.device) // frame_length
    scores = scores + (frame[:, None] == frame[None]).to(scores.dtype)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


AttentionInterface.register(IMPLEMENTATION, authors_eager_attention)


def _whole_video_segments(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Make each video one attention segment and tell the attention function the frame length."""
    grid = kwargs["grid_thw"] if "grid_thw" in kwargs else args[1]
    if len({int(h * w) for _, h, w in grid.tolist()}) != 1:
        raise ValueError("the authors' VideoLLaMA3 vision attention needs frames of one size in a batch")
    lengths = (grid[:, 0] * grid[:, 1] * grid[:, 2]).cumsum(0).to(torch.int32)
    cu_seqlens = torch.cat([torch.zeros(1, dtype=torch.int32, device=grid.device), lengths])
    return args, {**kwargs, "cu_seqlens": cu_seqlens, "frame_length": int(grid[0, 1] * grid[0, 2])}


def use_authors_vision_attention(vision_model: nn.Module) -> None:
    """Switch a VideoLlama3VisionModel to the authors' eager vision attention (for good)."""
    vision_model.config._attn_implementation = IMPLEMENTATION
    vision_model.register_forward_pre_hook(_whole_video_segments, with_kwargs=True)
