"""InternVL in the transformers format (e.g. OpenGVLab/InternVL3-8B-hf).

The prompt's ``<video>`` placeholder becomes ``Frame1: <img><IMG_CONTEXT>...</img>`` per frame; the
context tokens carry the visual embeddings, so each frame is its own block (with its label text).
"""

from __future__ import annotations

from transformers import InternVLForConditionalGeneration

from flowcheck.data.sample import Sample
from flowcheck.data.video import VideoFrames
from flowcheck.models.hf_native import HFVideoAdapter
from flowcheck.models.registry import register


@register
class InternVLAdapter(HFVideoAdapter):
    family = "internvl"
    model_types = ("internvl",)
    description = "InternVL, transformers format (per-frame <img> blocks)"
    model_class = InternVLForConditionalGeneration

    def placeholder_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.processor.video_token))

    def video_token_id(self) -> int:
        return int(self.processor.image_token_id)

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict:
        return dict(self.processor(text=text, videos=[list(video.frames)], return_tensors="pt"))
