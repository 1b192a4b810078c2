"""Benchmark: frame decoding throughput (frames/s), decord vs PyAV, serial vs a thread pool; and the memory
8 frames of one long clip cost per backend.

    python benchmarks/decode_throughput.py [--videos 48] [--size 224] [--frames 64] [--quick]
                                           [--long-frames 1200] [--long-size 256]

Writes lossless test videos to a temporary folder, then decodes 8 frames at segment centres from
each, the way a run does. The long-clip case decodes 8 frames of one `--long-frames` clip in a fresh
process per backend and reports its peak RSS increase (MB) over the process after imports: it must
not grow with the clip's length. The last line is machine readable.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from flowcheck.data.frames import read_frames
from flowcheck.data.synth import write_mp4


def make_videos(folder: Path, count: int, size: int, frames: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        base = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        drift = (np.arange(frames) % 256).astype(np.uint8)[:, None, None, None]
        path = folder / f"v{i:03d}.mp4"
        write_mp4(path, (base + drift).astype(np.uint8), fps=25)
        paths.append(path)
    return paths


def throughput(paths: list[Path], backend: str, workers: int, per_video: int = 8) -> float:
    start = time.perf_counter()
    if workers == 1:
        for p in paths:
            read_frames(p, per_video, backend=backend)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda p: read_frames(p, per_video, backend=backend), paths))
    return len(paths) * per_video / (time.perf_counter() - start)


def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss_increase_mb(path: str, backend: str) -> float:
    """Peak resident memory added by decoding 8 frames of `path` (MB; Linux, run in a fresh process).

    Both decoders are imported first, the process's high-water mark is reset (``clear_refs`` 5), and
    the peak during decoding is compared with the resident memory just before it.
    """
    import av  # noqa: F401
    import decord  # noqa: F401

    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    read_frames(path, 8, backend=backend)
    return (_status_kib("VmHWM") - before) / 1024


def long_clip_memory(folder: Path, frames: int, size: int) -> dict[str, float]:
    """Peak RSS increase (MB) per backend for 8 frames of one `frames`-frame clip."""
    path = make_videos(folder, 1, size, frames)[0]
    spawn = multiprocessing.get_context("spawn")
    out = {}
    for backend in ("decord", "pyav"):
        with spawn.Pool(1) as pool:  # a fresh process per backend: no memory kept from the other
            out[backend] = pool.apply(peak_rss_increase_mb, (str(path), backend))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels (a multiple of 32 for decord)")
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--long-frames", type=int, default=1200, help="frames of the long clip (memory case)")
    parser.add_argument("--long-size", type=int, default=256, help="frame side of the long clip in pixels")
    args = parser.parse_args()
    if args.quick:
        args.videos, args.frames = 12, 32
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp), args.videos, args.size, args.frames)
        rows = {}
        for backend in ("decord", "pyav"):
            for workers in (1, 2):
                rows[(backend, workers)] = throughput(paths, backend, workers)
        memory = long_clip_memory(Path(tmp) / "long", args.long_frames, args.long_size)
    print(f"{args.videos} videos, {args.size}x{args.size}, {args.frames} frames each; 8 frames decoded per video")
    print(f"{'backend':<8}{'workers':>8}{'frames/s':>12}")
    for (backend, workers), fps in rows.items():
        print(f"{backend:<8}{workers:>8}{fps:>12.1f}")
    print(f"8 frames of one {args.long_frames}-frame {args.long_size}x{args.long_size} clip: peak RSS increase")
    for backend, mb in memory.items():
        print(f"{backend:<8}{mb:>+10.1f} MB")
    print(
        " ".join(f"{b}_{w}w={v:.1f}" for (b, w), v in rows.items())
        + f" decord_over_pyav={rows[('decord', 1)] / rows[('pyav', 1)]:.2f}"
        + "".join(f" long_rss_mb_{b}={v:.1f}" for b, v in memory.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
