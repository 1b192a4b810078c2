"""LLaVA-NeXT-Video (transformers-native): one <video> placeholder, pooled CLIP tokens per frame."""

from __future__ import annotations

from transformers import LlavaNextVideoForConditionalGeneration

from flowcheck.models.hf_native import HFVideoAdapter
from flowcheck.models.registry import register


@register
class LlavaNextVideoAdapter(HFVideoAdapter):
    family = "llava-next-video"
    model_types = ("llava_next_video",)
    description = "LLaVA-NeXT-Video (llava-hf/LLaVA-NeXT-Video-7B-hf and the bundled tiny models)"
    model_class = LlavaNextVideoForConditionalGeneration

    def frame_grid(self, model_inputs, frames, groups) -> tuple[int, int]:
        """The pooled patch grid: (image_size / patch_size / spatial_pool_stride) squared, row-major (transformers'
        ``LlavaNextVideoPooler`` pools the [side, side] patch map and flattens it row by row)."""
        config = self.model.config
        side = config.vision_config.image_size // config.vision_config.patch_size // config.spatial_pool_stride
        return side, side

    @property
    def tokens_per_frame(self) -> int | None:
        config = self.model.config
        side = config.vision_config.image_size // config.vision_config.patch_size
        return (side // config.spatial_pool_stride) ** 2
