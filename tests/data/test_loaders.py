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
    assert "entry 1: field 'answer': 'up' is not among the candidates" in reasons["mine/t/00001"]
    assert (
        "entry 2: field 'answer': Field required (an entry without 'candidates' is an open-ended question"
        in (reasons["mine/t/00002"])
    )
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


# -- entry schemas: bad entries are skipped and listed (file, entry, field), never a crash -------------------


def good(**changes) -> dict:
    return {**entry("ok.mp4"), **changes}


def without(key: str) -> dict:
    return {k: v for k, v in good().items() if k != key}


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (without("question"), "field 'question': Field required"),
        (good(answer=True), "field 'answer': Input should be a valid string (got True)"),
        (good(candidates="left, right"), "field 'candidates': Input should be a valid list"),
        (good(candidates=["left", 2]), "field 'candidates.1': Input should be a valid string (got 2)"),
        (good(candidates=["left"]), "field 'candidates': List should have at least 2 items"),
        (good(question="  \n "), "field 'question': Value error, empty after whitespace normalisation"),
        (good(video=7), "field 'video': Input should be a valid string"),
        (good(start=True), "field 'start': Value error, a boolean is not a number here"),
        (good(answer="LEFT"), "field 'answer': 'LEFT' matches candidate 'left' only when case is ignored"),
        (good(candidates=["left", " left "]), "options 0 and 1 are identical after normalisation"),
        ("left", "the entry is a string, not an object"),
        (None, "the entry is null, not an object"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("field") else None,
)
def test_tvbench_entry_schema_faults_are_skipped_naming_file_entry_and_field(tmp_path, bad, expected):
    root = write_tvbench(tmp_path, {"t": [entry("ok.mp4")]})
    (root / "json" / "t.json").write_text(json.dumps([entry("ok.mp4"), bad]))
    samples, report = load_tvbench_layout(root, dataset="mine")
    assert [s.id for s in samples] == ["mine/t/00000"] and report.loaded == 1
    [skipped] = report.skipped
    assert skipped.sample_id == "mine/t/00001" and skipped.file == str(root / "json" / "t.json")
    assert skipped.reason.startswith("entry 1: ") and expected in skipped.reason


def test_an_entry_repeating_a_field_is_skipped(tmp_path):
    root = write_tvbench(tmp_path, {"t": [entry("ok.mp4")]})
    text = '[{"video": "ok.mp4", "question": "q", "candidates": ["a", "b"], "answer": "a", "answer": "b"}]'
    (root / "json" / "t.json").write_text(text)  # json.loads would silently keep the last answer
    samples, report = load_tvbench_layout(root)
    assert samples == [] and "repeats the field(s) ['answer']" in report.skipped[0].reason


def test_a_file_with_the_wrong_top_level_type_is_listed_and_the_others_load(tmp_path, tomato_root):
    root = write_tvbench(tmp_path / "tv", {"a": [entry("v.mp4")], "b": [entry("v.mp4")]})
    (root / "json" / "b.json").write_text(json.dumps({"0": entry("v.mp4")}))
    samples, report = load_tvbench_layout(root, dataset="mine")
    assert [s.id for s in samples] == ["mine/a/00000"]
    assert [(s.sample_id, s.reason) for s in report.skipped] == [
        ("mine/b", "the file holds an object; a TVBench-layout file is a list")
    ]
    tom = tmp_path / "tomato"
    (tom / "jsons").mkdir(parents=True)
    (tom / "jsons" / "count.json").write_text(json.dumps([{"question": "q"}]))
    samples, report = tomato.load(tom, tasks=["count"])
    assert samples == [] and report.skipped[0].reason.endswith("a TOMATO file is an object keyed by question id")


def test_a_file_that_does_not_parse_is_a_clear_data_error(tmp_path):
    root = write_tvbench(tmp_path / "tv", {"a": [entry("v.mp4")]})
    (root / "json" / "a.json").write_text('[{"video": "v.mp4",')
    with pytest.raises(DataError, match=r"a\.json is not valid JSON"):
        load_tvbench_layout(root)
    (tmp_path / "tomato" / "jsons").mkdir(parents=True)
    (tmp_path / "tomato" / "jsons" / "count.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match=r"count\.json is not valid JSON"):
        tomato.load(tmp_path / "tomato", tasks=["count"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"answer": True}, "field 'answer': Input should be a valid integer (got True)"),
        ({"answer": "1"}, "field 'answer': Input should be a valid integer"),
        ({"answer": 9}, "field 'answer': 9 is not the index of one of"),
        ({"options": "a b c"}, "field 'options': Input should be a valid list"),
        ({"options": ["a", ["b"], "c"]}, "field 'options.1': Input should be a valid string"),
        ({"question": None}, "field 'question': Input should be a valid string"),
        ({"demonstration_type": None}, "field 'demonstration_type': Input should be a valid string"),
    ],
)
def test_tomato_entry_schema_faults_are_skipped_naming_file_entry_and_field(tomato_root, tmp_path, change, expected):
    raw = json.loads((tomato_root / "jsons" / "count.json").read_text())
    first, second = raw["0"], raw["1"]
    (tmp_path / "jsons").mkdir()
    (tmp_path / "jsons" / "count.json").write_text(json.dumps({"0": first, "1": {**second, **change}}))
    for e in (first, second):
        target = tmp_path / "videos" / e["demonstration_type"] / f"{e['key']}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((tomato_root / "videos" / e["demonstration_type"] / f"{e['key']}.mp4").read_bytes())
    samples, report = tomato.load(tmp_path, tasks=["count"])
    assert [s.id for s in samples] == ["tomato/count/0"]
    [skipped] = report.skipped
    assert skipped.sample_id == "tomato/count/1" and skipped.file.endswith("count.json")
    assert skipped.reason.startswith("entry '1': ") and expected in skipped.reason


def test_tomato_duplicate_question_ids_are_listed(tomato_root, tmp_path):
    (tmp_path / "jsons").mkdir()
    text = (tomato_root / "jsons" / "visual_cues.json").read_text()
    entries = json.loads(text)
    body = ", ".join(f'"{k}": {json.dumps(v)}' for k, v in entries.items())
    (tmp_path / "jsons" / "visual_cues.json").write_text("{" + body + ', "3": ' + json.dumps(entries["5"]) + "}")
    _, report = tomato.load(tmp_path, tasks=["visual_cues"])
    duplicates = [s for s in report.skipped if "duplicate question id" in s.reason]
    assert [s.sample_id for s in duplicates] == ["tomato/visual_cues/3"]


def test_junk_entries_never_raise_anything_but_data_error(tmp_path):
    """Whatever a JSON entry holds, loading lists it (collection must never die with KeyError/AttributeError)."""
    junk = [0, 1.5, True, [], {}, [1, 2], {"id": {"x": 1}}, {"video": None, "candidates": None, "answer": None}]
    junk += [{**entry("v.mp4"), "id": v} for v in (None, True, [1], 3.5)]
    junk += [{**entry("v.mp4"), k: v} for k in ("question", "candidates", "answer", "start") for v in ({}, [], -1)]
    root = write_tvbench(tmp_path / "tv", {"t": [entry("v.mp4")]})
    (root / "json" / "t.json").write_text(json.dumps(junk))
    samples, report = load_tvbench_layout(root)
    assert report.loaded == len(samples) and len(samples) + len(report.skipped) == len(junk)
    tom = tmp_path / "tomato"
    (tom / "jsons").mkdir(parents=True)
    (tom / "jsons" / "count.json").write_text(json.dumps({str(i): v for i, v in enumerate(junk)}))
    samples, report = tomato.load(tom, tasks=["count"])
    assert samples == [] and len(report.skipped) == len(junk)


# -- text normalisation: no option differs from the others by invisible characters ---------------------------


def test_option_and_question_text_is_normalised_so_no_option_stands_out(tmp_path):
    """The leak of a real-world annotation: ``(B)  Take off a hat. `` had a double and a trailing space on the
    correct option only. After loading, every option line of the prompt is ``(X) text`` with single spaces."""
    from flowcheck.prompt import mc_text

    candidates = ["Put on a hat.", " Take  off\u00a0a hat. ", "Cafe\u0301 scene."]
    question = "What  happens\n first? "
    bad = {"video": "v.mp4", "question": question, "candidates": candidates, "answer": "Take off a hat."}
    root = write_tvbench(tmp_path, {"t": [bad]})
    [sample], report = load_tvbench_layout(root)
    assert not report.skipped
    assert sample.question == "What happens first?"
    assert sample.options == ("Put on a hat.", "Take off a hat.", "Caf\u00e9 scene.") and sample.answer_index == 1
    lines = mc_text(sample.question, sample.options).text.split("\n")
    assert lines[2:5] == ["(A) Put on a hat.", "(B) Take off a hat.", "(C) Caf\u00e9 scene. "]  # + the post text


def test_a_sample_built_directly_is_normalised_too():
    from flowcheck.data.sample import Sample
    from flowcheck.prompt import mc_text

    sample = Sample("x/0", "t", Path("v.mp4"), "Which?\t", ("Put on a hat.", "(B)  Take off a hat. "[4:]), 1)
    assert sample.options == ("Put on a hat.", "Take off a hat.")
    assert "(B) Take off a hat. \nOnly" in mc_text(sample.question, sample.options).text
    with pytest.raises(ValueError, match="identical after normalisation"):
        Sample("x/1", "t", Path("v.mp4"), "Which?", ("a hat", "a  hat"), 0)
