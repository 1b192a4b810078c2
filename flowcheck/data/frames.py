"""Decode the frames a model sees, with their presentation times: decord first, PyAV as a fallback, cached.

Frames are chosen by presentation time (`segment_centre_frames`: the authors' segment-centre rule,
official-protocol.md 6.4, on the container's timestamps), and each backend reports the times of the
frames it actually decoded, so a fallback never loses them. PyAV seeks to the key frame before each
wanted frame and decodes forward, keeping only the frames it returns: memory does not grow with the
video's length.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flowcheck.data.sample import Sample
from flowcheck.data.sampling import segment_centre_frames
from flowcheck.data.video import VariableFrameRateWarning, VideoFrames

BACKENDS = ("decord", "pyav")
RATE_VARIATION = 0.10  # warn when a frame's duration differs from the median by more than this fraction
TIME_BASE_SLACK = 0.001  # s: a 1 ms container time base rounds constant durations (e.g. 8 / 9 ms at 120 fps)
# How frames are chosen and timed; part of the result cache key, so results computed from frames chosen or
# labelled another way (index / average fps, invented times) are never served again.
FRAME_RULE = "presentation-times-1"

_warned: set[str] = set()
_warned_lock = threading.Lock()


class VideoError(RuntimeError):
    """A video that cannot be decoded: missing, unreadable or without frames."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def rate_varies(times: list[float], tolerance: float = RATE_VARIATION) -> bool:
    """Whether any frame duration (difference of successive presentation times) is more than
    `tolerance` (a fraction) away from the median duration, beyond the rounding of a 1 ms time base."""
    if len(times) < 3:
        return False
    durations = np.diff(np.asarray(times))
    median = float(np.median(durations))
    return median <= 0 or bool(np.any(np.abs(durations - median) > max(tolerance * median, TIME_BASE_SLACK) + 1e-9))


def _warn_variable_rate(path: Path, times: list[float]) -> None:
    key = str(path.resolve())
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    durations = np.diff(np.asarray(times))
    warnings.warn(
        f"{path}: variable frame rate (frame durations {durations.min() * 1000:.0f}..{durations.max() * 1000:.0f} ms); "
        "frames are chosen and labelled by their presentation times",
        VariableFrameRateWarning,
        stacklevel=3,
    )


def _rate(fps: float | None, times: list[float]) -> float:
    """The stream's average fps, or (when the container gives none) frames per second of its timestamps."""
    if fps and fps > 0:
        return float(fps)
    return (len(times) - 1) / times[-1] if len(times) > 1 and times[-1] > 0 else 1.0


def _select(path: Path, times: list[float], fps: float, num_frames: int, start, end) -> list[int]:
    """Indices of the frames to decode, chosen on the presentation `times`; warns once per variable-rate file."""
    if any(b <= a for a, b in pairwise(times)):  # a backend's fault as much as the file's: let the next one try
        raise RuntimeError("the frames' presentation times are not increasing")
    if rate_varies(times):
        _warn_variable_rate(path, times)
    try:
        return segment_centre_frames(times, fps, num_frames, start, end)
    except ValueError as err:
        raise VideoError(path, str(err)) from None


def _read_decord(path: Path, num_frames: int, start: float | None, end: float | None) -> VideoFrames:
    import decord

    reader = decord.VideoReader(str(path), num_threads=1)
    total = len(reader)
    if total == 0:
        raise VideoError(path, "the video has no frames")
    stamps = reader.get_frame_timestamp(list(range(total)))[:, 0]
    times = [round(float(t - stamps[0]), 6) for t in stamps]  # decord gives float32 seconds
    fps = _rate(float(reader.get_avg_fps()), times)
    indices = _select(path, times, fps, num_frames, start, end)
    frames = reader.get_batch(indices).asnumpy()
    return VideoFrames(
        frames, tuple(indices), tuple(times[i] for i in indices), fps, total, "decord", str(path), rate_varies(times)
    )


def _read_pyav(path: Path, num_frames: int, start: float | None, end: float | None) -> VideoFrames:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # one pass over the packets (no decoding): every frame's timestamp and the key frames
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None]
        if not packets:
            raise VideoError(path, "the video has no frames")
        packets.sort()
        pts = [p for p, _ in packets]
        keys = [p for p, key in packets if key] or pts[:1]
        base, unit = pts[0], float(stream.time_base)
        times = [round((p - base) * unit, 6) for p in pts]
        fps = _rate(float(stream.average_rate or stream.guessed_rate or 0), times)
        indices = _select(path, times, fps, num_frames, start, end)
        frames: dict[int, np.ndarray] = {}
        decoded = None  # the running decoder and the timestamp it last returned
        for index in sorted(set(indices)):
            wanted = pts[index]
            key = keys[max(0, bisect_right(keys, wanted) - 1)]
            if decoded is None or not (key <= decoded[1] < wanted):
                container.seek(key, stream=stream, backward=True, any_frame=False)
                decoded = [container.decode(stream), None]
            for frame in decoded[0]:
                decoded[1] = frame.pts
                if frame.pts is not None and frame.pts >= wanted:
                    break
            else:
                raise VideoError(path, f"pyav: the frame at {times[index]:.3f} s could not be decoded")
            if decoded[1] != wanted:
                raise VideoError(path, f"pyav: decoding reached {decoded[1]} instead of the frame at pts {wanted}")
            frames[index] = frame.to_ndarray(format="rgb24")
    return VideoFrames(
        np.stack([frames[i] for i in indices]),
        tuple(indices),
        tuple(times[i] for i in indices),
        fps,
        len(pts),
        "pyav",
        str(path),
        rate_varies(times),
    )


_READERS: dict[str, Callable[[Path, int, float | None, float | None], VideoFrames]] = {
    "decord": _read_decord,
    "pyav": _read_pyav,
}


def read_frames(
    path: Path | str,
    num_frames: int = 8,
    start: float | None = None,
    end: float | None = None,
    backend: str = "auto",
) -> VideoFrames:
    """`num_frames` frames at segment centres of [start, end] seconds (the whole video without bounds).

    Returns a `VideoFrames`: uint8 [T, H, W, 3] frames, their stream indices, their presentation times
    (seconds, from the container's timestamps), the stream's average fps and the backend that decoded
    them. ``backend="auto"`` tries decord and falls back to PyAV; a video neither can read raises
    `VideoError` naming the file. Warns (`VariableFrameRateWarning`, once per file) when the frame
    rate varies by more than 10 %.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(path, "the video file does not exist")
    if path.stat().st_size == 0:
        raise VideoError(path, "the video file is empty")
    order = BACKENDS if backend == "auto" else (backend,)
    if any(b not in _READERS for b in order):
        raise ValueError(f"unknown video backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    errors = []
    for name in order:
        try:
            video = _READERS[name](path, num_frames, start, end)
        except VideoError:
            raise
        except ImportError as err:
            errors.append(f"{name} not installed ({err})")
            continue
        except Exception as err:  # the decoders raise their own types for corrupt files
            errors.append(f"{name}: {type(err).__name__}: {err}")
            continue
        return video
    raise VideoError(path, "unreadable video (" + "; ".join(errors) + ")")


@dataclass(frozen=True)
class FrameRequest:
    """Which frames of which video: the cache key."""

    path: str
    num_frames: int
    start: float | None
    end: float | None

    @classmethod
    def of(cls, sample: Sample, num_frames: int) -> FrameRequest:
        return cls(str(sample.video), num_frames, sample.start, sample.end)

    def key(self) -> str:
        p = Path(self.path)
        stat = p.stat() if p.exists() else None
        ident = f"{p.resolve()}|{stat.st_mtime_ns if stat else 0}|{stat.st_size if stat else 0}"
        return hashlib.sha256(f"{ident}|{self.num_frames}|{self.start}|{self.end}".encode()).hexdigest()[:32]


class FrameCache:
    """An in-memory LRU of decoded `VideoFrames`, optionally backed by ``.npz`` files (frames and times) in a folder."""

    def __init__(self, max_items: int = 256, directory: Path | None = None, backend: str = "auto") -> None:
        self.max_items, self.directory, self.backend = max_items, directory, backend
        self._items: OrderedDict[str, VideoFrames] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0  # videos actually decoded (cache misses)

    def get(self, request: FrameRequest) -> VideoFrames:
        key = request.key()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        video = self._from_disk(key)
        if video is None:
            video = read_frames(request.path, request.num_frames, request.start, request.end, self.backend)
            with self._lock:
                self.decoded += 1
            self._to_disk(key, video)
        with self._lock:
            self._items[key] = video
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return video

    def _from_disk(self, key: str) -> VideoFrames | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.npz"
        if not path.exists():
            return None
        with np.load(path) as stored:
            meta = json.loads(str(stored["meta"]))
            return VideoFrames(
                stored["frames"],
                tuple(meta["indices"]),
                None if meta["times"] is None else tuple(meta["times"]),
                meta["fps"],
                meta["total_frames"],
                meta["backend"],
                meta["path"],
                meta["variable_rate"],
            )

    def _to_disk(self, key: str, video: VideoFrames) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "indices": list(video.indices),
            "times": None if video.times is None else list(video.times),
            "fps": video.fps,
            "total_frames": video.total_frames,
            "backend": video.backend,
            "path": video.path,
            "variable_rate": video.variable_rate,
        }
        tmp = self.directory / f"{key}.{threading.get_ident()}.tmp.npz"
        np.savez(tmp, frames=video.frames, meta=np.asarray(json.dumps(meta)))
        tmp.replace(self.directory / f"{key}.npz")


def read_many(
    samples: Iterable[Sample],
    num_frames: int = 8,
    *,
    workers: int = 2,
    cache: FrameCache | None = None,
    progress: bool = True,
) -> dict[str, VideoFrames | VideoError]:
    """Frames of many samples, decoded in a thread pool; failures come back as `VideoError` values."""
    samples = list(samples)
    cache = cache or FrameCache(max_items=len(samples) or 1)

    def one(sample: Sample) -> VideoFrames | VideoError:
        try:
            return cache.get(FrameRequest.of(sample, num_frames))
        except VideoError as err:
            return err

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(
            tqdm(pool.map(one, samples), total=len(samples), desc="decoding", unit="video", disable=not progress)
        )
    return {s.id: r for s, r in zip(samples, results, strict=True)}
