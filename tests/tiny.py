"""Tiny random models of real transformers classes, built offline from configs, for engine tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from flowcheck.layout import TokenLayout, synthetic_layout

VOCAB = 128
VIDEO_TOKEN = 120


def _text_kwargs(layers: int) -> dict:
    return dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )


def tiny_llama(layers: int = 4, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**_text_kwargs(layers))).eval()


def tiny_qwen2(layers: int = 4, seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(**_text_kwargs(layers))).eval()


def tiny_llava_next_video(layers: int = 4, seed: int = 0) -> LlavaNextVideoForConditionalGeneration:
    """CLIP 32 px / patch 8 (16 patches), pooled with stride 2: 4 video tokens per frame."""
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    config = LlavaNextVideoConfig(
        vision_config=vision.to_dict(),
        text_config=LlamaConfig(**_text_kwargs(layers)).to_dict(),
        video_token_id=VIDEO_TOKEN,
        image_token_id=VIDEO_TOKEN + 1,
        spatial_pool_stride=2,
        vision_feature_layer=-1,
    )
    return LlavaNextVideoForConditionalGeneration(config).eval()


@dataclass
class Prompt:
    """Token ids with a layout; `video_inputs` holds the VLM's pixel inputs when there is a video."""

    input_ids: torch.Tensor
    layout: TokenLayout
    video_inputs: dict


def text_prompt(frames: int = 4, tokens_per_frame: int = 4, seed: int = 1) -> Prompt:
    """A layout-shaped prompt of random text ids (video positions are ordinary tokens)."""
    layout = synthetic_layout(
        system=3,
        frames=frames,
        tokens_per_frame=tokens_per_frame,
        between=2,
        question_only=4,
        option_lengths=[3, 3, 3],
        true_index=1,
        post=3,
    )
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VIDEO_TOKEN, (1, layout.n), generator=gen)
    return Prompt(ids, layout, {})


def video_prompt(frames: int = 4, seed: int = 1) -> Prompt:
    """A prompt for `tiny_llava_next_video`: video placeholder ids at the layout's video span."""
    prompt = text_prompt(frames=frames, tokens_per_frame=4, seed=seed)
    ids = prompt.input_ids.clone()
    ids[0, prompt.layout.video.start : prompt.layout.video.end] = VIDEO_TOKEN
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(1, frames, 3, 32, 32, generator=gen)
    return Prompt(ids, prompt.layout, {"pixel_values_videos": pixels})
