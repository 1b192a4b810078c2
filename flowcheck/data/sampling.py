"""Which frames of a video are read: the authors' segment-centre rule (official-protocol.md 6.4)."""

from __future__ import annotations

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
