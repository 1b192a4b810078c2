"""Shared machinery of the transformers-native video families.

Encoding a sample: render the paper's prompt through the processor's chat template (character
spans of every segment known), tokenize with offsets (token spans), let the processor expand the
video placeholder (expanded ids and pixels), map the spans into expanded coordinates (checking
that the text around the video is untouched), and capture the decoder's inputs from the model
itself (the vision tower runs once).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import AutoProcessor

from flowcheck.data.sample import OPTION_LETTERS, Sample
from flowcheck.data.video import VideoFrames
from flowcheck.layout import Span, TokenLayout
from flowcheck.models.base import AdapterError, EncodedSample, ModelAdapter
from flowcheck.models.capture import capture_decoder_inputs, lm_inputs_from_capture
from flowcheck.models.chat_template import SYSTEM_MODES, render_chat, template_source
from flowcheck.prompt import (
    ANSWER_PREFIX,
    SYSTEM_MVBENCH_TURN,
    RenderedPrompt,
    mc_text,
    open_text,
    token_span,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise AdapterError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}") from None


def letter_token_ids(tokenizer, count: int, prefix: str = ANSWER_PREFIX) -> tuple[int, ...]:
    """The token each option letter becomes right after `prefix`; fails clearly unless it is one token."""
    base = tokenizer(prefix, add_special_tokens=False).input_ids
    out = []
    for letter in OPTION_LETTERS[:count]:
        ids = tokenizer(prefix + letter, add_special_tokens=False).input_ids
        unknown = ids[-1:] == [tokenizer.unk_token_id] if tokenizer.unk_token_id is not None else False
        if ids[: len(base)] != base or len(ids) != len(base) + 1 or unknown:
            raise AdapterError(
                f"option letter {letter!r} is not a single token after {prefix!r} for this tokenizer "
                f"({tokenizer.convert_ids_to_tokens(ids[len(base) - 1 :])}); the answer-letter protocol needs one token"
            )
        out.append(ids[-1])
    return tuple(out)


def _runs(positions: list[int]) -> list[Span]:
    """Contiguous runs of sorted positions."""
    runs: list[Span] = []
    for pos in positions:
        if runs and runs[-1].end == pos:
            runs[-1] = Span(runs[-1].start, pos + 1)
        else:
            runs.append(Span(pos, pos + 1))
    return runs


def _common_ends(short: list[int], long: list[int]) -> tuple[int, int]:
    """Lengths of the common prefix and of the common suffix of two id lists (not overlapping in `short`)."""
    head = 0
    while head < len(short) and head < len(long) and short[head] == long[head]:
        head += 1
    tail = 0
    while tail < len(short) - head and tail < len(long) - head and short[-1 - tail] == long[-1 - tail]:
        tail += 1
    return head, tail


class HFVideoAdapter(ModelAdapter):
    """A transformers-native VLM whose processor expands one video placeholder into video tokens."""

    model_class: ClassVar[Any] = None
    system_prompt: ClassVar[str | None] = SYSTEM_MVBENCH_TURN
    answer_prefix: ClassVar[str] = ANSWER_PREFIX  # the prompt's end, right before the option letter
    default_prompt_notes: ClassVar[dict[str, str]] = {}

    def __init__(self, model, processor, *, name: str, num_frames: int, system_mode: str = "auto") -> None:
        super().__init__(model, processor, name=name, num_frames=num_frames)
        if system_mode not in SYSTEM_MODES:
            raise AdapterError(f"unknown system prompt mode {system_mode!r}; choose one of {', '.join(SYSTEM_MODES)}")
        self.system_mode = system_mode  # "auto", "turn", "fold" or "drop": see chat_template.render_chat
        # How the last prompt was rendered (template and file, system placement, content style):
        # for the report's run table. Keys and values are strings.
        self.prompt_notes: dict[str, str] = dict(self.default_prompt_notes)
        self.open_ended = False  # True only inside encode_open_ended

    @classmethod
    def from_pretrained(cls, name_or_path: str, **options: Any) -> HFVideoAdapter:
        if cls.model_class is None:
            raise AdapterError(f"{cls.__name__} names no model class")
        revision = options.get("revision")
        trust = bool(options.get("trust_remote_code", False))
        processor = AutoProcessor.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust)
        model = cls.model_class.from_pretrained(
            name_or_path,
            revision=revision,
            dtype=torch_dtype(options.get("dtype", "float32")),
            attn_implementation=options.get("attn_implementation", "sdpa"),
            device_map=options.get("device_map"),
        )
        if options.get("device_map") is None:
            model.to(options.get("device", "cpu"))
        return cls(
            model,
            processor,
            name=name_or_path,
            num_frames=int(options.get("num_frames", 8)),
            system_mode=options.get("system_mode") or "auto",
        )

    # -- hooks a family may override ------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def video_token_id(self) -> int:
        token_id = getattr(self.processor, "video_token_id", None)
        if token_id is None:
            token_id = self.tokenizer.convert_tokens_to_ids(self.processor.video_token)
        return int(token_id)

    def placeholder_token_id(self) -> int:
        """The token the prompt carries before expansion (default: the video token itself)."""
        return self.video_token_id()

    def render(self, sample: Sample) -> RenderedPrompt:
        """The paper's prompt in this family's chat template, with character spans.

        The processor's template, else the tokenizer's; a system turn, else the system text folded
        into the user turn (`system_mode`); how it rendered is kept in `prompt_notes`. A BOS the
        template writes is removed when the tokenizer adds its own (transformers does the same).
        """
        source = template_source(self.processor, self.tokenizer, self.name)
        video_text = self.tokenizer.convert_ids_to_tokens(self.placeholder_token_id())
        rendered, notes = render_chat(
            source,
            open_text(sample.question) if self.open_ended else mc_text(sample.question, sample.options),
            self.system_prompt,
            mode=self.system_mode,
            video_text=video_text,
            answer_prefix="" if self.open_ended else ANSWER_PREFIX,
        )
        bos = self.tokenizer.bos_token
        if bos and rendered.text.startswith(bos) and self.tokenizer("x").input_ids[:1] == [self.tokenizer.bos_token_id]:
            rendered = rendered.without_prefix(bos)
        self.prompt_notes = notes
        return rendered

    def processor_inputs(self, text: str, video: VideoFrames, sample: Sample) -> dict[str, torch.Tensor]:
        """Expanded ids and pixel inputs for one prompt and its frames (with their times and stream metadata)."""
        return dict(self.processor(text=text, videos=[list(video.frames)], return_tensors="pt"))

    def timed_processor_inputs(self, text: str, video: VideoFrames, **kwargs: Any) -> dict[str, torch.Tensor]:
        """The processor's inputs for frames already sampled (no resampling) with their real times.

        The times reach the processor as transformers' own `VideoMetadata` (`VideoFrames.metadata`:
        fps, frame indices, total frames, duration), from which every processor derives its timestamps
        and Qwen2.5-VL its ``second_per_grid_ts``.
        """
        return dict(
            self.processor(
                text=text,
                videos=[list(video.frames)],
                video_metadata=[video.metadata()],
                do_sample_frames=False,
                return_tensors="pt",
                **kwargs,
            )
        )

    def temporal_groups(self, model_inputs: dict[str, Any], frames: np.ndarray) -> int:
        """How many temporal groups one block of video tokens holds (default: one per frame)."""
        return len(frames)

    def frame_spans(
        self, video: Span, blocks: list[Span], model_inputs: dict[str, Any], frames: np.ndarray
    ) -> tuple[Span, ...]:
        """Temporal groups partitioning the video span.

        One block of video tokens is split into equal groups (`temporal_groups`); several blocks
        (frames interleaved with timestamps or separators) are one group each, every group
        starting right after the previous one's tokens, so it carries its own separator text (the
        authors' convention for VideoLLaMA3).
        """
        if len(blocks) == 1:
            count = self.temporal_groups(model_inputs, frames)
            block = blocks[0]
            if len(block) % count:
                raise AdapterError(f"{len(block)} video tokens do not split evenly into {count} temporal groups")
            per = len(block) // count
            groups = [Span(block.start + i * per, block.start + (i + 1) * per) for i in range(count)]
        else:
            groups = blocks
        bounds = [video.start] + [g.end for g in groups[:-1]] + [video.end]
        return tuple(Span(a, b) for a, b in pairwise(bounds))

    def frame_grid(
        self, model_inputs: dict[str, Any], frames: np.ndarray, groups: tuple[Span, ...]
    ) -> tuple[int, int] | None:
        """(rows, columns) of every temporal group's tokens (`groups`) when they are the frame's patches in
        row-major order; None (the default) when they are not a grid (`no_frame_grid` says why)."""
        return None

    # -- the shared encoder ------------------------------------------------------------------------
    def encode(self, sample: Sample, frames: VideoFrames | np.ndarray) -> EncodedSample:
        video_frames = self.video_input(frames)
        frames = video_frames.frames
        rendered = self.render(sample)
        plain = self.tokenizer(rendered.text, return_offsets_mapping=True)
        ids, offsets = list(plain["input_ids"]), [tuple(o) for o in plain["offset_mapping"]]
        video_id = self.video_token_id()
        placeholders = [i for i, t in enumerate(ids) if t == self.placeholder_token_id()]
        if len(placeholders) != 1:
            raise AdapterError(
                f"the rendered prompt has {len(placeholders)} video placeholders; flowcheck needs exactly one "
                f"(check that the chat template, {self.prompt_notes.get('template', 'unknown')}, renders one video)"
            )
        p = placeholders[0]
        model_inputs = {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v
            for k, v in self.processor_inputs(rendered.text, video_frames, sample).items()
        }
        expanded = model_inputs["input_ids"][0].cpu()
        head, tail = _common_ends(ids, expanded.tolist())
        head, tail = min(head, p), min(tail, len(ids) - p - 1)  # the placeholder itself may repeat in the expansion
        if ids[:head] != expanded[:head].tolist() or (tail and ids[-tail:] != expanded[-tail:].tolist()):
            raise AdapterError("the processor's expanded ids do not contain the prompt around the video placeholder")
        video = Span(head, len(expanded) - tail)
        blocks = _runs((expanded == video_id).nonzero().flatten().tolist())
        if not blocks or blocks[0].start < video.start or blocks[-1].end > video.end:
            raise AdapterError("the processor placed video tokens outside the expanded placeholder region")
        shift = len(expanded) - len(ids)
        first_after = len(ids) - tail  # unexpanded index of the first token after the expanded region

        def span(name: str) -> Span:
            start, end = token_span(offsets, rendered.spans[name])
            if end <= head:
                return Span(start, end)
            if start >= first_after:
                return Span(start + shift, end + shift)
            raise AdapterError(f"the {name} segment overlaps the region the processor expands around the video")

        n = len(expanded)
        question = span("question")
        groups = self.frame_spans(video, blocks, model_inputs, frames)
        layout = TokenLayout(
            n=n,
            video=video,
            frames=groups,
            question=question,
            question_only=span("question_only"),
            options=() if self.open_ended else tuple(span(f"option:{i}") for i in range(len(sample.options))),
            true_index=-1 if self.open_ended else sample.answer_index,
            system=Span(0, video.start) if video.start > 0 else None,
            post=Span(question.end, n - 1) if question.end < n - 1 else None,
            frame_grid=self.frame_grid(model_inputs, frames, groups),
        )
        captured = capture_decoder_inputs(self.model, self.decoder, model_inputs)
        inputs = lm_inputs_from_capture(captured)
        self.check_video_rows(inputs, expanded, video)
        option_ids = () if self.open_ended else self.option_ids(len(sample.options))
        return EncodedSample(sample.id, layout, inputs, option_ids, expanded)

    def encode_open_ended(self, sample: Sample, frames: VideoFrames | np.ndarray) -> EncodedSample:
        """`encode` with the open-ended prompt (the question without options, no answer prefix; the system
        prompt is this family's usual one). The layout has no options and ``true_index == -1``."""
        self.open_ended = True
        try:
            return self.encode(sample, frames)
        finally:
            self.open_ended = False

    def check_video_rows(self, inputs, expanded: torch.Tensor, video: Span) -> None:
        """The captured embeddings differ from token embeddings exactly on the video block."""
        with torch.inference_mode():
            token_embeds = self.decoder.input_embeddings()(expanded.to(self.device)[None].clamp(max=self._vocab() - 1))
        changed = (inputs.inputs_embeds != token_embeds).any(-1)[0].nonzero().flatten().tolist()
        if changed and (changed[0] < video.start or changed[-1] >= video.end):
            raise AdapterError(
                f"the model merged visual embeddings at positions {changed[0]}..{changed[-1]}, outside the video span "
                f"{video}; the layout would be wrong"
            )

    def _vocab(self) -> int:
        return self.decoder.input_embeddings().weight.shape[0]

    def option_ids(self, count: int) -> tuple[int, ...]:
        if not hasattr(self, "_letters") or len(self._letters) < count:
            self._letters = letter_token_ids(self.tokenizer, max(count, 8), prefix=self.answer_prefix)
        return self._letters[:count]
