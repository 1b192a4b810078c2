"""VideoLLaMA3 in the transformers format (``video_llama_3``, e.g. lkhl/VideoLLaMA3-2B-Image-HF).

The processor expands ``<|video_pad|>`` into ``Time 0.5s:<|video_pad|>...,Time 1.5s:...`` per frame
(the authors' prompt, official-protocol.md 6.2), so each frame is its own block with its timestamp;
token compression is off (the protocol's ``use_token_compression=False``). Timestamps are the
seconds of the sampled frames in the sample's video; when the file cannot be opened (frames given
directly), frames are labelled one second apart.
"""

from __future__ import annotations

import numpy as np
from transformers import VideoLlama3ForConditionalGeneration
from transformers.video_utils import VideoMetadata

from flowcheck.data.frames import sample_frame_times
from flowcheck.data.sample import Sample
from flowcheck.models.hf_native import HFVideoAdapter
from flowcheck.models.registry import register


@register
class VideoLlama3Adapter(HFVideoAdapter):
    family = "videollama3"
    model_types = ("video_llama_3",)
    description = "VideoLLaMA3, transformers format (per-frame blocks with timestamps, no token compression)"
    model_class = VideoLlama3ForConditionalGeneration
    system_prompt = None  # the authors' VideoLLaMA3 prompt has no system message

    def processor_inputs(self, text: str, frames: np.ndarray, sample: Sample) -> dict:
        times = sample_frame_times(sample, len(frames))
        # fps 1000 with millisecond indices gives the timestamps exactly
        metadata = VideoMetadata(
            total_num_frames=len(frames), fps=1000.0, frames_indices=[round(t * 1000) for t in times]
        )
        return dict(
            self.processor(
                text=text,
                videos=[list(frames)],
                video_metadata=[metadata],
                do_sample_frames=False,
                use_token_compression=False,
                return_tensors="pt",
            )
        )
