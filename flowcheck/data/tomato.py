"""TOMATO (hub yale-nlp/TOMATO, CC-BY-SA-4.0): six tasks in ``jsons/<task>.json`` + ``videos/<type>/<key>.mp4``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import ValidationError

from flowcheck.data.hub import default_cache, unpack_videos
from flowcheck.data.registry import DatasetSpec, OptionConvention, register
from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import Sample
from flowcheck.data.schemas import TomatoEntry, entry_problem, json_type, read_json

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
                f"the TOMATO repository (github.com/yale-nlp/TOMATO) into {path / 'videos'}"
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
        entries = read_json(path)
        if not isinstance(entries, dict):
            report.skip(
                f"tomato/{task}",
                path,
                f"the file holds {json_type(entries)}; a TOMATO file is an object keyed by question id",
            )
            continue
        if not entries:
            report.skip(f"tomato/{task}", path, "empty task: the annotation file has no questions")
            continue
        for key in entries.duplicates:
            report.skip(f"tomato/{task}/{key}", path, f"entry {key!r}: duplicate question id (the first one is kept)")
        kept = 0
        for key, raw in entries.items():
            if max_per_task is not None and kept >= max_per_task:
                break
            sample, problem = _sample(root, task, path, key, raw)
            if problem is not None:
                report.skip(f"tomato/{task}/{key}", problem[0], problem[1])
                continue
            samples.append(sample)
            kept += 1
    report.loaded = len(samples)
    return samples, report


def _sample(root: Path, task: str, path: Path, key: str, raw: object) -> tuple[Sample | None, tuple[str, str] | None]:
    """A validated entry as a Sample, or the (file, reason) of why it is skipped."""
    where = f"entry {key!r}: "
    if not isinstance(raw, dict):
        return None, (str(path), f"{where}the entry is {json_type(raw)}, not an object")
    if getattr(raw, "duplicates", None):
        return None, (str(path), f"{where}the entry repeats the field(s) {raw.duplicates}")
    try:
        entry = TomatoEntry.model_validate(raw)
    except ValidationError as err:
        return None, (str(path), where + entry_problem(err))
    if not 0 <= entry.answer < len(entry.options):
        return None, (
            str(path),
            f"{where}field 'answer': {entry.answer} is not the index of one of {len(entry.options)} options",
        )
    duplicate = [i for i, o in enumerate(entry.options) if o in entry.options[:i]]
    if duplicate:
        return None, (
            str(path),
            f"{where}field 'options': option {duplicate[0]} repeats an earlier one after normalisation",
        )
    video = root / "videos" / entry.demonstration_type / f"{entry.key}.mp4"
    if not video.exists():
        return None, (str(video), "video file not found")
    try:
        sample = Sample(
            f"tomato/{task}/{key}", task, video, entry.question, tuple(entry.options), entry.answer, dataset="tomato"
        )
    except ValueError as err:
        return None, (str(path), f"{where}{err}")
    return sample, None


SPEC = register(
    DatasetSpec(
        name="tomato",
        description=f"TOMATO (hub {HUB_ID}): six temporal reasoning tasks, all analysed",
        loader=load,
        temporal=None,
        keywords="action_sequence",
        options=OptionConvention(
            3, 7, "index", note="3 to 7 options in the released annotations (1,484 questions); answer = 0-based index"
        ),
        hub_id=HUB_ID,
    )
)
