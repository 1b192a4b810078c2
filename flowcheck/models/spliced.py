"""Shared parts of adapters built from transformers parts (PLLaVA, InternVL-chat): weights read
under renamed keys, and a prompt whose single placeholder token is replaced by the video embeddings."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from flowcheck.data.sample import Sample
from flowcheck.data.video import VideoFrames
from flowcheck.layout import Span, TokenLayout
from flowcheck.models.base import AdapterError, EncodedSample, ModelAdapter
from flowcheck.models.decoder import Decoder, LMInputs, find_decoder
from flowcheck.models.hf_native import letter_token_ids
from flowcheck.prompt import ANSWER_PREFIX, CharSpan, mc_text, open_text, token_span

Converter = Callable[[str, torch.Tensor], Iterable[tuple[str, torch.Tensor]]]
"""Maps one stored weight to the model's (name, tensor) pairs (none to drop it, several to split it)."""


def checkpoint_folder(name_or_path: str, revision: str | None = None) -> Path:
    """A local folder as is; a hub id downloaded (configs, weights, tokenizer files) into the hub cache."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            name_or_path, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]
        )
    )


def tokenizer_from_files(name_or_path: str | Path, revision: str | None = None):
    """The tokenizer its tokenizer files describe. config.json is never read: a remote-code checkpoint's
    auto_map would make transformers ask to run its code."""
    from transformers import AutoTokenizer, PretrainedConfig

    return AutoTokenizer.from_pretrained(name_or_path, revision=revision, config=PretrainedConfig())


def load_converted_weights(model: nn.Module, folder: Path, convert: Converter) -> None:
    """Load every safetensors shard of `folder` into `model` through `convert`; fail on missing weights."""
    from safetensors.torch import load_file

    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise AdapterError(f"{folder} has no .safetensors weights")
    state = {}
    for shard in shards:
        for key, value in load_file(str(shard)).items():
            state.update(convert(key, value))
    expected = dict(model.state_dict())
    missing = sorted(k for k in expected if k not in state and not k.endswith("position_ids"))
    if missing:
        raise AdapterError(f"{folder}: weights missing for {len(missing)} parameters, e.g. {missing[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def encode_spliced(
    sample: Sample,
    text: str,
    spans: dict[str, CharSpan],
    tokenizer,
    placeholder: int,
    video: torch.Tensor,
    frame_count: int,
    input_embeddings: nn.Module,
    *,
    open_ended: bool = False,
) -> EncodedSample:
    """Tokenize `text`, replace its one `placeholder` token by `video` ([tokens, hidden]) and lay out the spans.

    `spans` holds character spans of ``question``, ``question_only`` and, for a multiple-choice prompt,
    ``option:<i>``; the video's tokens split evenly into `frame_count` frames. `open_ended` (a prompt without
    options): the layout has no option spans and ``true_index == -1``, the encoded sample no option letter ids.
    `post` is the template text between the question and the last position (None when there is none). Raises
    AdapterError when `text` does not tokenize to exactly one placeholder.
    """
    enc = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if ids.count(placeholder) != 1:
        name = tokenizer.convert_ids_to_tokens(placeholder)
        raise AdapterError(f"the prompt tokenizes to {ids.count(placeholder)} {name} placeholders; it needs one")
    p = ids.index(placeholder)
    device = video.device
    with torch.no_grad():
        embeds = input_embeddings(torch.tensor([ids], device=device))
    merged = torch.cat([embeds[:, :p], video[None].to(embeds.dtype), embeds[:, p + 1 :]], dim=1)
    shift = video.shape[0] - 1

    def span(name: str) -> Span:
        start, end = token_span(offsets, spans[name])
        return Span(start + shift, end + shift) if start > p else Span(start, end)

    n = merged.shape[1]
    per = video.shape[0] // frame_count
    question = span("question")
    layout = TokenLayout(
        n=n,
        video=Span(p, p + video.shape[0]),
        frames=tuple(Span(p + i * per, p + (i + 1) * per) for i in range(frame_count)),
        question=question,
        question_only=span("question_only"),
        options=() if open_ended else tuple(span(f"option:{i}") for i in range(len(sample.options))),
        true_index=-1 if open_ended else sample.answer_index,
        system=Span(0, p),
        post=Span(question.end, n - 1) if question.end < n - 1 else None,
    )
    inputs = LMInputs(merged, torch.arange(n, device=device)[None])
    expanded = torch.tensor(ids[:p] + [placeholder] * video.shape[0] + ids[p + 1 :])
    option_ids = () if open_ended else letter_token_ids(tokenizer, len(sample.options))
    return EncodedSample(sample.id, layout, inputs, option_ids, expanded)


class SplicedVideoAdapter(ModelAdapter):
    """An adapter whose model embeds a video with `video_embeddings(pixel_values)` and whose prompt (the
    authors' conversation: `prompt_head`, the question, `prompt_tail`, the answer prefix) holds one
    placeholder token that the video's embeddings replace. `processor` is a dict with a tokenizer and an
    image processor.

    The open-ended prompt (`encode_open_ended`) is `open_prompt_head`, the raw question, `open_prompt_tail`, with
    no answer prefix; each subclass says whose conversation that is.
    """

    prompt_head: ClassVar[str]
    prompt_tail: ClassVar[str]
    open_prompt_head: ClassVar[str]
    open_prompt_tail: ClassVar[str]
    # the conversation's end-of-turn separator when it is not the tokenizer's eos (the authors' conv sep[1]):
    # generation stops on it as well, as the model's own chat() does
    turn_end: ClassVar[str | None] = None

    @property
    def prompt_notes(self) -> dict[str, str]:
        """How the prompt is rendered, for the report's run table (the same keys as HFVideoAdapter's)."""
        return {
            "template": "the authors' conversation format (official-protocol.md 6.2), no chat template",
            "system": "the authors' system prompt, as in their conversation",
            "content": "one image placeholder, replaced by the video embeddings",
        }

    @staticmethod
    def check_options(name_or_path: str, options: dict) -> None:
        """The authors' conversation is fixed: only the default system prompt mode applies."""
        mode = options.get("system_mode") or "auto"
        if mode != "auto":
            raise AdapterError(
                f"{name_or_path}: system_mode {mode!r} does not apply to the authors' conversation format, "
                "whose system prompt is part of the paper's protocol; use the default 'auto'"
            )

    @classmethod
    def load_tokenizer(cls, name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
        return tokenizer_from_files(name_or_path, revision)

    @property
    def tokenizer(self):
        return self.processor["tokenizer"]

    def find_decoder(self) -> Decoder:
        """The text decoder, owned by the model's ``language_model`` (a transformers causal LM): generation
        (`flowcheck.engine.generate`) calls the owner's ``generate``, which the spliced model itself lacks.

        The end-of-turn token `turn_end`, when the tokenizer has it, joins the owner's generation config's
        ``eos_token_id``. Raises AdapterError when the model has no ``language_model`` holding the decoder and its
        lm_head.
        """
        decoder = find_decoder(self.model)
        language_model = getattr(self.model, "language_model", None)
        if (
            not isinstance(language_model, nn.Module)
            or not hasattr(language_model, "generate")
            or language_model.get_output_embeddings() is not decoder.lm_head
            or not any(m is decoder.module for m in language_model.modules())
        ):
            raise AdapterError(
                f"{type(self.model).__name__} has no transformers causal LM `language_model` holding its text decoder "
                "and lm_head; a spliced adapter's model must keep its language model there"
            )
        self._stop_at_turn_end(language_model)
        return replace(decoder, owner=language_model)

    def _stop_at_turn_end(self, language_model: nn.Module) -> None:
        if self.turn_end is None:
            return
        token = self.tokenizer.convert_tokens_to_ids(self.turn_end)
        if token is None or token == self.tokenizer.unk_token_id:
            return
        config = language_model.generation_config
        eos = config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if token not in eos:
            config.eos_token_id = [*eos, int(token)]

    @abstractmethod
    def placeholder_id(self) -> int:
        """The token id the video's embeddings replace."""

    def frame_groups(self, frames: np.ndarray) -> int:
        """How many equal frame spans the video's tokens form (one per input frame unless pooled in time)."""
        return len(frames)

    @classmethod
    def prompt(cls, sample: Sample) -> tuple[str, dict[str, CharSpan]]:
        """The conversation text with the character spans of the question, its parts and the options."""
        mc = mc_text(sample.question, sample.options)
        text = cls.prompt_head + mc.text + cls.prompt_tail + ANSWER_PREFIX
        u = len(cls.prompt_head)
        spans = {
            "question": mc.question.shifted(u),
            "question_only": mc.question_only.shifted(u),
            "post": mc.post.shifted(u),
        }
        spans.update({f"option:{i}": s.shifted(u) for i, s in enumerate(mc.options)})
        return text, spans

    @classmethod
    def open_prompt(cls, sample: Sample) -> tuple[str, dict[str, CharSpan]]:
        """The open-ended conversation text (`open_prompt_head` + the question as it is + `open_prompt_tail`, no
        options, no post-question instruction, no answer prefix) with the character spans of the question;
        ``question`` and ``question_only`` are the same span."""
        oe = open_text(sample.question)
        u = len(cls.open_prompt_head)
        text = cls.open_prompt_head + oe.text + cls.open_prompt_tail
        return text, {"question": oe.question.shifted(u), "question_only": oe.question_only.shifted(u)}

    def pixel_values(self, frames: np.ndarray) -> torch.Tensor:
        """The image processor's resize, centre crop and normalisation of every frame."""
        processed = self.processor["image_processor"](list(frames), return_tensors="pt")
        return processed["pixel_values"].to(self.device, self.dtype)

    def encode(self, sample: Sample, frames: VideoFrames | np.ndarray) -> EncodedSample:
        return self._encode(sample, frames, *self.prompt(sample), open_ended=False)

    def encode_open_ended(self, sample: Sample, frames: VideoFrames | np.ndarray) -> EncodedSample:
        """`encode` with the open-ended prompt (`open_prompt`): the layout has no options and ``true_index == -1``,
        the question span is the question text alone, and the encoded sample has no option ids."""
        return self._encode(sample, frames, *self.open_prompt(sample), open_ended=True)

    def _encode(
        self,
        sample: Sample,
        frames: VideoFrames | np.ndarray,
        text: str,
        spans: dict[str, CharSpan],
        *,
        open_ended: bool,
    ) -> EncodedSample:
        frames = self.video_input(frames).frames  # the prompt shows no frame times
        video = self.model.video_embeddings(self.pixel_values(frames))
        return encode_spliced(
            sample,
            text,
            spans,
            self.tokenizer,
            self.placeholder_id(),
            video,
            self.frame_groups(frames),
            self.decoder.input_embeddings(),
            open_ended=open_ended,
        )
