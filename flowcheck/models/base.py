"""What every model adapter provides: load a checkpoint, encode a sample into decoder inputs and a layout."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from flowcheck.data.sample import Sample
from flowcheck.data.video import VideoFrames
from flowcheck.layout import TokenLayout
from flowcheck.models.decoder import Decoder, LMInputs, find_decoder
from flowcheck.models.fingerprint import fingerprint_folder


class AdapterError(ValueError):
    """A checkpoint or sample an adapter cannot handle; the message says what to do."""


@dataclass
class EncodedSample:
    """One sample ready for the engine.

    `inputs` feed the text decoder (video already embedded, so the vision tower runs once per
    sample); `layout` names the spans in the same (expanded) coordinates; `option_ids[i]` is the
    single token of option letter i; `input_ids` are the expanded ids ([n]; video positions hold
    the placeholder id) when the family has them, for decoding tokens in analyses.
    """

    sample_id: str
    layout: TokenLayout
    inputs: LMInputs
    option_ids: tuple[int, ...]
    input_ids: torch.Tensor | None = None

    @property
    def true_id(self) -> int:
        return self.option_ids[self.layout.true_index]

    def __post_init__(self) -> None:
        if self.inputs.n != self.layout.n:
            raise AdapterError(
                f"sample {self.sample_id}: the decoder inputs have {self.inputs.n} positions but the layout "
                f"describes {self.layout.n}; the adapter built them inconsistently"
            )
        if len(self.option_ids) != len(self.layout.options):
            raise AdapterError(
                f"sample {self.sample_id}: {len(self.option_ids)} option letter ids for "
                f"{len(self.layout.options)} options"
            )


class ModelAdapter(ABC):
    """A loaded checkpoint of one family: the model, its processor, and how to encode a sample.

    Subclasses set `family`, `model_types` (the `config.model_type` values they handle) and
    implement `from_pretrained` and `encode`.
    """

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    needs_times: ClassVar[bool] = False  # the processor or prompt shows the frames' times to the model
    # Why this family's frames have no (rows, columns) token grid (`TokenLayout.frame_grid`); maps fall back to a
    # 1-D strip per frame. Families with a grid override `frame_grid`.
    no_frame_grid: ClassVar[str] = "this family declares no per-frame token grid"

    def __init__(self, model: nn.Module, processor: Any, *, name: str, num_frames: int) -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.num_frames = num_frames
        self.decoder: Decoder = self.find_decoder()

    @classmethod
    def accepts(cls, config: dict) -> bool:
        """Whether this adapter handles a checkpoint of one of its model types (refine by config content)."""
        return True

    def find_decoder(self) -> Decoder:
        """The text decoder the engine knocks out; override for non-standard module trees."""
        return find_decoder(self.model)

    @classmethod
    @abstractmethod
    def from_pretrained(cls, name_or_path: str, **options: Any) -> ModelAdapter:
        """Load the checkpoint (hub id or local folder) with its processor."""

    @classmethod
    def load_tokenizer(cls, name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
        """The checkpoint's tokenizer alone (no weights), as this family loads it."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)

    @abstractmethod
    def encode(self, sample: Sample, frames: VideoFrames | np.ndarray) -> EncodedSample:
        """Encode a sample whose video frames were already decoded (`read_frames`' `VideoFrames`).

        A bare uint8 [T, H, W, 3] array is accepted only by families that show no frame times to the
        model; the others raise `AdapterError` (see `video_input`).
        """

    def encode_open_ended(self, sample: Sample, frames: VideoFrames | np.ndarray) -> EncodedSample:
        """Encode `sample` with the open-ended prompt: the question without options and without the answer
        prefix (`flowcheck.prompt.open_text`); the layout has no options (``true_index == -1``) and the encoded
        sample no option ids. Raises AdapterError for families that have no open-ended prompt (every built-in
        family has one; an adapter written outside flowcheck may not)."""
        raise AdapterError(
            f"the {self.family} adapter has no open-ended prompt mode (encode_open_ended); the open-ended "
            "analyses need one"
        )

    def video_input(self, frames: VideoFrames | np.ndarray) -> VideoFrames:
        """`frames` as `VideoFrames`; raises `AdapterError` when this family needs times and they are unknown.

        A family whose processor or prompt takes frame times (`needs_times`) never invents them: frames
        given without times are refused rather than labelled 0, 1, 2, ... s.
        """
        video = frames if isinstance(frames, VideoFrames) else VideoFrames.untimed(np.asarray(frames))
        if self.needs_times and (video.times is None or not video.fps):
            raise AdapterError(
                f"{self.family} shows the frames' times to the model, but these frames carry none; pass the "
                "VideoFrames that flowcheck.data.frames.read_frames returns (or VideoFrames.from_array with the fps)"
            )
        return video

    def fingerprint(self) -> str:
        """Identity of the checkpoint for the result cache: folder contents, or the hub commit."""
        if not hasattr(self, "_fingerprint"):
            folder = Path(self.name)
            if not folder.is_dir():
                snapshot = getattr(self.model.config, "_name_or_path", "")
                folder = Path(snapshot) if Path(snapshot).is_dir() else folder
            if folder.is_dir():
                self._fingerprint = fingerprint_folder(folder)
            else:
                commit = getattr(self.model.config, "_commit_hash", None) or "unknown-revision"
                self._fingerprint = hashlib.sha256(f"{self.name}@{commit}".encode()).hexdigest()[:24]
        return self._fingerprint

    @property
    def num_layers(self) -> int:
        return self.decoder.num_layers

    @property
    def tokens_per_frame(self) -> int | None:
        """Video tokens per frame (temporal group) when constant; None when it varies per sample."""
        return None

    @property
    def device(self) -> torch.device:
        return self.decoder.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.dtype
