"""Training and evaluation batches for the tiny model, straight from the synthetic generator.

Frames come from the generator in memory; they equal the frames decoded from the benchmark's
mp4s (lossless encoding, slots at the sampled indices; tests check both), and the prompt is the
one the LLaVA-NeXT-Video adapter renders, so training and evaluation see the same inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from flowcheck.data.sample import OPTION_LETTERS
from flowcheck.data.synth import iter_groups
from flowcheck.data.synth_tasks import SynthVideo
from flowcheck.prompt import mc_text, render_with_template
from flowcheck.tiny.model import pixel_values


@dataclass
class Batch:
    """Right-padded token ids with a video per row; `labels` mark the answer tokens (-100 elsewhere)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values_videos: torch.Tensor
    labels: torch.Tensor
    last: torch.Tensor  # index of the last prompt token of each row (where the letter is predicted)
    answer_ids: torch.Tensor  # token id of the true letter of each row
    tasks: list[str]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "pixel_values_videos": self.pixel_values_videos,
        }


class PromptEncoder:
    """Render and tokenize questions exactly as the LLaVA-NeXT-Video adapter does."""

    def __init__(self, processor) -> None:
        self.processor = processor
        self.tokenizer: PreTrainedTokenizerFast = processor.tokenizer
        self.video_token_id = self.tokenizer.convert_tokens_to_ids(processor.video_token)
        self._cache: dict[tuple[str, tuple[str, ...]], list[int]] = {}

    def prompt_ids(self, question: str, options: Sequence[str], frames: int) -> list[int]:
        """Token ids of the prompt with the video placeholder expanded to `frames` x tokens per frame."""
        key = (question, tuple(options))
        if key not in self._cache:
            text = render_with_template(
                lambda m: self.processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False),
                mc_text(question, options),
            ).text
            self._cache[key] = self.tokenizer(text).input_ids
        ids = self._cache[key]
        per_frame = (self.processor.video_processor.crop_size["height"] // self.processor.patch_size) ** 2 // 4
        at = ids.index(self.video_token_id)
        return ids[:at] + [self.video_token_id] * (per_frame * frames) + ids[at + 1 :]

    def answer_ids(self, video: SynthVideo) -> list[int]:
        """The continuation after "Best option:(": letter, ")" and the answer text."""
        letter = OPTION_LETTERS[video.answer_index]
        return self.tokenizer(f"{letter}) {video.answer}", add_special_tokens=False).input_ids

    def letter_id(self, index: int) -> int:
        return self.tokenizer.convert_tokens_to_ids(OPTION_LETTERS[index])


def make_batch(encoder: PromptEncoder, videos: Sequence[SynthVideo], frames: int, with_answer: bool) -> Batch:
    """Encode videos (their first `frames` slots when frames < 8, e.g. 1 for the image stage)."""
    rows, labels, last = [], [], []
    for video in videos:
        prompt = encoder.prompt_ids(video.question, video.options, frames)
        target = encoder.answer_ids(video) if with_answer else []
        rows.append(prompt + target)
        labels.append([-100] * len(prompt) + target)
        last.append(len(prompt) - 1)
    width = max(map(len, rows))
    pad = encoder.tokenizer.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    label_ids = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, lab) in enumerate(zip(rows, labels, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        label_ids[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(row)] = 1
    slots = np.stack([_frames(v, frames) for v in videos])
    return Batch(
        input_ids,
        mask,
        pixel_values(torch.from_numpy(slots)),
        label_ids,
        torch.tensor(last),
        torch.tensor([encoder.letter_id(v.answer_index) for v in videos]),
        [v.task for v in videos],
    )


def _frames(video: SynthVideo, frames: int) -> np.ndarray:
    if frames == len(video.slots):
        return video.slots
    if frames == 1:
        return video.slots[:1]
    picks = np.linspace(0, len(video.slots) - 1, frames).round().astype(int)
    return video.slots[picks]


def stream(tasks: Sequence[str], seed: int, weights: Sequence[float] | None = None) -> Iterator[SynthVideo]:
    """An endless deterministic mix of the tasks' videos (twins are shuffled apart)."""
    rng = np.random.default_rng([seed, 99])
    sources = {task: iter_groups(task, seed) for task in tasks}
    pending: dict[str, list[SynthVideo]] = {task: [] for task in tasks}
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    while True:
        task = tasks[int(rng.choice(len(tasks), p=p))]
        if not pending[task]:
            group = next(sources[task])
            pending[task] = [group[i] for i in rng.permutation(len(group))]
        yield pending[task].pop()


def held_out(tasks: Sequence[str], seed: int, per_task: int) -> list[SynthVideo]:
    """A fixed evaluation set: whole twin groups until `per_task` videos per task."""
    out: list[SynthVideo] = []
    for task in tasks:
        groups, count = iter_groups(task, seed), 0
        while count < per_task:
            group = next(groups)
            out.extend(group)
            count += len(group)
    return out
