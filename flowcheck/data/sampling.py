"""Which frames of a video are read: the authors' segment-centre rule (official-protocol.md 6.4)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_BOUND = (-1e5, 1e5)


def segment_centre_indices(
    total_frames: int, fps: float, num_frames: int = 8, start: float | None = None, end: float | None = None
) -> list[int]:
    """Indices of `num_frames` frames at the centres of equal segments of the clip [start, end] seconds.

    start_idx = max(0, round(start * fps)), end_idx = min(round(end * fps), total_frames - 1),
    seg = (end_idx - start_idx) / num_frames, frame i = int(start_idx + seg / 2 + round(seg * i)).
    Without bounds the whole video is used.
    """
    if total_frames < 1:
        raise ValueError("the video has no frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    lo, hi = NO_BOUND
    if start is not None:
        lo = start
    if end is not None:
        hi = end
    max_frame = total_frames - 1
    start_idx = max(0, round(lo * fps))
    end_idx = min(round(hi * fps), max_frame)
    if end_idx < start_idx:
        raise ValueError(
            f"the clip bounds [{start}, {end}] s select no frame of a {total_frames}-frame video at {fps:g} fps"
        )
    seg = (end_idx - start_idx) / num_frames
    return [min(int(start_idx + seg / 2 + round(seg * i)), max_frame) for i in range(num_frames)]


def frame_at_each_time(times: Sequence[float], targets: Sequence[float], lo: float, hi: float) -> list[int]:
    """For each target second, the index of the frame (of sorted presentation `times`) nearest to it in [lo, hi]."""
    inside = [i for i, t in enumerate(times) if lo - 1e-6 <= t <= hi + 1e-6]
    if not inside:
        raise ValueError(f"no frame is shown within [{lo:g}, {hi:g}] s")
    candidates = np.asarray([times[i] for i in inside])
    out = []
    for target in targets:
        k = int(np.searchsorted(candidates, target))
        best = min((j for j in (k - 1, k) if 0 <= j < len(candidates)), key=lambda j: abs(candidates[j] - target))
        out.append(inside[best])
    return out


def segment_centre_frames(
    times: Sequence[float], fps: float, num_frames: int = 8, start: float | None = None, end: float | None = None
) -> list[int]:
    """The authors' segment-centre rule applied to presentation times: indices of the frames shown.

    The rule (`segment_centre_indices`) runs on a uniform grid of 1 / fps seconds covering the stream
    (fps: the stream's average rate); each grid point selected is mapped to the frame shown nearest to
    it within [start, end]. On a constant-rate video frame i is shown at i / fps, so this gives exactly
    the authors' indices; on a variable-rate video the frames are evenly spaced in time and lie inside
    the requested bounds. `times`: seconds of every frame, sorted, relative to the first frame.
    """
    if len(times) < 1:
        raise ValueError("the video has no frames")
    grid = round(times[-1] * fps) + 1
    targets = [i / fps for i in segment_centre_indices(grid, fps, num_frames, start, end)]
    lo = start if start is not None else NO_BOUND[0]
    hi = end if end is not None else NO_BOUND[1]
    return frame_at_each_time(times, targets, lo, hi)
