"""Decode the frames a model sees: decord first, PyAV as a fallback, with a per-video cache."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flowcheck.data.sample import Sample
from flowcheck.data.sampling import segment_centre_indices

BACKENDS = ("decord", "pyav")


class VideoError(RuntimeError):
    """A video that cannot be decoded: missing, unreadable or without frames."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def _read_decord(path: Path, num_frames: int, start: float | None, end: float | None) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path), num_threads=1)
    total = len(reader)
    if total == 0:
        raise VideoError(path, "the video has no frames")
    indices = segment_centre_indices(total, float(reader.get_avg_fps()), num_frames, start, end)
    return reader.get_batch(indices).asnumpy()


def _read_pyav(path: Path, num_frames: int, start: float | None, end: float | None) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        fps = float(stream.average_rate or stream.guessed_rate or 1)
    if not frames:
        raise VideoError(path, "the video has no frames")
    indices = segment_centre_indices(len(frames), fps, num_frames, start, end)
    return np.stack([frames[i] for i in indices])


_READERS: dict[str, Callable[[Path, int, float | None, float | None], np.ndarray]] = {
    "decord": _read_decord,
    "pyav": _read_pyav,
}


def read_frames(
    path: Path | str,
    num_frames: int = 8,
    start: float | None = None,
    end: float | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """uint8 [T, H, W, 3] frames at segment centres of [start, end] (the whole video without bounds).

    ``backend="auto"`` tries decord and falls back to PyAV; a video neither can read raises
    `VideoError` naming the file.
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
            frames = _READERS[name](path, num_frames, start, end)
        except VideoError:
            raise
        except ImportError as err:
            errors.append(f"{name} not installed ({err})")
            continue
        except Exception as err:  # the decoders raise their own types for corrupt files
            errors.append(f"{name}: {type(err).__name__}: {err}")
            continue
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise VideoError(path, f"decoded frames have shape {frames.shape} and dtype {frames.dtype}")
        return frames
    raise VideoError(path, "unreadable video (" + "; ".join(errors) + ")")


def frame_times(path: Path | str, num_frames: int = 8, start: float | None = None, end: float | None = None):
    """Seconds of the frames `read_frames` returns (segment centres), or None when the video cannot be opened."""
    try:
        import decord

        reader = decord.VideoReader(str(path), num_threads=1)
        fps = float(reader.get_avg_fps())
        indices = segment_centre_indices(len(reader), fps, num_frames, start, end)
    except Exception:  # a missing or unreadable file: the caller decides what to label frames with
        return None
    return [index / fps for index in indices]


def sample_frame_times(sample: Sample, num_frames: int) -> list[float]:
    """Seconds of a sample's sampled frames; one second apart when its video cannot be opened (frames given)."""
    return frame_times(sample.video, num_frames, sample.start, sample.end) or [float(i) for i in range(num_frames)]


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
    """An in-memory LRU of decoded frames, optionally backed by ``.npy`` files in a directory."""

    def __init__(self, max_items: int = 256, directory: Path | None = None, backend: str = "auto") -> None:
        self.max_items, self.directory, self.backend = max_items, directory, backend
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0  # videos actually decoded (cache misses)

    def get(self, request: FrameRequest) -> np.ndarray:
        key = request.key()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        frames = self._from_disk(key)
        if frames is None:
            frames = read_frames(request.path, request.num_frames, request.start, request.end, self.backend)
            with self._lock:
                self.decoded += 1
            self._to_disk(key, frames)
        with self._lock:
            self._items[key] = frames
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return frames

    def _from_disk(self, key: str) -> np.ndarray | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.npy"
        return np.load(path) if path.exists() else None

    def _to_disk(self, key: str, frames: np.ndarray) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f"{key}.{threading.get_ident()}.tmp.npy"
        np.save(tmp, frames)
        tmp.replace(self.directory / f"{key}.npy")


def read_many(
    samples: Iterable[Sample],
    num_frames: int = 8,
    *,
    workers: int = 2,
    cache: FrameCache | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray | VideoError]:
    """Frames of many samples, decoded in a thread pool; failures come back as `VideoError` values."""
    samples = list(samples)
    cache = cache or FrameCache(max_items=len(samples) or 1)

    def one(sample: Sample) -> np.ndarray | VideoError:
        try:
            return cache.get(FrameRequest.of(sample, num_frames))
        except VideoError as err:
            return err

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(
            tqdm(pool.map(one, samples), total=len(samples), desc="decoding", unit="video", disable=not progress)
        )
    return {s.id: r for s, r in zip(samples, results, strict=True)}
