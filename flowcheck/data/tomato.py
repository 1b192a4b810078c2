"""TOMATO (hub yale-nlp/TOMATO, CC-BY-SA-4.0): six tasks in ``jsons/<task>.json`` + ``videos/<type>/<key>.mp4``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from flowcheck.data.hub import default_cache, unpack_videos
from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import Sample

HUB_ID = "yale-nlp/TOMATO"
TASKS = ("count", "direction", "rotation", "shape&trend", "velocity&frequency", "visual_cues")


def display_name(task: str) -> str:
    """``shape&trend`` -> ``ShapeTrend`` (the authors' names)."""
    return "".join(part.title() for part in task.replace("&", "_").split("_"))


def fetch(cache: Path | None = None, *, snapshot: Callable[..., str] | None = None) -> Path:
    """Download the hub snapshot and return a root in the TOMATO layout (videos unpacked once)."""
    if snapshot is None:
        from huggingface_hub import snapshot_download as snapshot
    local = (cache or default_cache()) / "tomato"
    try:
        path = Path(snapshot(repo_id=HUB_ID, repo_type="dataset", local_dir=str(local)))
    except Exception as err:
        raise DataError(
            f"cannot download {HUB_ID} ({type(err).__name__}: {err}). Give a local root in the TOMATO layout "
            "(jsons/<task>.json, videos/<demonstration_type>/<key>.mp4): --flow-data tomato=PATH"
        ) from err
    if not (path / "videos").is_dir():
        archives = sorted(path.glob("videos*.zip"))
        if not archives:
            raise DataError(
                f"the {HUB_ID} snapshot in {path} has no videos/ folder or videos*.zip; download the videos from "
                "the TOMATO repository (github.com/yale-nlp/TOMATO) into {path}/videos"
            )
        for archive in archives:
            unpack_videos(archive, path / "videos")
    return path


def load(
    root: Path | str | None = None,
    tasks: Iterable[str] | None = None,
    max_per_task: int | None = None,
    *,
    cache: Path | None = None,
    snapshot: Callable[..., str] | None = None,
) -> tuple[list[Sample], LoadReport]:
    """TOMATO samples (3 to 7 options each; no clip bounds) from a local root or the hub."""
    chosen = list(tasks) if tasks is not None else list(TASKS)
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        raise DataError(f"unknown TOMATO task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    root = fetch(cache, snapshot=snapshot) if root is None else Path(root)
    if not (root / "jsons").is_dir():
        raise DataError(
            f"{root} is not a TOMATO root: expected {root}/jsons/<task>.json and "
            f"{root}/videos/<demonstration_type>/<key>.mp4 (hub {HUB_ID})"
        )
    report = LoadReport("tomato", str(root))
    samples: list[Sample] = []
    for task in chosen:
        path = root / "jsons" / f"{task}.json"
        if not path.exists():
            report.skip(f"tomato/{task}", path, "annotation file not found")
            continue
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{path} is not valid JSON ({err}); re-download the annotations") from None
        if not entries:
            report.skip(f"tomato/{task}", path, "empty task: the annotation file has no questions")
            continue
        kept = 0
        for key, entry in entries.items():
            if max_per_task is not None and kept >= max_per_task:
                break
            sample_id = f"tomato/{task}/{key}"
            options = [str(o) for o in entry.get("options", [])]
            answer = entry.get("answer")
            if len(options) < 2:
                report.skip(sample_id, path, "an entry needs at least two options")
                continue
            if not isinstance(answer, int) or not 0 <= answer < len(options):
                report.skip(sample_id, path, f"answer {answer!r} is not the index of one of {len(options)} options")
                continue
            video = root / "videos" / str(entry.get("demonstration_type", "")) / f"{entry.get('key')}.mp4"
            if not video.exists():
                report.skip(sample_id, video, "video file not found")
                continue
            samples.append(
                Sample(sample_id, task, video, str(entry["question"]), tuple(options), answer, dataset="tomato")
            )
            kept += 1
    report.loaded = len(samples)
    return samples, report
