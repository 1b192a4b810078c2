"""SmolVLM2 (transformers-native): ``<video>`` expands into an intro sentence and per-frame
``Frame from mm:ss:<fake_token_around_image><global-img><image>...`` blocks; the embeddings sit on the
image tokens."""

from __future__ import annotations

import numpy as np
from transformers import SmolVLMForConditionalGeneration

from flowcheck.data.sample import Sample
from flowcheck.models.hf_native import HFVideoAdapter
from flowcheck.models.registry import register


@register
class SmolVLMAdapter(HFVideoAdapter):
    family = "smolvlm"
    model_types = ("smolvlm",)
    description = "SmolVLM2 (per-frame image blocks with timestamps; needs num2words)"
    model_class = SmolVLMForConditionalGeneration

    def placeholder_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.processor.video_token))

    def video_token_id(self) -> int:
        return int(self.processor.image_token_id)

    def processor_inputs(self, text: str, frames: np.ndarray, sample: Sample) -> dict:
        return dict(self.processor(text=text, videos=[list(frames)], do_sample_frames=False, return_tensors="pt"))
