"""Tiny LLaVA-NeXT-Video checkpoints saved to disk (the bundled model's classes, random weights), for offline tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowcheck.data.sample import Sample
from flowcheck.data.synth_tasks import generate_group
from flowcheck.tiny.model import TinyShape, build_model, build_processor
from flowcheck.tiny.tokenizer import build_tokenizer


def save_tiny_checkpoint(folder: Path, layers: int = 4, seed: int = 0) -> Path:
    """A random tiny model with its processor, written by save_pretrained (as a hub checkpoint would be)."""
    tokenizer = build_tokenizer()
    build_model(tokenizer, TinyShape(text_layers=layers), seed=seed).save_pretrained(folder)
    build_processor(tokenizer).save_pretrained(folder)
    return folder


def synthetic_sample(task: str = "moving_direction", seed: int = 0, index: int = 0) -> tuple[Sample, np.ndarray]:
    """A synthetic question with its 8 frames (no video file needed for encoding)."""
    video = generate_group(task, np.random.default_rng(seed))[index]
    sample = Sample(
        f"synthetic/{task}/{seed}-{index}",
        task,
        Path(f"/nonexistent/{task}.mp4"),
        video.question,
        video.options,
        video.answer_index,
        dataset="synthetic",
    )
    return sample, video.slots
