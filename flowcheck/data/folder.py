"""Benchmarks in the TVBench layout: ``json/<task>.json`` + ``video/<task>/<file>``.

Each JSON file is a list of ``{video, question, candidates, answer, [start, end], [id]}`` where
`answer` is the text of one candidate. Bad entries are skipped and listed in the LoadReport.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from flowcheck.data.report import DataError, LoadReport
from flowcheck.data.sample import Sample


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); fix or re-download the annotations") from None


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
        entries = _read_json(path)
        if not isinstance(entries, list):
            raise DataError(f"{path} must hold a JSON list of questions, found {type(entries).__name__}")
        if not entries:
            report.skip(f"{dataset}/{task}", path, "empty task: the annotation file has no questions")
            continue
        kept = 0
        for index, entry in enumerate(entries):
            if max_per_task is not None and kept >= max_per_task:
                break
            sample_id = f"{dataset}/{task}/{entry.get('id', f'{index:05d}')}"
            problem = _entry_problem(entry)
            if problem:
                report.skip(sample_id, path, problem)
                continue
            if sample_id in seen:
                report.skip(sample_id, path, "duplicate sample id; ids must be unique within a dataset")
                continue
            video = root / video_dir / task / entry["video"]
            if not video.exists():
                report.skip(sample_id, video, "video file not found")
                continue
            candidates = [str(c) for c in entry["candidates"]]
            samples.append(
                Sample(
                    id=sample_id,
                    task=task,
                    video=video,
                    question=str(entry["question"]),
                    options=tuple(candidates),
                    answer_index=candidates.index(str(entry["answer"])),
                    start=float(entry["start"]) if task in bounded and entry.get("start") is not None else None,
                    end=float(entry["end"]) if task in bounded and entry.get("end") is not None else None,
                    dataset=dataset,
                )
            )
            seen.add(sample_id)
            kept += 1
    report.loaded = len(samples)
    return samples, report


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return f"entry is a {type(entry).__name__}, not an object"
    for key in ("video", "question", "candidates", "answer"):
        if key not in entry:
            return f"entry lacks the field {key!r}"
    candidates = entry["candidates"]
    if not isinstance(candidates, list) or len(candidates) < 2:
        return "an entry needs a list of at least two candidates"
    if str(entry["answer"]) not in [str(c) for c in candidates]:
        return f"answer {entry['answer']!r} is not among the candidates {candidates}"
    return None
