"""Small lossless test videos whose frames say their own index."""

from __future__ import annotations

from fractions import Fraction
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


def write_timed_video(
    path: Path,
    count: int,
    *,
    fps: float | Fraction = 10,
    times_ms: list[int] | None = None,
    codec: str = "libx264rgb",
    size: int = 32,
) -> Path:
    """Index frames (`index_frames`) at a possibly fractional constant `fps`, or shown at `times_ms`
    (milliseconds, a variable frame rate: each frame's pts in a 1/1000 s time base), with `codec`
    ("libx264rgb" lossless; "libsvtav1" for AV1, which decord cannot open)."""
    import av

    frames = index_frames(count, size)
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = stream.height = size
        if codec == "libx264rgb":
            stream.pix_fmt, stream.options = "rgb24", {"crf": "0", "preset": "ultrafast", "bf": "0"}
        else:
            stream.pix_fmt = "yuv420p"
        if times_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if times_ms is not None:
                picture.pts, picture.time_base = times_ms[i], Fraction(1, 1000)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def can_encode(codec: str) -> bool:
    """Whether this machine's PyAV can encode `codec`."""
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception:
        return False
    return True
