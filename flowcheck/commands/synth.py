"""`flowcheck synth`: generate the synthetic temporal benchmark in the TVBench layout."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from flowcheck.data.synth import write_benchmark
from flowcheck.data.synth_tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output directory (TVBench layout)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--per-task", type=int, default=200, help="samples per task (default 200)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated tasks (default: {','.join(TASKS)})")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    counts = write_benchmark(args.out, seed=args.seed, per_task=args.per_task, tasks=tasks)
    total = sum(counts.values())
    print(
        f"wrote {total} videos ({', '.join(f'{t} {n}' for t, n in counts.items())}) to {args.out} "
        f"in {time.perf_counter() - start:.1f}s"
    )
    return 0
