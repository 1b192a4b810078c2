"""Open-ended samples: the folder layout without `candidates`, the Sample's rules, and unchanged fingerprints of
multiple-choice samples."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_loaders import write_tvbench

from flowcheck.analyses.contract import choose_sample
from flowcheck.analyses.runner import sample_fingerprint
from flowcheck.data.folder import load_tvbench_layout
from flowcheck.data.sample import Sample
from flowcheck.gating.samples import sample_identity

MC = {"video": "a.mp4", "question": "What happens first?", "candidates": ["sit", "stand"], "answer": "stand"}
OPEN = {"video": "a.mp4", "question": "What  does the man do\nfirst?", "answer": " He stands up. "}


def test_folder_mixes_multiple_choice_and_open_ended_entries(tmp_path: Path):
    root = write_tvbench(tmp_path / "bench", {"mixed": [MC, OPEN]})
    samples, report = load_tvbench_layout(root, dataset="mine")
    assert report.loaded == 2 and not report.skipped
    mc, open_ = samples
    assert not mc.open_ended and mc.options == ("sit", "stand") and mc.answer_index == 1 and mc.reference is None
    assert open_.open_ended and open_.options == () and open_.answer_index == -1
    assert open_.reference == "He stands up." and open_.answer == "He stands up."  # normalised like every text
    assert open_.question == "What does the man do first?" and open_.letters == ()
    with pytest.raises(ValueError, match="open-ended"):
        _ = open_.answer_letter


@pytest.mark.parametrize(
    "entry, field",
    [
        ({"video": "a.mp4", "question": "q?"}, "answer"),  # neither candidates nor an answer
        ({"video": "a.mp4", "question": "q?", "answer": "   "}, "answer"),  # empty after normalisation
        ({"video": "a.mp4", "question": "q?", "answer": 3}, "answer"),
        ({"video": "a.mp4", "question": "q?", "candidates": [], "answer": "x"}, "candidates"),  # candidates: MC rules
        ({"video": "a.mp4", "question": "q?", "answer": "x", "start": 5, "end": 2}, "start"),
    ],
)
def test_bad_open_ended_entries_are_skipped_with_the_field_named(tmp_path: Path, entry: dict, field: str):
    root = write_tvbench(tmp_path / "bench", {"t": [entry, OPEN]})
    samples, report = load_tvbench_layout(root, dataset="mine")
    assert [s.reference for s in samples] == ["He stands up."]
    (skipped,) = report.skipped
    assert field in skipped.reason and "entry 0" in skipped.reason


def test_sample_rules_for_open_ended_questions(tmp_path: Path):
    video = tmp_path / "v.mp4"
    with pytest.raises(ValueError, match="both options and an open-ended reference"):
        Sample("d/t/0", "t", video, "q?", ("a", "b"), 0, reference="a")
    with pytest.raises(ValueError, match="answer_index must be -1"):
        Sample("d/t/0", "t", video, "q?", (), 0, reference="a")
    with pytest.raises(ValueError, match="reference answer is empty"):
        Sample("d/t/0", "t", video, "q?", (), -1, reference=" \u200b ")
    with pytest.raises(ValueError, match="no options"):
        Sample("d/t/0", "t", video, "q?", (), -1)


def test_fingerprints_of_multiple_choice_samples_are_unchanged_and_open_ended_ones_hash_the_reference(tmp_path):
    """The result cache and gating records key samples by these fingerprints: a multiple-choice sample must hash
    exactly what it hashed before open-ended samples existed (the formula written out here), and an open-ended
    sample's must change with its reference answer."""
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not really a video")
    mc = Sample("d/t/0", "t", video, "q?", ("a", "b"), 1, start=1.0, end=2.5, dataset="d")
    expected = hashlib.sha256()
    expected.update(json.dumps(["d/t/0", "q?", ["a", "b"], 1, 1.0, 2.5]).encode())
    expected.update(b"not really a video")
    assert sample_fingerprint(mc) == expected.hexdigest()[:24]
    text = json.dumps(["d", "d/t/0", "q?", ["a", "b"], 1, 1.0, 2.5])
    digest = hashlib.sha256(b"not really a video").hexdigest()
    assert sample_identity("d", mc)[0] == hashlib.sha256(f"{text}\n{digest}".encode()).hexdigest()[:16]

    one = Sample("d/t/1", "t", video, "q?", (), -1, reference="he sits")
    two = Sample("d/t/1", "t", video, "q?", (), -1, reference="he stands")
    assert sample_fingerprint(one) != sample_fingerprint(two)
    assert sample_identity("d", one)[0] != sample_identity("d", two)[0]


def test_the_adapter_contract_picks_a_multiple_choice_sample(tmp_path: Path):
    video = tmp_path / "v.mp4"
    open_ = Sample("d/a/0", "a", video, "q?", (), -1, reference="x")
    mc = Sample("d/b/0", "b", video, "q?", ("x", "y"), 0)
    assert choose_sample([open_, mc]) is mc
    with pytest.raises(LookupError, match="every sample of the dataset is open-ended"):
        choose_sample([open_])
    with pytest.raises(LookupError, match="is open-ended"):
        choose_sample([open_, mc], sample_id="d/a/0")
