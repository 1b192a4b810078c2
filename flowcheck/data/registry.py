"""The dataset registry: each dataset declares its loader and metadata, and `load_dataset` resolves a name.

A dataset module builds a `DatasetSpec` and passes it to `register` when it is imported (as model
adapters do in `flowcheck.models.registry`); `DATASET_MODULES` lists those modules, imported on
first use. A spec says how to load the dataset (``--flow-data NAME[=ROOT]``), which of its tasks the
paper's temporal claims are tested on, which logit-lens keyword list it uses by default, and how
its questions give their options. Adding a dataset is one module plus its entry in `DATASET_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowcheck.data.hub import cache_root
from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import OPTION_LETTERS, Sample

# A loader: (root or None, task names or None for its default tasks, at most this many samples per task).
Loader = Callable[[Path | None, list[str] | None, int | None], tuple[list[Sample], LoadReport]]

# Modules that register a dataset when imported.
DATASET_MODULES: list[str] = [
    "flowcheck.data.tvbench",
    "flowcheck.data.tomato",
    "flowcheck.data.folder",
    "flowcheck.data.synthetic_default",
]

_DATASETS: dict[str, DatasetSpec] = {}


@dataclass(frozen=True)
class OptionConvention:
    """How a dataset's questions give their options.

    Each question has between `min_options` and `max_options` options (inclusive), lettered
    ``(A)``, ``(B)``, ... in the order the annotation lists them (`OPTION_LETTERS`). The annotation
    names the true option by its text (``answer = "text"``, the TVBench layout) or by its 0-based
    index (``answer = "index"``, TOMATO). `note` says where the count comes from.
    """

    min_options: int
    max_options: int
    answer: Literal["text", "index"]
    note: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.min_options <= self.max_options <= len(OPTION_LETTERS):
            raise ValueError(
                f"option counts {self.min_options}..{self.max_options} must satisfy "
                f"1 <= min <= max <= {len(OPTION_LETTERS)} (one letter per option)"
            )

    def admits(self, count: int) -> bool:
        """Whether a question with `count` options follows the convention."""
        return self.min_options <= count <= self.max_options

    def letters(self, count: int) -> tuple[str, ...]:
        """The letters of a question with `count` options: ``("A", "B", ...)``.

        Raises ValueError when `count` is outside ``min_options..max_options``."""
        if not self.admits(count):
            raise ValueError(
                f"{count} options: this dataset's questions have {self.min_options} to {self.max_options} options"
            )
        return tuple(OPTION_LETTERS[:count])


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its name (``--flow-data NAME``), loader and metadata.

    `temporal` is the tasks the paper's temporal claims are tested on (None: every task of the
    dataset). `keywords` is the name of the bundled logit-lens keyword file used unless a model's
    registry entry sets ``keywords`` (flowcheck/specs/keywords/<name>.json). `hub_id` is where the
    loader downloads from when no root is given (None: a root is generated or required).
    """

    name: str
    description: str
    loader: Loader
    temporal: tuple[str, ...] | None
    keywords: str
    options: OptionConvention
    hub_id: str | None = None

    def temporal_tasks(self, tasks: Iterable[str]) -> list[str]:
        """Those of `tasks` the paper's temporal claims are tested on, in the order given."""
        tasks = list(tasks)
        if self.temporal is None:
            return tasks
        return [t for t in tasks if t in self.temporal]

    def load(
        self,
        root: Path | str | None = None,
        tasks: Iterable[str] | None = None,
        max_per_task: int | None = None,
        data_dir: Path | str | None = None,
    ) -> tuple[list[Sample], LoadReport]:
        """Samples and load report: from `root`, else from the hub or the generated benchmark (see `load_dataset`).

        Raises DataError for a root that does not exist (saying where to get the dataset) or a loader's
        own problem (unknown task, wrong layout)."""
        if root is not None and not Path(root).expanduser().exists():
            hint = (
                f"give a local copy in the layout of the hub dataset {self.hub_id}, or omit the path to download "
                "it into the cache"
                if self.hub_id
                else "give an existing folder in the TVBench layout (json/<task>.json, video/<task>/...)"
            )
            raise DataError(f"the {self.name} dataset root {root} does not exist; {hint}")
        with cache_root(data_dir):
            return self.loader(
                Path(root).expanduser() if root is not None else None,
                list(tasks) if tasks is not None else None,
                max_per_task,
            )


def register(spec: DatasetSpec) -> DatasetSpec:
    """Make `spec` known by its name; returns it. Raises ValueError when another spec has that name."""
    if spec.name in _DATASETS and _DATASETS[spec.name] is not spec:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    _DATASETS[spec.name] = spec
    return spec


def datasets() -> dict[str, DatasetSpec]:
    """Every registered dataset by name, sorted by name (imports the dataset modules on first use)."""
    for module in DATASET_MODULES:
        importlib.import_module(module)
    return dict(sorted(_DATASETS.items()))


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset `name`; raises DataError naming the known datasets when there is none."""
    known = datasets()
    if name not in known:
        raise DataError(f"unknown dataset {name!r}; datasets: {', '.join(known)}")
    return known[name]


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
    if tasks is not None:
        tasks = list(dict.fromkeys(tasks))  # a task named twice is one task (not twice the sample budget)
    return dataset_spec(name).load(root, tasks, max_per_task, data_dir)


__all__ = [
    "DATASET_MODULES",
    "DatasetSpec",
    "OptionConvention",
    "dataset_spec",
    "datasets",
    "load_dataset",
    "register",
]
