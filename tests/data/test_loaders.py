"""TVBench-layout folders, TVBench, TOMATO (real annotations), the hub path offline, and bad input."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from videos import frame_indices, write_index_video

from flowcheck.data import tomato, tvbench
from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.frames import VideoError, read_frames, read_many
from flowcheck.data.registry import load_dataset
from flowcheck.data.report import DataError
from flowcheck.data.sampling import segment_centre_indices

SHARED_TOMATO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tomato"
TOMATO_COUNTS = {
    "count": 292,
    "direction": 403,
    "rotation": 286,
    "shape&trend": 223,
    "velocity&frequency": 210,
    "visual_cues": 70,
}


def write_tvbench(root: Path, tasks: dict[str, list[dict]], frames: int = 40, fps: int = 10) -> Path:
    (root / "json").mkdir(parents=True, exist_ok=True)
    for task, entries in tasks.items():
        (root / "json" / f"{task}.json").write_text(json.dumps(entries))
        for e in entries:
            path = root / "video" / task / e["video"]
            if not path.exists():
                write_index_video(path, frames, fps)
    return root


def entry(video: str, answer: str = "left", **extra) -> dict:
    return {"video": video, "question": "Which way?", "candidates": ["left", "right"], "answer": answer, **extra}


def test_tvbench_root_loads_with_bounds_for_the_bounded_tasks(tmp_path):
    root = write_tvbench(
        tmp_path,
        {
            "action_sequence": [entry("a.mp4", "right", start=1.0, end=3.0)],
            "moving_direction": [entry("b.mp4", start=1.0, end=3.0), entry("c.mp4")],
        },
    )
    samples, report = tvbench.load(root, tasks=["action_sequence", "moving_direction"])
    assert report.loaded == 3 and not report.skipped
    seq, mov = samples[0], samples[1]
    assert (seq.start, seq.end, seq.answer_index, seq.answer_letter) == (1.0, 3.0, 1, "B")
    assert (mov.start, mov.end) == (None, None)  # moving_direction is not a bounded task
    frames = read_frames(seq.video, 8, seq.start, seq.end).frames
    assert frame_indices(frames) == segment_centre_indices(40, 10.0, 8, 1.0, 3.0)
    assert tvbench.task_id("action_sequence") == 3 and tvbench.display_name("object_count") == "Object Count"


def test_bad_entries_are_skipped_and_listed_with_the_file_and_reason(tmp_path):
    root = write_tvbench(
        tmp_path,
        {
            "t": [
                entry("ok.mp4"),
                entry("wrong.mp4", answer="up"),
                {"video": "x.mp4", "question": "q"},
                entry("ok.mp4", id="dup"),
                entry("ok.mp4", id="dup"),
            ],
            "empty": [],
        },
    )
    (root / "video" / "t" / "gone.mp4").unlink(missing_ok=True)
    data = json.loads((root / "json" / "t.json").read_text())
    data.append(entry("gone.mp4"))
    (root / "json" / "t.json").write_text(json.dumps(data))
    samples, report = load_tvbench_layout(root, dataset="mine")
    reasons = {s.sample_id: s.reason for s in report.skipped}
    assert [s.id for s in samples] == ["mine/t/00000", "mine/t/dup"]
    assert "answer 'up' is not among the candidates" in reasons["mine/t/00001"]
    assert "lacks the field 'candidates'" in reasons["mine/t/00002"]
    assert "duplicate sample id" in reasons["mine/t/dup"]
    assert "video file not found" in reasons["mine/t/00005"]
    assert "empty task" in reasons["mine/empty"]
    assert all(str(root) in s.file for s in report.skipped)


def test_missing_roots_and_tasks_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="FunAILab/TVBench"):
        tvbench.load(tmp_path / "nowhere", tasks=["object_count"])
    with pytest.raises(DataError, match="not a benchmark in the TVBench layout"):
        load_tvbench_layout(tmp_path)
    write_tvbench(tmp_path, {"a": [entry("v.mp4")]})
    with pytest.raises(DataError, match="available: a"):
        load_tvbench_layout(tmp_path, tasks=["b"])
    with pytest.raises(DataError, match="unknown dataset 'ucf'"):
        load_dataset("ucf")
    with pytest.raises(DataError, match="unknown TOMATO task"):
        tomato.load(tmp_path, tasks=["colour"])


def test_a_run_over_a_folder_with_one_corrupt_video_completes_and_reports_it(tmp_path):
    root = write_tvbench(tmp_path, {"t": [entry("a.mp4"), entry("b.mp4"), entry("c.mp4")]})
    (root / "video" / "t" / "b.mp4").write_bytes(b"corrupt" * 100)
    samples, _ = load_tvbench_layout(root)
    frames = read_many(samples, 8, progress=False)
    bad = {k: v for k, v in frames.items() if isinstance(v, VideoError)}
    assert list(bad) == [samples[1].id] and "b.mp4" in bad[samples[1].id].path
    assert sum(not isinstance(v, VideoError) for v in frames.values()) == 2


@pytest.fixture(scope="module")
def tomato_root(tmp_path_factory):
    if not SHARED_TOMATO.exists():
        pytest.skip(f"real TOMATO annotations not found at {SHARED_TOMATO}")
    root = tmp_path_factory.mktemp("tomato")
    (root / "jsons").mkdir()
    one = write_index_video(root / "one.mp4", 12)
    for task in TOMATO_COUNTS:
        src = SHARED_TOMATO / f"{task}.json"
        (root / "jsons" / src.name).write_bytes(src.read_bytes())
        for e in json.loads(src.read_text()).values():
            target = root / "videos" / e["demonstration_type"] / f"{e['key']}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(one, target)
    return root


def test_tomato_real_annotations_all_parse_with_the_right_counts(tomato_root):
    samples, report = tomato.load(tomato_root)
    assert not report.skipped and report.loaded == 1484
    counts = {task: sum(s.task == task for s in samples) for task in TOMATO_COUNTS}
    assert counts == TOMATO_COUNTS
    assert {len(s.options) for s in samples} <= set(range(3, 8)) and min(len(s.options) for s in samples) == 3
    first = samples[0]
    raw = json.loads((SHARED_TOMATO / "count.json").read_text())["0"]
    assert first.question == raw["question"] and first.answer_index == raw["answer"]
    assert first.video == tomato_root / "videos" / raw["demonstration_type"] / f"{raw['key']}.mp4"
    assert tomato.display_name("shape&trend") == "ShapeTrend"


def test_tomato_reports_missing_videos_by_name(tomato_root, tmp_path):
    (tmp_path / "jsons").mkdir()
    (tmp_path / "jsons" / "visual_cues.json").write_bytes((tomato_root / "jsons" / "visual_cues.json").read_bytes())
    samples, report = tomato.load(tmp_path, tasks=["visual_cues"])
    assert samples == [] and len(report.skipped) == 70
    assert all(s.reason == "video file not found" and s.file.endswith(".mp4") for s in report.skipped)


def test_tvbench_from_the_hub_downloads_once_and_unpacks_into_the_layout(tmp_path):
    hub = tmp_path / "hub"
    (hub / "json").mkdir(parents=True)
    (hub / "json" / "object_count.json").write_text(json.dumps([entry("v1.mp4")]))
    clip = write_index_video(tmp_path / "clip.mp4", 10)
    (hub / "video").mkdir()
    with zipfile.ZipFile(hub / "video" / "object_count.zip", "w") as zf:
        zf.write(clip, "object_count/v1.mp4")  # the hub zips hold a folder named like the task
    calls = []

    def fake_download(repo_id, filename, repo_type, revision=None):
        calls.append(filename)
        assert repo_id == tvbench.HUB_ID and repo_type == "dataset"
        return str(hub / filename)

    cache = tmp_path / "cache"
    root = tvbench.fetch(["object_count"], cache, downloader=fake_download)
    samples, report = tvbench.load(root, tasks=["object_count"])
    assert report.loaded == 1 and samples[0].video == cache / "tvbench" / "video" / "object_count" / "v1.mp4"
    tvbench.fetch(["object_count"], cache, downloader=fake_download)
    assert calls == ["json/object_count.json", "video/object_count.zip"]  # second fetch: nothing downloaded


def test_hub_failures_explain_how_to_work_offline(tmp_path):
    def offline(**_):
        raise ConnectionError("no network")

    with pytest.raises(DataError, match="give a local root"):
        tvbench.fetch(["object_count"], tmp_path, downloader=offline)
