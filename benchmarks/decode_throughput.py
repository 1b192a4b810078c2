"""Benchmark: frame decoding throughput (frames/s), decord vs PyAV, serial vs a thread pool.

    python benchmarks/decode_throughput.py [--videos 48] [--size 224] [--frames 64] [--quick]

Writes lossless test videos to a temporary folder, then decodes 8 frames at segment centres from
each, the way a run does. The last line is machine readable.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from flowcheck.data.frames import read_frames
from flowcheck.data.synth import write_mp4


def make_videos(folder: Path, count: int, size: int, frames: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        base = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        drift = np.arange(frames, dtype=np.uint8)[:, None, None, None]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels (a multiple of 32 for decord)")
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.videos, args.frames = 12, 32
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp), args.videos, args.size, args.frames)
        rows = {}
        for backend in ("decord", "pyav"):
            for workers in (1, 2):
                rows[(backend, workers)] = throughput(paths, backend, workers)
    print(f"{args.videos} videos, {args.size}x{args.size}, {args.frames} frames each; 8 frames decoded per video")
    print(f"{'backend':<8}{'workers':>8}{'frames/s':>12}")
    for (backend, workers), fps in rows.items():
        print(f"{backend:<8}{workers:>8}{fps:>12.1f}")
    print(
        " ".join(f"{b}_{w}w={v:.1f}" for (b, w), v in rows.items())
        + f" decord_over_pyav={rows[('decord', 1)] / rows[('pyav', 1)]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
