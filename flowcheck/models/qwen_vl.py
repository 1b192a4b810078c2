"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL (transformers-native).

The processor expands ``<|video_pad|>`` into temporal groups of merged patches (two frames per
group with the default temporal patch size); the model computes multimodal rotary positions
from ``mm_token_type_ids`` and the video grid, which the captured decoder inputs carry. Qwen3-VL
interleaves per-frame timestamps (so each frame is its own block, with its timestamp) and adds
deepstack visual features after its first layers, which a suffix forward must slice and, for
layers it bypasses, leave out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import (
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)

from flowcheck.data.sample import Sample
from flowcheck.data.video import VideoFrames
from flowcheck.models.base import EncodedSample
from flowcheck.models.hf_native import HFVideoAdapter
from flowcheck.models.registry import register


class _QwenAdapter(HFVideoAdapter):
    needs_times = True

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict[str, torch.Tensor]:
        # the frames were already sampled at segment centres: the processor must not resample them; it gets
        # their real times (transformers' VideoMetadata) for timestamps and temporal positions
        return self.timed_processor_inputs(text, video)

    def temporal_groups(self, model_inputs: dict[str, Any], frames: np.ndarray) -> int:
        return int(model_inputs["video_grid_thw"][0][0])

    no_frame_grid = "the temporal groups carry timestamp text besides their merged patches"

    def frame_grid(self, model_inputs: dict[str, Any], frames: np.ndarray, groups) -> tuple[int, int] | None:
        """The merged patch grid (h / m, w / m) of ``video_grid_thw`` with m the vision config's
        ``spatial_merge_size``, row-major (the merger reads m x m blocks in raster order); None when a temporal group
        holds other tokens too (Qwen3-VL's timestamps)."""
        _, h, w = (int(v) for v in model_inputs["video_grid_thw"][0])
        merge = int(getattr(self.model.config.vision_config, "spatial_merge_size", 2))
        grid = (h // merge, w // merge)
        return grid if all(len(g) == grid[0] * grid[1] for g in groups) else None


@register
class Qwen2VLAdapter(_QwenAdapter):
    family = "qwen2-vl"
    model_types = ("qwen2_vl",)
    description = "Qwen2-VL (multimodal rotary positions; 2 frames per temporal group)"
    model_class = Qwen2VLForConditionalGeneration
    needs_times = False  # Qwen2-VL's temporal positions count groups; no time reaches the model

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict[str, torch.Tensor]:
        return dict(self.processor(text=text, videos=[list(video.frames)], do_sample_frames=False, return_tensors="pt"))


@register
class Qwen25VLAdapter(_QwenAdapter):
    family = "qwen2.5-vl"
    model_types = ("qwen2_5_vl",)
    description = "Qwen2.5-VL (multimodal rotary positions with absolute time)"
    model_class = Qwen2_5_VLForConditionalGeneration

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict[str, torch.Tensor]:
        """The processor's inputs with ``second_per_grid_ts`` (seconds per temporal group) from the real fps.

        Qwen2_5_VLProcessor (what Qwen2.5-VL checkpoints ship) derives it from the metadata; a checkpoint
        whose preprocessor names Qwen2VLProcessor gives none, and the model would then assume 1 s per
        group, so it is added by the same rule: temporal_patch_size / sampled fps, where sampled fps =
        frames shown / total frames * fps (transformers' ``VideoMetadata.sampled_fps``).
        """
        inputs = self.timed_processor_inputs(text, video)
        if "second_per_grid_ts" not in inputs:
            patch = int(self.model.config.vision_config.temporal_patch_size)
            inputs["second_per_grid_ts"] = torch.tensor([patch / video.metadata().sampled_fps])
        return inputs


def deepstack_suffix(extra: dict[str, Any], start: int, first_layer: int, rows: int) -> dict[str, Any]:
    """Qwen3-VL extras for positions >= start: the visual mask and deepstack features sliced; layers below
    `first_layer` are bypassed in a suffix forward, so their (already applied) additions are zeroed."""
    mask = extra["visual_pos_masks"]
    before = int(mask[0, :start].sum())
    suffix_mask = mask[:, start:]
    embeds = []
    for layer, feature in enumerate(extra["deepstack_visual_embeds"]):
        part = feature[before:]
        if layer < first_layer:
            part = torch.zeros_like(part)
        embeds.append(part.repeat(rows, 1) if rows > 1 else part)
    out = {k: v for k, v in extra.items() if k not in ("visual_pos_masks", "deepstack_visual_embeds")}
    out["visual_pos_masks"] = suffix_mask.expand(rows, -1) if rows > 1 else suffix_mask
    out["deepstack_visual_embeds"] = embeds
    return out


def deepstack_extend(extra: dict[str, Any], count: int) -> dict[str, Any]:
    """Qwen3-VL extras for the prompt followed by `count` text positions: ``visual_pos_masks`` [1, n] gets False for
    the new positions, the deepstack features ([visual tokens, d] per layer) stay as they are. The deepstack
    additions belong to the prompt's visual positions only; transformers' ``generate`` passes the pixel values (and
    so the features) at the prefill only (``MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL``)."""
    mask = extra["visual_pos_masks"]
    tail = torch.zeros(*mask.shape[:-1], count, dtype=mask.dtype, device=mask.device)
    return {**extra, "visual_pos_masks": torch.cat([mask, tail], dim=-1)}


@register
class Qwen3VLAdapter(_QwenAdapter):
    """Qwen3-VL: the processor writes ``<t seconds>`` before each temporal group, from the real times."""

    family = "qwen3-vl"
    model_types = ("qwen3_vl",)
    description = "Qwen3-VL (per-frame timestamps, deepstack visual features)"
    model_class = Qwen3VLForConditionalGeneration

    def encode(self, sample, frames) -> EncodedSample:
        encoded = super().encode(sample, frames)
        if "deepstack_visual_embeds" in encoded.inputs.extra:
            encoded.inputs.suffix_extra = deepstack_suffix
            encoded.inputs.extend_extra = deepstack_extend
        return encoded


@register
class Glm4vAdapter(_QwenAdapter):
    """GLM-4.1V / 4.5V: ``<|video|>`` expands into per-frame ``<|begin_of_image|><|image|>...<|end_of_image|>t``
    blocks; the visual embeddings sit on the image tokens; multimodal rotary positions as Qwen2-VL."""

    family = "glm4v"
    model_types = ("glm4v", "glm4v_moe")
    description = "GLM-4.1V / GLM-4.5V (per-frame image blocks with timestamps)"

    @classmethod
    def from_pretrained(cls, name_or_path: str, **options: Any) -> Glm4vAdapter:
        from transformers import AutoModelForImageTextToText

        cls.model_class = AutoModelForImageTextToText
        return super().from_pretrained(name_or_path, **options)

    def placeholder_token_id(self) -> int:
        return int(self.processor.video_token_id)

    def video_token_id(self) -> int:
        return int(self.processor.image_token_id)
