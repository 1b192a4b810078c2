"""Which pathways C5 prunes to (registry first, then discovered; paper-scaled or a route spec when asked), and the
`flowcheck pathways` text."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowcheck.analyses.pruning import PruningSummary
from flowcheck.claims import RegistryError, load_registry
from flowcheck.commands.pathways import describe, render
from flowcheck.edges import PathwaySpec, RouteSpec
from flowcheck.options import resolve
from flowcheck.session import FlowSession

REGISTERED = (
    '[models."tiny-video-ft"]\n'
    "pathway_layers = { cross_frame = [2, 3], video_to_question = [2, 5], question_to_last = [5, 8] }\n"
)


def session(tmp_path: Path, registry_text: str = "", **cli) -> FlowSession:
    extra = []
    if registry_text:
        extra_file = tmp_path / "registry.toml"
        extra_file.write_text(registry_text)
        extra = [extra_file]
    options = resolve({"models": ["tiny-video-ft"], "cache_dir": tmp_path / "cache", **cli}, {}, {})
    return FlowSession(options, load_registry(extra))


def test_default_is_the_discovered_pathways(tmp_path):
    settings = session(tmp_path).pruning_settings("tiny-video-ft", 8)
    assert settings["mode"] == "discovered" and "pathway" not in settings


def test_paper_scaled_only_when_asked(tmp_path):
    settings = session(tmp_path, pathway="paper-scaled").pruning_settings("tiny-video-ft", 8)
    assert settings["mode"] == "paper-scaled" and "pathway" not in settings


def test_a_registered_spec_comes_first(tmp_path):
    text = REGISTERED
    for choice in ("discovered", "paper-scaled"):
        settings = session(tmp_path, text, pathway=choice).pruning_settings("tiny-video-ft", 8)
        assert settings["pathway_source"] == "registry"
        assert settings["pathway"] == PathwaySpec(8, (1, 2), (1, 4), (4, 7), name="tiny-video-ft (registry)")


def test_a_route_spec_on_the_command_line_replaces_the_registry(tmp_path):
    text = REGISTERED
    settings = session(tmp_path, text, pathway="video->question@3-6, question->last@5-8").pruning_settings(
        "tiny-video-ft", 8
    )
    assert settings["pathway_source"] == "--flow-pathway"
    assert settings["pathway"].routes == RouteSpec.parse("video->question@3-6, question->last@5-8", 8).routes
    with pytest.raises(RegistryError, match=r"--flow-pathway: .*video->answer"):
        session(tmp_path, pathway="video->answer@1-2").pruning_settings("tiny-video-ft", 8)


def test_pathways_text_shows_ranges_the_spec_and_both_halves():
    info = {
        "spec": "cross_frame@none, video->question@4-8",
        "source": "discovered",
        "discovered": {
            "routes": {
                "cross_frame": {"layers": None, "minimum_pct": -0.4, "at_layer": 6, "n": 12, "reason": "flat"},
                "video->question": {"layers": [4, 8], "minimum_pct": -15.5, "at_layer": 7, "n": 12, "reason": ""},
            }
        },
        "discovery_samples": ["a"] * 12,
        "random_seeds": [0, 1, 2, 3, 4],
    }
    summary = PruningSummary(12, 100.0, 91.7, 86.7, 100.0, 89.3, 89.3, 73.3, 96.7, [80.0] * 5, half="validation")
    summary.discovery_half = {
        "n": 12,
        "full_accuracy": 100.0,
        "effective_accuracy": 100.0,
        "random_accuracy": 83.3,
        "kept_fraction": 0.893,
    }
    text = render(describe("m", "synthetic", 8, info, summary, paper_model="LLaVA-NeXT-7B-Video-FT"))
    assert "video->question  4-8" in text and "6-20" in text  # discovered beside the paper's (layers from 1)
    assert "Spec used (discovered): cross_frame@none, video->question@4-8" in text
    assert "random 86.7% [95% CI 73.3, 96.7] over 5 seeds" in text
    assert "Discovery half (12 samples, in-sample)" in text
