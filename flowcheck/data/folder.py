"""Benchmarks in the TVBench layout: ``json/<task>.json`` + ``video/<task>/<file>``.

Each JSON file is a list of ``{video, question, candidates, answer, [start, end], [id]}`` where
`answer` is the text of one candidate (a multiple-choice question), or of ``{video, question, answer,
[start, end], [id]}`` without `candidates`, where `answer` is a free-text reference answer (an open-ended
question: only the analyses that generate an answer run on it). Entries are validated against
`schemas.TVBenchEntry` or `schemas.OpenEndedEntry` (text normalised); bad entries are skipped and listed in the
LoadReport with the file, the entry and the field at fault.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from flowcheck.data.registry import DatasetSpec, OptionConvention, register
from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import OPTION_LETTERS, Sample
from flowcheck.data.schemas import (
    OpenEndedEntry,
    TVBenchEntry,
    answer_index,
    entry_problem,
    json_type,
    read_json,
)


def available_tasks(root: Path) -> list[str]:
    """Task names (file stems) under root/json, sorted (the authors' task ids are these indices)."""
    return sorted(p.stem for p in (root / "json").glob("*.json"))


def load_tvbench_layout(
    root: Path | str,
    *,
    dataset: str = "folder",
    tasks: Iterable[str] | None = None,
    max_per_task: int | None = None,
    bound_tasks: Iterable[str] = (),
    video_dir: str = "video",
) -> tuple[list[Sample], LoadReport]:
    """Samples of a TVBench-layout folder; `bound_tasks` keep their start/end seconds."""
    root = Path(root)
    if not (root / "json").is_dir():
        raise DataError(
            f"{root} is not a benchmark in the TVBench layout: expected {root}/json/<task>.json and "
            f"{root}/{video_dir}/<task>/<video files>"
        )
    known = available_tasks(root)
    chosen = list(tasks) if tasks is not None else known
    missing = [t for t in chosen if t not in known]
    if missing:
        raise DataError(f"task(s) {', '.join(missing)} not found under {root}/json; available: {', '.join(known)}")
    bounded = set(bound_tasks)
    report = LoadReport(dataset, str(root))
    samples: list[Sample] = []
    seen: set[str] = set()
    for task in chosen:
        path = root / "json" / f"{task}.json"
        entries = read_json(path)
        if not isinstance(entries, list):
            report.skip(
                f"{dataset}/{task}", path, f"the file holds {json_type(entries)}; a TVBench-layout file is a list"
            )
            continue
        if not entries:
            report.skip(f"{dataset}/{task}", path, "empty task: the annotation file has no questions")
            continue
        kept = 0
        for index, raw in enumerate(entries):
            if max_per_task is not None and kept >= max_per_task:
                break
            sample, problem = _sample(raw, index, task, root, path, dataset, video_dir, task in bounded)
            if problem is not None:
                report.skip(*problem)
                continue
            if sample.id in seen:
                report.skip(sample.id, path, f"entry {index}: duplicate sample id; ids must be unique within a dataset")
                continue
            if not sample.video.exists():
                report.skip(sample.id, sample.video, "video file not found")
                continue
            samples.append(sample)
            seen.add(sample.id)
            kept += 1
    report.loaded = len(samples)
    return samples, report


def _sample(
    raw: object, index: int, task: str, root: Path, path: Path, dataset: str, video_dir: str, bounded: bool
) -> tuple[Sample | None, tuple[str, str, str] | None]:
    """A validated entry as a Sample, or the (sample id, file, reason) of why it is skipped."""
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    ident = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else f"{index:05d}"
    sample_id = f"{dataset}/{task}/{ident}"
    where = f"entry {index}: "
    if not isinstance(raw, dict):
        return None, (sample_id, str(path), f"{where}the entry is {json_type(raw)}, not an object")
    if getattr(raw, "duplicates", None):
        return None, (sample_id, str(path), f"{where}the entry repeats the field(s) {raw.duplicates}")
    open_ended = "candidates" not in raw
    try:
        entry = (OpenEndedEntry if open_ended else TVBenchEntry).model_validate(raw)
    except ValidationError as err:
        kind = (
            " (an entry without 'candidates' is an open-ended question: video, question and a free-text answer; "
            "a multiple-choice entry needs 'candidates')"
            if open_ended
            else ""
        )
        return None, (sample_id, str(path), where + entry_problem(err) + kind)
    if open_ended:
        index_of_answer, problem, options, reference = -1, None, (), entry.answer
    else:
        index_of_answer, problem = answer_index(entry.answer, entry.candidates)
        options, reference = tuple(entry.candidates), None
    if problem is not None:
        return None, (sample_id, str(path), where + problem)
    try:
        sample = Sample(
            id=sample_id,
            task=task,
            video=root / video_dir / task / entry.video,
            question=entry.question,
            options=options,
            answer_index=index_of_answer,
            start=entry.start if bounded else None,
            end=entry.end if bounded else None,
            dataset=dataset,
            reference=reference,
        )
    except ValueError as err:  # e.g. more options than letters
        return None, (sample_id, str(path), f"{where}{err}")
    return sample, None


def load_folder(
    root: Path | None, tasks: list[str] | None = None, max_per_task: int | None = None
) -> tuple[list[Sample], LoadReport]:
    """The ``folder`` dataset: a user's benchmark in the TVBench layout (multiple-choice and/or open-ended entries),
    named after its folder.

    Raises DataError when no root is given."""
    if root is None:
        raise DataError("the folder dataset needs a root: --flow-data folder=PATH (TVBench layout)")
    return load_tvbench_layout(root, dataset=Path(root).name or "folder", tasks=tasks, max_per_task=max_per_task)


SPEC = register(
    DatasetSpec(
        name="folder",
        description="a benchmark of your own in the TVBench layout (json/<task>.json, video/<task>/...)",
        loader=load_folder,
        temporal=None,
        keywords="action_sequence",
        options=OptionConvention(
            1,
            len(OPTION_LETTERS),
            "text",
            note="as many candidates as each annotation lists (1 to 26); none for an open-ended entry",
        ),
    )
)
