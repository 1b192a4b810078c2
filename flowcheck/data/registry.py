"""Resolve a dataset name (and optional root) to samples: ``--flow-data tvbench=PATH`` and friends."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flowcheck.data import tomato, tvbench
from flowcheck.data.folder import available_tasks, load_tvbench_layout
from flowcheck.data.hub import cache_root
from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import Sample

DATASETS = ("tvbench", "tomato", "folder", "synthetic")


def load_dataset(
    name: str,
    root: Path | str | None = None,
    tasks: Iterable[str] | None = None,
    max_per_task: int | None = None,
    data_dir: Path | str | None = None,
) -> tuple[list[Sample], LoadReport]:
    """Samples and load report of a named dataset.

    ``tvbench`` / ``tomato``: a local root in the hub layout, or the hub when `root` is None.
    ``folder``: any TVBench-layout folder (a user's own benchmark). ``synthetic``: the synthetic
    benchmark at `root` (TVBench layout), generated into the cache when `root` is None.
    `data_dir` is the cache for hub downloads and the generated benchmark (default: `hub.default_cache`).
    Raises DataError for an unknown dataset or a root that does not exist.
    """
    if root is not None and not Path(root).expanduser().exists():
        hub = {"tvbench": tvbench.HUB_ID, "tomato": tomato.HUB_ID}.get(name)
        hint = (
            f"give a local copy in the layout of the hub dataset {hub}, or omit the path to download it into the cache"
            if hub
            else "give an existing folder in the TVBench layout (json/<task>.json, video/<task>/...)"
        )
        raise DataError(f"the {name} dataset root {root} does not exist; {hint}")
    with cache_root(data_dir):
        return _load(name, root, tasks, max_per_task)


def _load(
    name: str, root: Path | str | None, tasks: Iterable[str] | None, max_per_task: int | None
) -> tuple[list[Sample], LoadReport]:
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
