"""Transformers-native families on tiny checkpoints: loading, layouts, decoder inputs, knockouts, fast engine."""

from __future__ import annotations

import numpy as np
import pytest
from families import (
    assert_passes,
    save_glm4v,
    save_internvl,
    save_llava_onevision,
    save_qwen2_vl,
    save_smolvlm,
    save_video_llava,
    save_videollama3,
)
from tiny_checkpoint import save_tiny_checkpoint, synthetic_sample

import flowcheck
from flowcheck.analyses import contract
from flowcheck.data.video import VideoFrames
from flowcheck.edges import Condition, make_window, paper_conditions
from flowcheck.models.hf_native import _runs

FAMILIES = {
    "llava_next_video": ("llava-next-video", lambda d: save_tiny_checkpoint(d, layers=4), 1),
    "llava_onevision": ("llava-onevision", save_llava_onevision, 1),
    "video_llava": ("video-llava", save_video_llava, 1),
    "internvl": ("internvl", save_internvl, 1),
    "glm4v": ("glm4v", save_glm4v, 2),
    "smolvlm": ("smolvlm", save_smolvlm, 1),
    "qwen2_vl": ("qwen2-vl", lambda d: save_qwen2_vl(d, version="qwen2_vl"), 2),
    "qwen2_5_vl": ("qwen2.5-vl", lambda d: save_qwen2_vl(d, version="qwen2_5_vl"), 2),
    "qwen3_vl": ("qwen3-vl", lambda d: save_qwen2_vl(d, version="qwen3_vl"), 2),
    "video_llama_3": ("videollama3", save_videollama3, 2),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    name, build, scale = FAMILIES[request.param]
    adapter = flowcheck.load(str(build(tmp_path_factory.mktemp(request.param))))
    sample, frames = synthetic_sample("action_sequence")
    frames = np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)  # Qwen needs >= 56 px for 2x2 merges
    # consecutive frames of a 1 fps video: families that show times to the model refuse frames without them
    return request.param, name, adapter, sample, VideoFrames.from_array(frames, fps=1.0)


ONE_BLOCK = ("llava_next_video", "llava_onevision", "video_llava", "qwen2_vl", "qwen2_5_vl")
"""Families whose video is one block of video tokens; the others interleave per-frame text between frames."""


def test_layout_matches_the_template_and_the_placeholder_mask(family):
    key, name, adapter, sample, frames = family
    assert adapter.family == name
    enc = adapter.encode(sample, frames)
    layout, ids, tok = enc.layout, enc.input_ids, adapter.tokenizer
    assert_passes(
        contract.check_video_span(adapter, enc),
        contract.check_text_spans(adapter, enc, sample),
        contract.check_option_letters(adapter, enc, sample),
    )
    blocks = _runs(contract.visual_rows(adapter, enc))
    assert len(blocks) == (1 if key in ONE_BLOCK else len(layout.frames))
    assert len(layout.frames) == (4 if key.startswith(("qwen", "glm")) else 8)
    if key == "video_llama_3":  # each frame carries its "Time t s:" label, as in the authors' prompt
        assert all("Time" in tok.decode(ids[f.start : f.end]) for f in layout.frames)
    assert tok.decode(ids[layout.question_only.start : layout.question_only.end]) == sample.question.replace("?", " ?")
    assert tok.decode(ids[layout.options[0].start : layout.options[0].end]).startswith("( A )")
    assert tok.decode(ids[-1:]) == "("


def test_decoder_inputs_reproduce_the_vlm_forward(family):
    _, _, adapter, sample, frames = family
    enc = adapter.encode(sample, frames)
    inputs = adapter.processor_inputs(adapter.render(sample).text, frames, sample)  # built here, not recorded
    assert_passes(contract.check_decoder_inputs(adapter, enc, inputs, tolerance=1e-4))


def test_video_to_last_knockout_changes_only_the_last_row(family):
    _, _, adapter, sample, frames = family
    assert_passes(contract.check_local_knockout(adapter, adapter.encode(sample, frames), tolerance=0.0))


def test_fast_engine_equals_plain_engine(family):
    _, _, adapter, sample, frames = family
    layers = adapter.num_layers
    conditions = [*paper_conditions().values(), Condition.parse("frame:1->frame:3")]
    windows = [make_window(layers, 0, 1), make_window(layers, 2, 3), make_window(layers, layers - 1, 1)]
    check = contract.check_fast_engine(adapter, adapter.encode(sample, frames), 1e-5, conditions, windows)
    assert_passes(check)
    assert check.detail.startswith(f"{len(conditions) * len(windows)} knockouts")


def test_verify_holds_with_the_model_inputs_recorded_during_encoding(family):
    _, name, adapter, sample, frames = family
    result = contract.verify(adapter, sample, frames)
    assert [c.name for c in result.checks] == list(contract.CHECKS)
    assert_passes(*result.checks)
    assert result.ok and result.family == name and result.summary() == "contract held (6 checks)"
    assert f"[last>{adapter.tokenizer.decode(adapter.encode(sample, frames).input_ids[-1:])}<last]" in result.prompt
