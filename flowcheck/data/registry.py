"""Resolve a dataset name (and optional root) to samples: ``--flow-data tvbench=PATH`` and friends."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flowcheck.data import tomato, tvbench
from flowcheck.data.folder import available_tasks, load_tvbench_layout
from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import Sample

DATASETS = ("tvbench", "tomato", "folder", "synthetic")


def load_dataset(
    name: str,
    root: Path | str | None = None,
    tasks: Iterable[str] | None = None,
    max_per_task: int | None = None,
) -> tuple[list[Sample], LoadReport]:
    """Samples and load report of a named dataset.

    ``tvbench`` / ``tomato``: a local root in the hub layout, or the hub when `root` is None.
    ``folder``: any TVBench-layout folder (a user's own benchmark). ``synthetic``: the synthetic
    benchmark at `root` (TVBench layout), generated into the cache when `root` is None.
    """
    tasks = list(tasks) if tasks is not None else None
    if name == "tvbench":
        return tvbench.load(root, tasks, max_per_task)
    if name == "tomato":
        return tomato.load(root, tasks, max_per_task)
    if name == "folder":
        if root is None:
            raise DataError("the folder dataset needs a root: --flow-data folder=PATH (TVBench layout)")
        return load_tvbench_layout(root, dataset=Path(root).name or "folder", tasks=tasks, max_per_task=max_per_task)
    if name == "synthetic":
        from flowcheck.data.synthetic_default import synthetic_root

        root = Path(root) if root is not None else synthetic_root()
        return load_tvbench_layout(root, dataset="synthetic", tasks=tasks, max_per_task=max_per_task)
    raise DataError(f"unknown dataset {name!r}; datasets: {', '.join(DATASETS)}")


__all__ = ["DATASETS", "available_tasks", "load_dataset"]
