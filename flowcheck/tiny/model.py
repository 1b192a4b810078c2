"""Build the tiny LLaVA-NeXT-Video: a hand-initialised frozen vision tower, a conv pooler and a small Llama.

The vision tower is transformers' CLIP with one encoder layer set to the identity. Its patch
embedding is fixed by hand: for every 8x8 patch it reports the mean colour of each 2x2 sub-block
(48 numbers) and a one-hot patch position (16 numbers). A random CLIP learns nothing on a CPU in
the time available (issue 8: vision gradient norm 0.001), so the tower is frozen and the rest
(pooler, projector, language model) is trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextImageProcessor,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    LlavaNextVideoProcessor,
    LlavaNextVideoVideoProcessor,
    PreTrainedTokenizerFast,
)

from flowcheck.tiny.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN


@dataclass(frozen=True)
class TinyShape:
    """Sizes of the tiny model."""

    frame_size: int = 32
    patch_size: int = 8
    sub_block: int = 2
    text_layers: int = 8
    hidden: int = 128
    heads: int = 4
    intermediate: int = 384
    projector_scale: float = 10.0
    output_init_scale: float = 0.25

    @property
    def patches(self) -> int:
        return (self.frame_size // self.patch_size) ** 2

    @property
    def vision_hidden(self) -> int:
        blocks = (self.patch_size // self.sub_block) ** 2
        return 3 * blocks + self.patches


def build_config(tokenizer: PreTrainedTokenizerFast, shape: TinyShape = TinyShape()) -> LlavaNextVideoConfig:
    """The LlavaNextVideoConfig of the tiny model."""
    vision = CLIPVisionConfig(
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_hidden,
        num_hidden_layers=1,
        num_attention_heads=1,
        image_size=shape.frame_size,
        patch_size=shape.patch_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaNextVideoConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        video_token_id=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        spatial_pool_mode="conv",
        spatial_pool_stride=2,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_grid_pinpoints=[[shape.frame_size, shape.frame_size]],
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    config.flowcheck_tiny_shape = asdict(shape)
    return config


@torch.no_grad()
def hand_initialise_vision(model: LlavaNextVideoForConditionalGeneration, shape: TinyShape) -> None:
    """Fix the CLIP tower to 'mean colour per sub-block + one-hot patch position', and make its layer the identity."""
    vision = model.model.vision_tower
    emb = vision.embeddings
    per_side = shape.patch_size // shape.sub_block
    blocks = per_side**2
    emb.patch_embedding.weight.zero_()
    for c in range(3):
        for by in range(per_side):
            for bx in range(per_side):
                k = c * blocks + by * per_side + bx
                ys = slice(by * shape.sub_block, (by + 1) * shape.sub_block)
                xs = slice(bx * shape.sub_block, (bx + 1) * shape.sub_block)
                emb.patch_embedding.weight[k, c, ys, xs] = 1.0 / shape.sub_block**2
    emb.class_embedding.zero_()
    emb.position_embedding.weight.zero_()
    for p in range(shape.patches):
        emb.position_embedding.weight[p + 1, 3 * blocks + p] = 1.0
    for layer in vision.encoder.layers:
        layer.self_attn.out_proj.weight.zero_()
        layer.self_attn.out_proj.bias.zero_()
        layer.mlp.fc2.weight.zero_()
        layer.mlp.fc2.bias.zero_()
    for param in model.model.vision_tower.parameters():
        param.requires_grad_(False)


@torch.no_grad()
def build_model(
    tokenizer: PreTrainedTokenizerFast, shape: TinyShape = TinyShape(), seed: int = 0
) -> LlavaNextVideoForConditionalGeneration:
    """A freshly initialised tiny model (seeded), vision tower hand-set and frozen."""
    torch.manual_seed(seed)
    model = LlavaNextVideoForConditionalGeneration(build_config(tokenizer, shape))
    hand_initialise_vision(model, shape)
    model.model.multi_modal_projector.linear_2.weight.mul_(shape.projector_scale)
    for layer in model.model.language_model.layers:
        layer.self_attn.o_proj.weight.mul_(shape.output_init_scale)
        layer.mlp.down_proj.weight.mul_(shape.output_init_scale)
    return model


def freeze_vision(model: LlavaNextVideoForConditionalGeneration) -> None:
    """Keep the hand-set vision tower fixed (also after reloading a checkpoint)."""
    for param in model.model.vision_tower.parameters():
        param.requires_grad_(False)


# Pixels are centred on the synthetic background grey, so empty sub-blocks read as zero and colours stand out.
PIXEL_MEAN = 16 / 255
PIXEL_STD = 0.5


def build_processor(tokenizer: PreTrainedTokenizerFast, shape: TinyShape = TinyShape()) -> LlavaNextVideoProcessor:
    """The matching processor: frames kept at their size, centred on the background grey."""
    size = {"shortest_edge": shape.frame_size}
    crop = {"height": shape.frame_size, "width": shape.frame_size}
    common = dict(
        size=size, crop_size=crop, image_mean=[PIXEL_MEAN] * 3, image_std=[PIXEL_STD] * 3, do_convert_rgb=True
    )
    video_processor = LlavaNextVideoVideoProcessor(**common)
    image_processor = LlavaNextImageProcessor(
        **common, image_grid_pinpoints=[[shape.frame_size, shape.frame_size]], do_pad=True
    )
    return LlavaNextVideoProcessor(
        video_processor=video_processor,
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
        patch_size=shape.patch_size,
        vision_feature_select_strategy="default",
        video_token=VIDEO_TOKEN,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )


def pixel_values(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., T, H, W, 3] frames -> the processor's [..., T, 3, H, W] values (no resize needed)."""
    return (frames.movedim(-1, -3).float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
