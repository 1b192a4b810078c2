"""The frames a model sees, with their real times: what `read_frames` returns and adapters consume."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Frame times within this many seconds of index / fps count as constant-rate (timestamps are stored in
# container time bases such as 1/12800 s, so exact equality would be too strict).
CFR_TOLERANCE = 5e-4


class VariableFrameRateWarning(UserWarning):
    """A video whose frame durations vary by more than 10 % (times then come from the timestamps only)."""


@dataclass(frozen=True, eq=False)
class VideoFrames:
    """Decoded frames of one clip and when they are shown.

    frames: uint8 [T, H, W, 3] RGB. indices: each frame's position in the stream (presentation
    order, 0-based). times: each frame's presentation time in seconds, from the container's
    timestamps, relative to the stream's first frame (None only for frames given without a video,
    see `untimed`). fps: the stream's average frame rate (frames per second). total_frames: frames
    in the stream. duration: total_frames / fps seconds (transformers' `VideoMetadata` convention).
    backend: "decord", "pyav", or "array" (frames given directly). path: the decoded file, if any.
    """

    frames: np.ndarray
    indices: tuple[int, ...]
    times: tuple[float, ...] | None
    fps: float | None
    total_frames: int
    backend: str
    path: str | None = None
    variable_rate: bool = field(default=False)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {self.frames.dtype} {self.frames.shape}")
        count = len(self.frames)
        if len(self.indices) != count or (self.times is not None and len(self.times) != count):
            times = None if self.times is None else len(self.times)
            raise ValueError(f"{count} frames but {len(self.indices)} indices and {times} times")

    @classmethod
    def from_array(cls, frames: np.ndarray, fps: float, total_frames: int | None = None) -> VideoFrames:
        """Frames given directly, declared to be consecutive frames of a `fps` video (frame i at i / fps s)."""
        count = len(frames)
        return cls(
            np.asarray(frames),
            tuple(range(count)),
            tuple(i / fps for i in range(count)),
            float(fps),
            total_frames or count,
            "array",
        )

    @classmethod
    def untimed(cls, frames: np.ndarray) -> VideoFrames:
        """Frames given directly with no time information; families whose inputs need times refuse them."""
        count = len(frames)
        return cls(np.asarray(frames), tuple(range(count)), None, None, count, "array")

    @property
    def duration(self) -> float | None:
        """Seconds of the whole stream (total_frames / fps), None without a frame rate."""
        return self.total_frames / self.fps if self.fps else None

    def __len__(self) -> int:
        return len(self.frames)

    def constant_rate(self) -> bool:
        """Whether every frame's time is its index / fps (to `CFR_TOLERANCE`)."""
        if self.times is None or not self.fps:
            return False
        return all(abs(t - i / self.fps) <= CFR_TOLERANCE for i, t in zip(self.indices, self.times, strict=True))

    def metadata(self):
        """transformers' `VideoMetadata` whose `timestamps` are these frames' real times.

        A constant-rate clip gets its true metadata (fps, frame indices, total frames, duration), exactly
        what a processor that decodes the file itself would use. Otherwise (variable frame rate) times are
        expressed on a 1 ms grid: fps 1000, frames_indices = round(time * 1000), total_num_frames =
        round(duration * 1000), so `timestamps` are the real times and `sampled_fps` (frames / duration,
        used by Qwen2.5-VL's second_per_grid_ts) is unchanged. Raises ValueError for untimed frames.
        """
        from transformers.video_utils import VideoMetadata

        if self.times is None or not self.fps:
            raise ValueError("these frames carry no times (given as a bare array); read them with read_frames")
        height, width = self.frames.shape[1:3]
        common = dict(height=height, width=width, duration=self.duration, video_backend=self.backend)
        if self.constant_rate():
            return VideoMetadata(
                total_num_frames=self.total_frames, fps=self.fps, frames_indices=list(self.indices), **common
            )
        return VideoMetadata(
            total_num_frames=round(self.duration * 1000),
            fps=1000.0,
            frames_indices=[round(t * 1000) for t in self.times],
            **common,
        )
