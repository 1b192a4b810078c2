"""Small lossless test videos whose frames say their own index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowcheck.data.synth import write_mp4


def index_frames(count: int, size: int = 32) -> np.ndarray:
    """Frame i is a solid grey of level 6 * i (so a decoded frame tells which index it was); at most 42 frames."""
    assert count <= 42, "grey levels would wrap"
    levels = (np.arange(count) * 6).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, size, size, 3)).copy()


def write_index_video(path: Path, count: int, fps: int = 10) -> Path:
    write_mp4(path, index_frames(count), fps=fps)
    return path


def frame_indices(frames: np.ndarray) -> list[int]:
    """Invert `index_frames` on decoded frames."""
    return [round(f.mean() / 6) for f in frames]
