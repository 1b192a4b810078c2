"""The registry's layer ranges count layers from 1, like everything else a user reads (paper's Table 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowcheck.claims import RegistryError, load_registry
from flowcheck.edges import paper_pathways
from flowcheck.session import registry_pathway


def test_pathway_layers_are_read_from_1_and_inclusive():
    # the paper's 7B ranges, written as Table 3 prints them (L6-15, L6-20, L16-25), equal the 0-based spec data
    spec = {"cross_frame": [6, 15], "video_to_question": [6, 20], "question_to_last": [16, 25]}
    paper = paper_pathways()["LLaVA-NeXT-7B-Video-FT"]
    assert registry_pathway(spec, 32, "m") == {
        "cross_frame": paper.cross_frame,
        "video_to_question": paper.video_to_question,
        "question_to_last": paper.question_to_last,
    }


@pytest.mark.parametrize(
    "spec",
    [
        {"cross_frame": [0, 3], "video_to_question": [1, 5], "question_to_last": [4, 7]},
        {"cross_frame": [1, 9], "video_to_question": [1, 5], "question_to_last": [4, 7]},
        {"cross_frame": [1, 3], "video_to_question": [1, 5]},
    ],
)
def test_bad_pathway_layers_are_refused(spec):
    with pytest.raises(RegistryError, match="pathway_layers"):
        registry_pathway(spec, 8, "m")


def test_the_old_0_based_pathway_key_is_refused_not_misread(tmp_path: Path):
    old = tmp_path / "old.toml"
    old.write_text(
        "[models.m]\npathway = { cross_frame = [0, 3], video_to_question = [0, 4], question_to_last = [3, 6] }\n"
    )
    with pytest.raises(RegistryError, match="add 1 to each bound"):
        load_registry([old])
