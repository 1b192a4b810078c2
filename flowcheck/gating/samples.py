"""Per-sample records of a gating baseline: what paired tests need, keyed by a content fingerprint of each sample.

Per dataset and task (arrays aligned with ``fingerprint``)::

    {"id": [sample id, ...],               # for reading (unpaired samples are listed by id)
     "fingerprint": [hex16, ...],          # `sample_identity`: a changed sample never pairs
     "video": [hex12, ...],                # the video's content hash: the bootstrap's cluster
     "correct": {"base": "1011", "<knockout>": "1001"},   # first-token correctness, one character per sample
     "curves": {"<condition>": {"centers": [0, 1, ...],  # window centres (0-based layers)
                                "values": [[relative change % per centre], ...]}}}   # one row per sample

Correctness is a string of ``0``/``1`` (``-``: no record of that knockout); relative changes (%) are rounded to
``[gating] curve_decimals`` and kept only for correctly answered samples (``null`` otherwise): the curves average
over those (the paper's selection), and the paired curve test compares samples answered correctly in both runs.

Size: one value per (correct sample, condition, window) of about 8 bytes of JSON, plus about 60 bytes per sample
(id, fingerprint, video, correctness); see README ("Gating a new checkpoint in CI") for a full TVBench run.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowcheck.data.sample import Sample

if TYPE_CHECKING:
    from flowcheck.analyses.runner import ModelResults

CURVE_STYLE = "center"  # the window style of the paper's curves (and of the sweep's summary)


def _video_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sample_identity(dataset: str, sample: Sample) -> tuple[str, str]:
    """`(fingerprint, video)` of a sample: the fingerprint (16 hex digits) hashes the dataset name, sample id,
    question, options, answer index, clip bounds (seconds), the open-ended reference answer if any
    (`Sample.annotation`) and the video's bytes, so that two runs pair a sample only when all of them are equal;
    `video` (12 hex digits) hashes the video's bytes alone (questions about one video share it: the bootstrap's
    cluster). Raises OSError when the video cannot be read."""
    video = _video_digest(Path(sample.video))
    text = json.dumps([dataset, *sample.annotation()])
    fingerprint = hashlib.sha256(f"{text}\n{video}".encode()).hexdigest()[:16]
    return fingerprint, video[:12]


def knockout_name(condition: str, style: str) -> str:
    """The name of an accuracy knockout as the gate's metrics spell it: ``cross_frame`` in ``explicit:first_half``
    -> ``cross_frame_first_half``."""
    return f"{condition}_{style.removeprefix('explicit:')}"


def per_sample_records(
    results: ModelResults, samples: Sequence[Sample], identities: Mapping[str, tuple[str, str]], decimals: int = 3
) -> dict[str, dict[str, Any]]:
    """Per task, the per-sample records (module docstring) of `results` (one model on one dataset).

    `identities` maps sample id -> `sample_identity`; `samples` are the dataset's samples (the task of each id).
    Samples without a baseline (skipped) are left out. Raises KeyError when a sample with a baseline has no
    identity."""
    sweeps = results.results.get("sweep", {})
    knockouts = [tuple(k) for k in results.info.get("accuracy", {}).get("knockouts", [])]
    task_of = {s.id: s.task for s in samples}
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"id": [], "fingerprint": [], "video": [], "correct": defaultdict(list), "curves": {}}
    )
    for base in sorted(results.baselines, key=lambda b: b.sample_id):
        task = task_of.get(base.sample_id, base.task)
        fingerprint, video = identities[base.sample_id]
        row = rows[task]
        index = len(row["fingerprint"])
        row["id"].append(base.sample_id)
        row["fingerprint"].append(fingerprint)
        row["video"].append(video)
        row["correct"]["base"].append("1" if base.correct else "0")
        sweep = sweeps.get(base.sample_id)
        records = sweep.records if sweep is not None else []
        true_letter = base.option_ids[base.true_index]
        for condition, style in knockouts:
            hit = next((r for r in records if r.condition == condition and r.window_style == style), None)
            mark = "-" if hit is None else ("1" if hit.new_argmax == true_letter else "0")
            row["correct"][knockout_name(condition, style)].append(mark)
        per_condition: dict[str, dict[int, float]] = defaultdict(dict)
        for r in records if base.correct else ():  # curves average over correctly answered samples only
            if r.window_style == CURVE_STYLE and r.window_center is not None:
                per_condition[r.condition][r.window_center] = round(r.relative_change, decimals)
        for condition, values in per_condition.items():
            curve = row["curves"].setdefault(condition, {"centers": sorted(values), "values": []})
            curve["values"].extend([None] * (index - len(curve["values"])))  # samples before without this condition
            curve["values"].append([values.get(c) for c in curve["centers"]])
    out = {}
    for task, row in sorted(rows.items()):
        n = len(row["fingerprint"])
        for curve in row["curves"].values():
            curve["values"].extend([None] * (n - len(curve["values"])))
        out[task] = {**row, "correct": {k: "".join(v) for k, v in row["correct"].items()}}
    return out


def dataset_fingerprint(identities: Mapping[str, tuple[str, str]]) -> str:
    """One hash (16 hex digits) of a dataset's samples as loaded: the sorted sample fingerprints."""
    joined = "\n".join(sorted(fp for fp, _ in identities.values()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
