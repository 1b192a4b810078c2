"""VideoLLaMA3 in the transformers format (``video_llama_3``, e.g. lkhl/VideoLLaMA3-2B-Image-HF).

The processor expands ``<|video_pad|>`` into ``Time 0.5s:<|video_pad|>...,Time 1.5s:...`` per frame
(the authors' prompt, official-protocol.md 6.2), so each frame is its own block with its timestamp;
token compression is off (the protocol's ``use_token_compression=False``). Timestamps are the
presentation times of the decoded frames (`VideoFrames`), given to the processor as transformers'
VideoMetadata; frames without times are refused, never labelled 0, 1, 2, ... s.
"""

from __future__ import annotations

from transformers import VideoLlama3ForConditionalGeneration

from flowcheck.data.sample import Sample
from flowcheck.data.video import VideoFrames
from flowcheck.models.hf_native import HFVideoAdapter
from flowcheck.models.registry import register


@register
class VideoLlama3Adapter(HFVideoAdapter):
    family = "videollama3"
    model_types = ("video_llama_3",)
    description = "VideoLLaMA3, transformers format (per-frame blocks with timestamps, no token compression)"
    model_class = VideoLlama3ForConditionalGeneration
    system_prompt = None  # the authors' VideoLLaMA3 prompt has no system message
    needs_times = True  # "Time t s:" before every frame

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict:
        """``Time t s:`` labels from the frames' real times; token compression off, as the protocol runs."""
        return self.timed_processor_inputs(text, video, use_token_compression=False)
