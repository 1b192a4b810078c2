"""LLaVA-OneVision and Video-LLaVA (transformers-native): one video placeholder expanded per frame.

LLaVA-OneVision pools every frame to half its patch grid and appends one newline embedding after the
last frame (it belongs to the last frame's span); Video-LLaVA keeps each frame's patches and CLS.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
from transformers import LlavaOnevisionForConditionalGeneration, VideoLlavaForConditionalGeneration

from flowcheck.data.sample import Sample
from flowcheck.data.video import VideoFrames
from flowcheck.layout import Span
from flowcheck.models.base import AdapterError
from flowcheck.models.hf_native import HFVideoAdapter
from flowcheck.models.registry import register


@register
class LlavaOnevisionAdapter(HFVideoAdapter):
    family = "llava-onevision"
    model_types = ("llava_onevision",)
    description = "LLaVA-OneVision (frames pooled 2x, one trailing newline token)"
    model_class = LlavaOnevisionForConditionalGeneration
    no_frame_grid = "the last frame's span also holds the trailing newline embedding"

    def frame_spans(
        self, video: Span, blocks: list[Span], model_inputs: dict[str, Any], frames: np.ndarray
    ) -> tuple[Span, ...]:
        count = len(frames)
        if len(blocks) != 1 or (len(blocks[0]) - 1) % count:
            raise AdapterError(f"expected one block of {count} x k + 1 video tokens, got blocks {blocks}")
        per = (len(blocks[0]) - 1) // count
        start = blocks[0].start
        bounds = [video.start] + [start + (i + 1) * per for i in range(count - 1)] + [video.end]
        return tuple(Span(a, b) for a, b in pairwise(bounds))


@register
class VideoLlavaAdapter(HFVideoAdapter):
    family = "video-llava"
    model_types = ("video_llava",)
    description = "Video-LLaVA (LanguageBind; every frame's patches and CLS)"
    model_class = VideoLlavaForConditionalGeneration
    no_frame_grid = "every frame's tokens are its patches plus a CLS token"

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict:
        return dict(self.processor(text=text, videos=[np.asarray(video.frames)], return_tensors="pt"))
