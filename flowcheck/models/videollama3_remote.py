"""The paper's DAMO-NLP-SG/VideoLLaMA3-7B in its original remote-code format (model_type ``videollama3_qwen2``).

No remote code runs. The remote model is transformers' Qwen2ForCausalLM plus ``model.vision_encoder``
(a SigLIP-NaViT with 2-D rope, per-frame attention, bilinear 2 x 2 downsampling) and
``model.mm_projector`` (Linear -> GELU -> Linear): the same computation as transformers'
VideoLlama3ForConditionalGeneration, so its weights load into that class under renamed keys.
Frames are resized by the remote image processor's rule (a visual-token budget shared by the
frames, sides multiples of patch x merge), and the prompt is the authors' (official-protocol.md
6.2): ``<|im_start|>user\\nTime 0.5s:<image>...,Time 1.5s:<image>...\\nQuestion: ...`` with one
``<image>`` per visual token, no system message, no answer prefix. Each frame's group starts with
its separating comma and carries its timestamp text, as in the authors' layout (3.2).

Open-ended prompt (`encode_open_ended`): the protocol gives no open-ended template for VideoLLaMA3 (its open-ended
analysis, section 11, runs the LLaVA-format ``eval_vcgbench`` conversation only). The model's multiple-choice prompt
is used with the options, the option instruction and the answer prefix (none here) removed, as the
transformers-native adapters do:
``<|im_start|>user\\nTime ...:<image>...\\n{question}<|im_end|>\\n<|im_start|>assistant\\n``, the question as
it is (no ``Question:`` label, which belongs to the options' qa template).
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import torch
from transformers import VideoLlama3Config, VideoLlama3ForConditionalGeneration
from transformers.image_transforms import resize
from transformers.image_utils import ChannelDimension, PILImageResampling
from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import VideoLlama3ImageProcessorPil

from flowcheck.data.sample import Sample
from flowcheck.data.video import VideoFrames
from flowcheck.layout import Span, TokenLayout
from flowcheck.models.base import AdapterError, EncodedSample
from flowcheck.models.capture import capture_decoder_inputs, lm_inputs_from_capture
from flowcheck.models.hf_native import HFVideoAdapter, torch_dtype
from flowcheck.models.registry import checkpoint_json, register
from flowcheck.models.spliced import tokenizer_from_files
from flowcheck.models.videollama3_authors_vision import use_authors_vision_attention
from flowcheck.prompt import CharSpan, mc_text, open_text, token_span

IMAGE_TOKEN = "<image>"
USER_HEAD = "<|im_start|>user\n"
ASSISTANT_HEAD = "<|im_end|>\n<|im_start|>assistant\n"

# The remote checkpoint's names -> transformers' VideoLlama3ForConditionalGeneration (regex, applied on load).
WEIGHT_RENAMES = {
    r"^model\.vision_encoder\.": "model.vision_model.",
    r"^model\.mm_projector\.": "model.projector.",
    r"^model\.(embed_tokens|layers|norm)\.": r"model.language_model.\1.",
}
_VISION_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_channels",
    "patch_size",
    "hidden_act",
    "layer_norm_eps",
    "attention_dropout",
)
_NOT_TEXT_KEYS = {
    "vision_encoder",
    "vision_encoder_config",
    "mm_projector_type",
    "use_token_compression",
    "image_token_index",
    "auto_map",
    "architectures",
    "model_type",
    "_name_or_path",
    "transformers_version",
}


@cache
def authors_settings() -> dict[str, Any]:
    """The authors' VideoLLaMA3 settings (flowcheck/specs/videollama3.json)."""
    return json.loads(resources.files("flowcheck.specs").joinpath("videollama3.json").read_text())


def vision_encoder_config(raw: dict) -> dict:
    """The vision encoder's config: carried in config.json, or read from the checkpoint it names (its main revision)."""
    vision = raw.get("vision_encoder_config") or {}
    if not vision and raw.get("vision_encoder"):
        vision = checkpoint_json(raw["vision_encoder"], "config.json")
    if not vision:
        raise AdapterError("this videollama3_qwen2 config has neither vision_encoder_config nor vision_encoder")
    return vision


def convert_config(raw: dict) -> VideoLlama3Config:
    """transformers' VideoLlama3Config for a remote-code ``videollama3_qwen2`` config."""
    projector = raw.get("mm_projector_type", "mlp2x_gelu")
    if projector != "mlp2x_gelu":
        raise AdapterError(
            f"mm_projector_type {projector!r} is not supported; flowcheck loads VideoLLaMA3 checkpoints with the "
            "mlp2x_gelu projector (the released ones), as transformers' VideoLlama3 has"
        )
    if "image_token_index" not in raw:
        raise AdapterError("this videollama3_qwen2 config has no image_token_index; the <image> token is unknown")
    vision = vision_encoder_config(raw)
    text = {k: v for k, v in raw.items() if k not in _NOT_TEXT_KEYS and not k.startswith("_")}
    token = int(raw["image_token_index"])
    return VideoLlama3Config(
        text_config={**text, "model_type": "qwen2"},
        vision_config={
            **{k: vision[k] for k in _VISION_KEYS if k in vision},
            "rope_parameters": {"rope_type": "axial", "rope_theta": 10000.0},  # the remote encoder's fixed theta
        },
        image_token_id=token,
        video_token_id=token,  # the remote format marks images and video frames with the same <image> token
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
    )


def frame_size(height: int, width: int, frames: int, factor: int, min_tokens: int, max_tokens: int) -> tuple[int, int]:
    """The remote image processor's target size of every frame of a video (``simple_batched_resize``).

    Sides become multiples of `factor` (patch x merge); the `max_tokens` budget (in merged tokens) is
    shared by the `frames`; a frame is never below `min_tokens`.
    """
    min_pixels, max_pixels = min_tokens * factor * factor, max_tokens * factor * factor
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels // frames:
        beta = math.sqrt((height * width) / (max_pixels // frames))
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    if h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    if h_bar < factor or w_bar < factor:
        raise AdapterError(f"frames of {height} x {width} px are too small or too elongated for VideoLLaMA3")
    return h_bar, w_bar


class RemoteVideoLlama3Processor:
    """The remote checkpoint's tokenizer and image preprocessing, for videos of one sample."""

    def __init__(self, tokenizer, preprocessor: dict, merge_size: int, tokens_per_frame: int) -> None:
        self.tokenizer = tokenizer
        self.merge_size = merge_size
        self.tokens_per_frame = tokens_per_frame
        self.patch_size = int(preprocessor.get("patch_size", 14))
        self.min_tokens = int(preprocessor.get("min_tokens", 16))
        self.resample = PILImageResampling(preprocessor.get("resample", PILImageResampling.BICUBIC))
        self.pixels = VideoLlama3ImageProcessorPil(
            do_resize=False,
            do_rescale=preprocessor.get("do_rescale", True),
            rescale_factor=preprocessor.get("rescale_factor", 1 / 255),
            do_normalize=preprocessor.get("do_normalize", True),
            image_mean=preprocessor.get("image_mean", [0.5, 0.5, 0.5]),
            image_std=preprocessor.get("image_std", [0.5, 0.5, 0.5]),
            patch_size=self.patch_size,
            temporal_patch_size=1,
            merge_size=merge_size,
        )

    def video_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """``pixel_values_videos``, ``video_grid_thw`` and ``video_merge_sizes`` of [T, H, W, 3] uint8 frames."""
        count, height, width = frames.shape[:3]
        size = frame_size(
            height,
            width,
            count,
            self.patch_size * self.merge_size,
            self.min_tokens,
            self.tokens_per_frame * count,
        )
        resized = [resize(f, size, resample=self.resample, input_data_format=ChannelDimension.LAST) for f in frames]
        out = self.pixels(resized, return_tensors="pt")
        grid = out["image_grid_thw"]
        return {
            "pixel_values_videos": out["pixel_values"],
            "video_grid_thw": torch.tensor([[count, int(grid[0, 1]), int(grid[0, 2])]]),
            "video_merge_sizes": torch.tensor([self.merge_size]),
        }


def timestamp(seconds: float) -> str:
    """A frame time as the authors' chat template prints it (Jinja ``round(1) | string``)."""
    return str(round(float(seconds), 1))


def authors_prompt(
    sample: Sample, times: list[float], tokens_per_frame: int, *, open_ended: bool = False
) -> tuple[str, dict[str, CharSpan]]:
    """The authors' VideoLLaMA3 prompt with character spans of the video, the frame separators and the question.

    `times` are the frames' times (seconds), `tokens_per_frame` the ``<image>`` tokens of each frame. `open_ended`:
    the question as it is, without options and without the option instruction (module docstring), so
    ``question`` and ``question_only`` are the same span and there are no ``option:<i>`` spans.
    """
    block = IMAGE_TOKEN * tokens_per_frame
    frames = [f"Time {timestamp(t)}s:{block}" for t in times]
    video = ",".join(frames)
    if open_ended:
        mc = open_text(sample.question)
    else:
        mc = mc_text(sample.question, sample.options, post="\n" + authors_settings()["instruction"])
    head = USER_HEAD
    text = head + video + "\n" + mc.text + ASSISTANT_HEAD
    spans: dict[str, CharSpan] = {"video": CharSpan(len(head), len(head) + len(video))}
    comma = len(head)
    for i, frame in enumerate(frames[:-1]):
        comma += len(frame)
        spans[f"separator:{i}"] = CharSpan(comma, comma + 1)
        comma += 1
    u = len(head) + len(video) + 1
    spans |= {
        "question": mc.question.shifted(u),
        "question_only": mc.question_only.shifted(u),
        "post": mc.post.shifted(u),
    }
    spans |= {f"option:{i}": s.shifted(u) for i, s in enumerate(mc.options)}
    return text, spans


@register
class VideoLlama3RemoteAdapter(HFVideoAdapter):
    family = "videollama3-remote"
    model_types = ("videollama3_qwen2",)
    description = "VideoLLaMA3 remote-code format (the paper's VideoLLaMA3-7B), loaded into transformers' class"
    model_class = VideoLlama3ForConditionalGeneration
    answer_prefix = ASSISTANT_HEAD  # no answer prefix: the letter follows the assistant turn's opening
    needs_times = True  # "Time t s:" before every frame

    @classmethod
    def from_pretrained(cls, name_or_path: str, **options: Any) -> VideoLlama3RemoteAdapter:
        revision = options.get("revision")
        raw = options.get("config") or checkpoint_json(name_or_path, "config.json", revision)
        model, info = VideoLlama3ForConditionalGeneration.from_pretrained(
            name_or_path,
            revision=revision,
            config=convert_config(raw),
            key_mapping=WEIGHT_RENAMES,
            dtype=torch_dtype(options.get("dtype", "float32")),
            attn_implementation=options.get("attn_implementation", "sdpa"),
            device_map=options.get("device_map"),
            output_loading_info=True,
        )
        if info["missing_keys"] or info["mismatched_keys"]:
            wrong = sorted(info["missing_keys"]) + sorted(str(k) for k in info["mismatched_keys"])
            raise AdapterError(
                f"{name_or_path}: {len(wrong)} weights are missing or mis-shaped after renaming the remote-code "
                f"names, e.g. {wrong[:3]}; is this a VideoLLaMA3 checkpoint (videollama3_qwen2)?"
            )
        if options.get("device_map") is None:
            model.to(options.get("device", "cpu"))
        tokenizer = cls.load_tokenizer(name_or_path, revision=revision)
        if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != raw["image_token_index"]:
            raise AdapterError(
                f"{name_or_path}: the tokenizer's {IMAGE_TOKEN} is not the config's image_token_index "
                f"{raw['image_token_index']}; the checkpoint's tokenizer files do not belong to its weights"
            )
        settings = authors_settings()
        processor_config = checkpoint_json(name_or_path, "processor_config.json", revision, required=False) or {}
        processor = RemoteVideoLlama3Processor(
            tokenizer,
            checkpoint_json(name_or_path, "preprocessor_config.json", revision),
            merge_size=int(processor_config.get("video_merge_size", settings["video_merge_size"])),
            tokens_per_frame=int(settings["visual_tokens_per_frame"]),
        )
        return cls(model, processor, name=name_or_path, num_frames=int(options.get("num_frames", 8)))

    @classmethod
    def load_tokenizer(cls, name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
        return tokenizer_from_files(name_or_path, revision)

    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict[str, torch.Tensor]:
        """Model inputs of an already rendered prompt (one <image> per visual token) and its frames."""
        ids = torch.tensor(self.tokenizer(text)["input_ids"])
        return self.model_inputs(ids, self.processor.video_inputs(video.frames))

    def model_inputs(self, ids: torch.Tensor, video_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The VLM's keyword arguments for token ids and video inputs, on the model's device and dtype."""
        inputs = {"input_ids": ids[None], "attention_mask": torch.ones(1, len(ids), dtype=torch.long), **video_inputs}
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.dtype)
        return inputs

    def render_for(
        self,
        sample: Sample,
        video: VideoFrames,
        video_inputs: dict[str, torch.Tensor],
        *,
        open_ended: bool = False,
    ) -> tuple[str, dict[str, CharSpan]]:
        """The authors' prompt (or with `open_ended`, the open-ended prompt) for a sample whose frames (with their
        real times, `video`) were preprocessed into `video_inputs`."""
        count, height, width = video_inputs["video_grid_thw"][0].tolist()
        if count != len(video) or video.times is None:
            raise AdapterError(f"{count} preprocessed frames but {len(video)} frames with times {video.times}")
        per_frame = height * width // self.processor.merge_size**2
        return authors_prompt(sample, list(video.times), per_frame, open_ended=open_ended)

    def encode(self, sample: Sample, frames: VideoFrames | np.ndarray) -> EncodedSample:
        return self._encode(sample, frames, open_ended=False)

    def encode_open_ended(self, sample: Sample, frames: VideoFrames | np.ndarray) -> EncodedSample:
        """`encode` with the open-ended prompt (module docstring): the layout has no options and
        ``true_index == -1``, the question span is the question text alone, and the encoded sample has no option
        ids. (HFVideoAdapter's version switches its chat-template rendering, which this family does not use.)"""
        return self._encode(sample, frames, open_ended=True)

    def _encode(self, sample: Sample, frames: VideoFrames | np.ndarray, *, open_ended: bool) -> EncodedSample:
        video_frames = self.video_input(frames)
        frames = video_frames.frames
        video_inputs = self.processor.video_inputs(frames)
        text, spans = self.render_for(sample, video_frames, video_inputs, open_ended=open_ended)
        enc = self.tokenizer(text, return_offsets_mapping=True)
        ids, offsets = torch.tensor(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        n = len(ids)

        def span(name: str) -> Span:
            return Span(*token_span(offsets, spans[name]))

        video = span("video")
        cuts = [span(f"separator:{i}").start for i in range(len(frames) - 1)]
        question = span("question")
        layout = TokenLayout(
            n=n,
            video=video,
            frames=tuple(Span(a, b) for a, b in zip([video.start, *cuts], [*cuts, video.end], strict=True)),
            question=question,
            question_only=span("question_only"),
            options=() if open_ended else tuple(span(f"option:{i}") for i in range(len(sample.options))),
            true_index=-1 if open_ended else sample.answer_index,
            system=Span(0, video.start),
            post=Span(question.end, n - 1) if question.end < n - 1 else None,
        )
        captured = capture_decoder_inputs(self.model, self.decoder, self.model_inputs(ids, video_inputs))
        inputs = lm_inputs_from_capture(captured)
        self.check_video_rows(inputs, ids, video)
        option_ids = () if open_ended else self.option_ids(len(sample.options))
        return EncodedSample(sample.id, layout, inputs, option_ids, ids)


@register
class VideoLlama3RemoteAuthorsAdapter(VideoLlama3RemoteAdapter):
    """Chosen by name only (``NAME@videollama3-remote-authors``): reproduces the authors' runs, whose
    eager vision attention lets every frame attend to every frame (see videollama3_authors_vision)."""

    family = "videollama3-remote-authors"
    model_types = ()
    description = "VideoLLaMA3 remote-code format with the authors' eager vision attention (frames attend across)"

    @classmethod
    def from_pretrained(cls, name_or_path: str, **options: Any) -> VideoLlama3RemoteAuthorsAdapter:
        adapter = super().from_pretrained(name_or_path, **options)
        use_authors_vision_attention(adapter.model.model.vision_model)
        return adapter
