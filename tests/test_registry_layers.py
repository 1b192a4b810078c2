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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[models]\n"m" = 3\n', "must be a table of settings"),
        ('[models.m.thresholds."cross_frame_early[object_count]"]\nmin_change_pct = -1.0\n', "per claim, not per task"),
        ("[models.m.thresholds]\ncross_frame_early = 3\n", "must map threshold names to numbers"),
        ('[models.m.thresholds.pruning_parity]\nmax_loss_points = "lots"\n', "must map threshold names to numbers"),
        ('[evidence]\nmin_samples = "ten"\n', "positive integer"),
        ("[evidence]\nmin_samples = 0\n", "positive integer"),
        ("[models.m.xfail]\ncross_frame_early = true\n", "non-empty string"),
        ('[models.m.xfail]\ncross_frame_early = ""\n', "non-empty string"),
        ('[models.m]\nimage_modle = "x"\n', "unknown setting 'image_modle'"),
        ('[models.m]\npathway_layers = { cross_frame = "1-4" }\n', "pathway_layers must be"),
    ],
)
def test_registry_values_of_the_wrong_shape_are_refused_when_read(tmp_path: Path, text, message):
    registry = tmp_path / "bad.toml"
    registry.write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_registry([registry])


def test_a_registry_path_that_is_a_folder_or_not_text_is_a_clear_error(tmp_path: Path):
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry([tmp_path])
    binary = tmp_path / "x.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry([binary])


@pytest.mark.parametrize("value", [2.5, 0, -3])
def test_a_per_model_min_samples_must_be_a_positive_integer(tmp_path, value):
    """2.5 used to become 2 and 0 or -3 became 1 (at least one sample) without a word."""
    path = tmp_path / "r.toml"
    path.write_text(f'[models."m".thresholds.cross_frame_early]\nmin_samples = {str(value).lower()}\n')
    with pytest.raises(RegistryError, match="min_samples must be a positive integer"):
        load_registry([path])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('[models."m".thresholds.cross_frame_early]\nmin_change_pct = nan\n', "numbers"),
        ('[models."m".thresholds.cross_frame_early]\nmin_change_pct = inf\n', "numbers"),
        ('[models."m".thresholds.cross_frame_early]\nwithin_fraction = 5.0\n', "between 0 and 1"),
        ('[models."m"]\nimage_model = "m"\n', "the model itself"),
        ('[models."m".thresholds.answer_decided_after_middle]\nbefore_fraction = 0.3\n', "must be below"),
        ('[models."m".thresholds.answer_decided_after_middle]\nfrom_fraction = 0.875\n', "must be below"),
    ],
)
def test_thresholds_that_would_decide_every_verdict_are_refused(tmp_path, entry, message):
    """A NaN threshold fails every comparison, an infinite one passes it, a depth fraction of 5 reaches past the
    last layer, and a model paired with itself compares nothing: each was accepted."""
    path = tmp_path / "r.toml"
    path.write_text(entry)
    with pytest.raises(RegistryError, match=message):
        load_registry([path])
