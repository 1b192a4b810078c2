"""Benchmark: the main job (`pytest suites/` on the bundled default) from an empty result cache, serial.

    python benchmarks/bench_main_job.py                 # the whole main job (README's first command)
    python benchmarks/bench_main_job.py --max-samples 4 # a quick estimate: 4 samples per task

Runs the suites in a subprocess exactly as the README's first command does (no xdist), with a fresh result
cache and report folder in a temporary directory (the synthetic data folder is shared: generating it takes
seconds and is timed separately, first), and prints the wall time, the samples computed and the seconds per
computed sample, then a second, cached run's wall time. The last line is machine readable. The README's
"about N minutes" comes from this script; the machine's load is printed with it (a 2-core machine running
other jobs is several times slower: measure on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_suites(cache: Path, reports: Path, max_samples: int | None) -> tuple[float, str]:
    command = [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-q", "-p", "no:cacheprovider"]
    command += ["--flow-cache", str(cache), "--flow-report-dir", str(reports)]
    if max_samples:
        command += ["--flow-max-samples", str(max_samples), "--deselect", "suites/test_gating.py"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("flowcheck:") and "claim checks" in line]
    if done.returncode not in (0, 1) or not lines:
        sys.exit(f"the suites did not run (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed, lines[0]


def computed_samples(cache: Path) -> int:
    return len(list((cache / "sweep").glob("*/*.json")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-samples", type=int, default=None, help="samples per task (default: all)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        cache, reports = Path(tmp) / "cache", Path(tmp) / "reports"
        first, line = run_suites(cache, reports, args.max_samples)
        samples = computed_samples(cache)
        second, _ = run_suites(cache, reports, args.max_samples)
    print(line)
    print(f"empty cache: {first:.1f} s for {samples} computed (model, sample) pairs ({first / samples:.2f} s each)")
    print(f"cached: {second:.1f} s")
    print(
        json.dumps(
            {
                "main_job_s": round(first, 1),
                "cached_s": round(second, 1),
                "computed_pairs": samples,
                "s_per_pair": round(first / samples, 3),
                "max_samples": args.max_samples,
                "load_start": round(load, 2),
                "load_end": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
