"""The synthetic benchmark: deterministic, balanced, loadable, and temporal questions need frame order."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.frames import read_frames
from flowcheck.data.synth import source_frames, write_benchmark, write_mp4
from flowcheck.data.synth_tasks import SPATIAL_TASK, TASKS, TEMPORAL_TASKS, generate_group

PER_TASK = 24


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_benchmark(root, seed=7, per_task=PER_TASK, progress=False)
    return root


def _digest(frame: np.ndarray) -> str:
    return hashlib.sha1(frame.tobytes()).hexdigest()


def test_loads_through_the_tvbench_layout_loader_with_every_task(bench):
    samples, report = load_tvbench_layout(bench, dataset="synthetic")
    assert not report.skipped
    counts = Counter(s.task for s in samples)
    assert set(counts) == set(TASKS) and min(counts.values()) >= PER_TASK


def test_generation_is_deterministic(bench, tmp_path):
    write_benchmark(tmp_path, seed=7, per_task=PER_TASK, tasks=["object_count"], progress=False)
    assert (tmp_path / "json" / "object_count.json").read_text() == (bench / "json" / "object_count.json").read_text()
    entry = json.loads((bench / "json" / "object_count.json").read_text())[3]
    a = read_frames(bench / "video" / "object_count" / entry["video"]).frames
    b = read_frames(tmp_path / "video" / "object_count" / entry["video"]).frames
    assert np.array_equal(a, b)
    other = tmp_path / "other"
    write_benchmark(other, seed=8, per_task=PER_TASK, tasks=["object_count"], progress=False)
    assert (other / "json" / "object_count.json").read_text() != (tmp_path / "json" / "object_count.json").read_text()


def test_decoded_frames_are_exactly_the_generated_slots(tmp_path):
    rng = np.random.default_rng(3)
    for task in TASKS:
        video = generate_group(task, rng)[0]
        assert source_frames(video).shape[0] == 16
        write_mp4(tmp_path / f"{task}.mp4", source_frames(video))
        assert np.array_equal(read_frames(tmp_path / f"{task}.mp4", 8).frames, video.slots), task


def test_answers_are_balanced_over_letters(bench):
    samples, _ = load_tvbench_layout(bench, dataset="synthetic")
    by_task = defaultdict(Counter)
    for s in samples:
        by_task[s.task][s.answer_index] += 1
    for task in TEMPORAL_TASKS:
        counts = by_task[task]
        assert max(counts.values()) == min(counts.values()), (task, counts)  # exact: twins cover every answer
    spatial = by_task[SPATIAL_TASK]
    assert sorted(spatial) == [0, 1, 2, 3], spatial
    option_counts = Counter(len(s.options) for s in samples if s.task == SPATIAL_TASK)
    assert sorted(option_counts) == [2, 3, 4], option_counts


def test_temporal_questions_are_unanswerable_from_single_frames_and_from_the_frame_set(bench):
    """Within a twin group every video has the same options and the same multiset of frames, and the
    answers cover every option once: any rule that sees frames without their order (one frame, or the
    unordered set) answers every group at exactly chance."""
    for task in TEMPORAL_TASKS:
        entries = json.loads((bench / "json" / f"{task}.json").read_text())
        groups = defaultdict(list)
        for e in entries:
            groups[e["group"]].append(e)
        assert len(groups) >= 2
        for members in groups.values():
            options = {tuple(m["candidates"]) for m in members}
            assert len(options) == 1, task
            assert sorted(m["candidates"].index(m["answer"]) for m in members) == list(range(len(members)))
            assert len(members) == len(members[0]["candidates"]), task
            multisets = set()
            for m in members:
                frames = read_frames(bench / "video" / task / m["video"], 8).frames
                multisets.add(tuple(sorted(_digest(f) for f in frames)))
            assert len(multisets) == 1, f"{task}: twins do not share their frames"
            orders = {
                tuple(_digest(f) for f in read_frames(bench / "video" / task / m["video"], 8).frames) for m in members
            }
            assert len(orders) == len(members), f"{task}: twins must differ in frame order"


def test_spatial_questions_are_answerable_from_one_frame(bench):
    entries = json.loads((bench / "json" / f"{SPATIAL_TASK}.json").read_text())
    for e in entries[:6]:
        frames = read_frames(bench / "video" / SPATIAL_TASK / e["video"], 8).frames
        assert all(np.array_equal(f, frames[0]) for f in frames)
