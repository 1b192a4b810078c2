"""TVBench (hub FunAILab/TVBench, CC-BY-4.0): ten tasks in ``json/<task>.json`` + ``video/<task>/<file>``."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.hub import Downloader, default_cache, download, unpack_videos
from flowcheck.data.paper_tasks import TEMPORAL_TASKS
from flowcheck.data.registry import DatasetSpec, OptionConvention, register
from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import OPTION_LETTERS, Sample

HUB_ID = "FunAILab/TVBench"
# The authors' task ids are indices into this alphabetical list (official-protocol.md 6.1).
TASKS = (
    "action_antonym",
    "action_count",
    "action_localization",
    "action_sequence",
    "egocentric_sequence",
    "moving_direction",
    "object_count",
    "object_shuffle",
    "scene_transition",
    "unexpected_action",
)
PAPER_TASKS = TEMPORAL_TASKS  # the tasks the paper analyses
BOUND_TASKS = ("action_localization", "action_sequence")


def task_id(task: str) -> int:
    """The authors' id of a TVBench task (its alphabetical index)."""
    return TASKS.index(task)


def display_name(task: str) -> str:
    """``action_sequence`` -> ``Action Sequence``."""
    return task.replace("_", " ").title()


def fetch(tasks: Iterable[str], cache: Path | None = None, *, downloader: Downloader | None = None) -> Path:
    """Download the tasks' annotations and unpack their video zips into a local TVBench-layout root."""
    root = (cache or default_cache()) / "tvbench"
    (root / "json").mkdir(parents=True, exist_ok=True)
    for task in tasks:
        annotations = root / "json" / f"{task}.json"
        if not annotations.exists():
            shutil.copyfile(download(HUB_ID, f"json/{task}.json", downloader=downloader), annotations)
        videos = root / "video" / task
        if not (videos / ".unpacked").exists():
            unpack_videos(download(HUB_ID, f"video/{task}.zip", downloader=downloader), videos)
    return root


def load(
    root: Path | str | None = None,
    tasks: Iterable[str] | None = None,
    max_per_task: int | None = None,
    *,
    cache: Path | None = None,
    downloader: Downloader | None = None,
) -> tuple[list[Sample], LoadReport]:
    """TVBench samples from a local root, or from the hub into the cache when `root` is None."""
    chosen = list(tasks) if tasks is not None else list(PAPER_TASKS)
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        raise DataError(f"unknown TVBench task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    if root is None:
        root = fetch(chosen, cache, downloader=downloader)
    root = Path(root)
    if not root.exists():
        raise DataError(
            f"TVBench root {root} does not exist. Get the benchmark from the hub ({HUB_ID}: json/<task>.json and "
            f"video/<task>.zip unpacked to video/<task>/), or omit the path to download it into the cache."
        )
    return load_tvbench_layout(
        root, dataset="tvbench", tasks=chosen, max_per_task=max_per_task, bound_tasks=BOUND_TASKS
    )


SPEC = register(
    DatasetSpec(
        name="tvbench",
        description=f"TVBench (hub {HUB_ID}): ten temporal tasks; the paper analyses five (PAPER_TASKS)",
        loader=load,
        temporal=PAPER_TASKS,
        keywords="action_sequence",
        options=OptionConvention(
            1, len(OPTION_LETTERS), "text", note="as many candidates as each annotation lists (varies by task)"
        ),
        hub_id=HUB_ID,
    )
)
