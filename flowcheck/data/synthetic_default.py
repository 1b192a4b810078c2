"""The default synthetic benchmark: generated once, deterministically, into the data cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from flowcheck.data.hub import default_cache

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
