"""Transformers-native families on tiny checkpoints: loading, layouts, decoder inputs, knockouts, fast engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from families import (
    decoder_hidden,
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
from flowcheck.data.video import VideoFrames
from flowcheck.edges import Condition, make_window, paper_conditions
from flowcheck.engine import condition_knockout, knockout, score

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


def test_layout_matches_the_template_and_the_placeholder_mask(family):
    key, name, adapter, sample, frames = family
    assert adapter.family == name
    enc = adapter.encode(sample, frames)
    layout, ids, tok = enc.layout, enc.input_ids, adapter.tokenizer
    video_positions = set((ids == adapter.video_token_id()).nonzero().flatten().tolist())
    assert video_positions <= set(layout.video.positions())
    if key not in (
        "qwen3_vl",
        "internvl",
        "glm4v",
        "smolvlm",
        "video_llama_3",
    ):  # one block; these interleave per-frame text between frames
        assert video_positions == set(layout.video.positions())
    assert len(layout.frames) == (4 if key.startswith(("qwen", "glm")) else 8)
    assert all(video_positions & set(f.positions()) for f in layout.frames)
    if key == "video_llama_3":  # each frame carries its "Time t s:" label, as in the authors' prompt
        assert all("Time" in tok.decode(ids[f.start : f.end]) for f in layout.frames)
    assert tok.decode(ids[layout.question_only.start : layout.question_only.end]) == sample.question.replace("?", " ?")
    assert tok.decode(ids[layout.options[0].start : layout.options[0].end]).startswith("( A )")
    assert tok.decode(ids[-1:]) == "("


def test_decoder_inputs_reproduce_the_vlm_forward(family):
    _, _, adapter, sample, frames = family
    enc = adapter.encode(sample, frames)
    inputs = adapter.processor_inputs(adapter.render(sample).text, frames, sample)
    with torch.no_grad():
        full = adapter.model(**inputs).logits[0, -1]
    via_decoder = adapter.decoder.lm_head(decoder_hidden(adapter, enc.inputs)[-1])
    assert (full - via_decoder).abs().max() <= 1e-4


def test_video_to_last_knockout_changes_only_the_last_row(family):
    _, _, adapter, sample, frames = family
    enc = adapter.encode(sample, frames)
    base = decoder_hidden(adapter, enc.inputs)
    with knockout(adapter.model, [(enc.layout.last, enc.layout.video)], range(adapter.num_layers)):
        knocked = decoder_hidden(adapter, enc.inputs)
    assert (base != knocked).any(-1).nonzero().flatten().tolist() == [enc.layout.n - 1]


def test_fast_engine_equals_plain_engine(family):
    _, _, adapter, sample, frames = family
    enc = adapter.encode(sample, frames)
    layers = adapter.num_layers
    conditions = [*paper_conditions().values(), Condition.parse("frame:1->frame:3")]
    windows = [make_window(layers, 0, 1), make_window(layers, 2, 3), make_window(layers, layers - 1, 1)]
    knockouts = [condition_knockout(c, w, enc.layout) for c in conditions for w in windows]
    watch = list(range(adapter.decoder.lm_head.weight.shape[0]))
    _, plain = score(adapter.decoder, enc.inputs, knockouts, watch, strategy="plain")
    _, fast = score(adapter.decoder, enc.inputs, knockouts, watch, strategy="fast", batch_size=4)
    for ko, a, b in zip(knockouts, plain, fast, strict=True):
        assert abs(a.probs - b.probs).max() <= 1e-5, ko.key
