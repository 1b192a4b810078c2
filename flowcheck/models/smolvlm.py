"""SmolVLM2 (transformers-native): ``<video>`` expands into an intro sentence and per-frame
``Frame from mm:ss:<fake_token_around_image><global-img><image>...`` blocks; the embeddings sit on the
image tokens."""

from __future__ import annotations

from transformers import SmolVLMForConditionalGeneration

from flowcheck.data.sample import Sample
from flowcheck.data.video import VideoFrames
from flowcheck.models.hf_native import HFVideoAdapter
from flowcheck.models.registry import register


@register
class SmolVLMAdapter(HFVideoAdapter):
    family = "smolvlm"
    model_types = ("smolvlm",)
    description = "SmolVLM2 (per-frame image blocks with timestamps; needs num2words)"
    model_class = SmolVLMForConditionalGeneration
    needs_times = True  # "Frame from mm:ss" labels and the video's duration

    def placeholder_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.processor.video_token))

    def video_token_id(self) -> int:
        return int(self.processor.image_token_id)

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict:
        """Per-frame ``Frame from mm:ss`` labels and the intro's duration from the frames' real times."""
        return self.timed_processor_inputs(text, video)
