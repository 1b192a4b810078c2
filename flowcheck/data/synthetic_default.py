"""The ``synthetic`` dataset: the bundled benchmark, generated once, deterministically, into the data cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flowcheck.data.hub import default_cache
from flowcheck.data.paper_tasks import TEMPORAL_TASKS
from flowcheck.data.registry import DatasetSpec, OptionConvention, register
from flowcheck.data.report import LoadReport
from flowcheck.data.sample import Sample

DEFAULT_SEED = 2026
DEFAULT_PER_TASK = 50


def synthetic_root(cache: Path | None = None, seed: int = DEFAULT_SEED, per_task: int = DEFAULT_PER_TASK) -> Path:
    """The folder of the default synthetic benchmark, generating it on first use (a few seconds).

    Generation goes to a private folder renamed into place, so parallel workers never see half a
    benchmark.
    """
    from flowcheck.data.synth import GENERATOR_VERSION, write_benchmark

    root = (cache or default_cache()) / f"synthetic-v{GENERATOR_VERSION}-seed{seed}-n{per_task}"
    if (root / "README.md").exists():
        return root
    staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    write_benchmark(staging, seed=seed, per_task=per_task, progress=False)
    try:
        staging.rename(root)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return root


def load_synthetic(
    root: Path | None, tasks: list[str] | None = None, max_per_task: int | None = None
) -> tuple[list[Sample], LoadReport]:
    """The synthetic benchmark at `root` (TVBench layout), or the default one (generated on first use)."""
    from flowcheck.data.folder import load_tvbench_layout

    root = Path(root) if root is not None else synthetic_root()
    return load_tvbench_layout(root, dataset="synthetic", tasks=tasks, max_per_task=max_per_task)


SPEC = register(
    DatasetSpec(
        name="synthetic",
        description="the bundled synthetic benchmark: a miniature of each paper task plus a spatial control task",
        loader=load_synthetic,
        temporal=TEMPORAL_TASKS,
        keywords="synthetic",
        options=OptionConvention(
            2, 4, "text", note="2 options (direction, transition, antonym), 4 (count, sequence), 2-4 (spatial)"
        ),
    )
)
