"""`flowcheck verify` end to end on tiny checkpoints, and deliberately broken adapters failing the right check."""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from families import save_qwen2_vl
from test_pllava import checkpoint as pllava_checkpoint  # noqa: F401 - test_pllava's tiny PLLaVA-layout checkpoint
from tiny_checkpoint import synthetic_sample

import flowcheck
from flowcheck.analyses import contract
from flowcheck.cache import ResultCache
from flowcheck.cli import main
from flowcheck.data.video import VideoFrames
from flowcheck.layout import Span


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A one-sample-per-task synthetic benchmark folder (TVBench layout, real mp4s)."""
    from flowcheck.data.synth import write_benchmark

    root = tmp_path_factory.mktemp("bench")
    write_benchmark(root, seed=3, per_task=1, tasks=["action_sequence"], progress=False)
    return root


@pytest.fixture(scope="module")
def bundled():
    """The bundled video-finetuned tiny checkpoint with one synthetic sample."""
    sample, frames = synthetic_sample("action_sequence")
    return flowcheck.load("tiny-video-ft"), sample, frames


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """A tiny Qwen2.5-VL (3D rotary positions) with one sample upscaled to its 2x2 merge size."""
    adapter = flowcheck.load(str(save_qwen2_vl(tmp_path_factory.mktemp("qwen25"), version="qwen2_5_vl")))
    sample, frames = synthetic_sample("action_sequence")
    # Qwen needs >= 56 px for 2x2 merges; it shows frame times, so the frames carry them (1 fps)
    return adapter, sample, VideoFrames.from_array(np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2), fps=1.0)


def test_verify_command_passes_on_the_bundled_checkpoint_and_reads_the_cache_second(
    bench, tmp_path, capsys, monkeypatch
):
    argv = ["verify", "tiny-video-ft", "--flow-data", f"folder={bench}", "--flow-cache", str(tmp_path / "cache")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in contract.CHECKS:
        assert f"PASS  {name}" in out
    assert out.rstrip().endswith("contract held (6 checks)")
    assert "[video>[frame 0><4 video tokens><frame 0]" in out and "[last>(<last]" in out
    stored = list((tmp_path / "cache" / contract.CACHE_KIND).glob("*/*.json"))
    assert len(stored) == 1

    def no_weights(*_args, **_kwargs):
        raise AssertionError("the cached verification loaded the weights")

    monkeypatch.setattr("flowcheck.models.handle.load", no_weights)
    assert main([*argv, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] is True and again["family"] == "llava-next-video"
    assert [c["verdict"] for c in again["checks"]] == ["pass"] * len(contract.CHECKS)


def test_verify_command_on_a_built_qwen25_checkpoint(qwen, bench, tmp_path, capsys):
    adapter = qwen[0]
    argv = ["verify", adapter.name, "--flow-data", f"folder={bench}", "--no-cache", "--json"]
    assert main(argv) == 0
    result = contract.Verification.from_json(json.loads(capsys.readouterr().out))
    assert result.ok and result.family == "qwen2.5-vl" and not result.cached
    assert "Qwen2_5_VLForConditionalGeneration forward" in result.check("decoder_inputs").detail


def test_verify_command_exits_1_with_a_verdict_line_when_a_check_fails(bench, capsys, monkeypatch):
    from flowcheck.models.llava_next_video import LlavaNextVideoAdapter

    monkeypatch.setattr(LlavaNextVideoAdapter, "answer_prefix", "Best option:")  # letters for another prefix
    assert main(["verify", "tiny-video-ft", "--flow-data", f"folder={bench}", "--no-cache"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  option_letters" in out and "PASS  video_span" in out
    assert out.rstrip().endswith("contract FAILED: option_letters")


def test_verify_command_exits_2_on_unknown_sample(bench, capsys):
    assert main(["verify", "tiny-video-ft", "--flow-data", f"folder={bench}", "--sample", "nope", "--no-cache"]) == 2
    assert "no sample 'nope'" in capsys.readouterr().err


def shifted(enc, by: int = 1):
    """The same encoding with every span but `system`/`post` moved `by` positions (a layout off by one)."""
    layout = enc.layout

    def move(span: Span) -> Span:
        return Span(span.start + by, span.end + by)

    moved = dataclasses.replace(
        layout,
        video=move(layout.video),
        frames=tuple(move(f) for f in layout.frames),
        question=move(layout.question),
        question_only=move(layout.question_only),
        options=tuple(move(o) for o in layout.options),
        system=type(layout.system)(0, layout.video.start + by),
        post=type(layout.post)(layout.question.end + by, layout.n - 1),
    )
    return dataclasses.replace(enc, layout=moved)


def test_a_layout_shifted_by_one_fails_video_span_and_text_spans_only(bundled, monkeypatch, capsys):
    adapter, sample, frames = bundled
    encode = type(adapter).encode
    monkeypatch.setattr(adapter, "encode", lambda s, f: shifted(encode(adapter, s, f)))
    result = contract.verify(adapter, sample, frames)
    assert result.failed == ["video_span", "text_spans"]
    assert "[48,80)" in result.check("video_span").detail and "[49,81)" in result.check("video_span").detail
    assert result.summary() == "contract FAILED: video_span, text_spans"


def test_decoder_inputs_without_the_3d_rotary_positions_fail_decoder_inputs_only(qwen, monkeypatch):
    adapter, sample, frames = qwen
    encode = type(adapter).encode

    def text_positions(s, f):
        enc = encode(adapter, s, f)
        positions = enc.inputs.position_ids  # [3, 1, n] (t, h, w) -> 0..n-1 in every row, as a text LLM's
        plain = torch.arange(enc.layout.n, device=positions.device).expand_as(positions).clone()
        inputs = dataclasses.replace(enc.inputs, position_ids=plain)
        return dataclasses.replace(enc, inputs=inputs)

    monkeypatch.setattr(adapter, "encode", text_positions)
    result = contract.verify(adapter, sample, frames)
    assert result.failed == ["decoder_inputs"]
    assert "Qwen2_5_VLForConditionalGeneration forward" in result.check("decoder_inputs").detail


def test_option_ids_for_another_answer_prefix_fail_option_letters_only(bundled, monkeypatch):
    adapter, sample, frames = bundled
    monkeypatch.setattr(adapter, "answer_prefix", "Best option:")  # the prompt still ends with "Best option:("
    monkeypatch.delattr(adapter, "_letters", raising=False)
    result = contract.verify(adapter, sample, frames)
    assert result.failed == ["option_letters"]
    assert "not the answer prefix 'Best option:'" in result.check("option_letters").detail


@contextmanager
def no_knockout(*_args, **_kwargs):
    yield


def test_an_unapplied_knockout_fails_local_knockout(bundled, monkeypatch):
    adapter, sample, frames = bundled
    monkeypatch.setattr(contract, "knockout", no_knockout)
    check = contract.check_local_knockout(adapter, adapter.encode(sample, frames), 0.0)
    assert check.failed and "the mask was not applied" in check.detail


def test_a_knockout_reaching_earlier_rows_fails_local_knockout(bundled, monkeypatch):
    adapter, sample, frames = bundled
    real = contract.knockout

    def too_wide(model, blocked, layers):  # video -> every later row instead of video -> last
        last, video = blocked[0]
        return real(model, [(Span(video.end, last.end), video)], layers)

    monkeypatch.setattr(contract, "knockout", too_wide)
    enc = adapter.encode(sample, frames)
    check = contract.check_local_knockout(adapter, enc, 0.0)
    assert check.failed and f"rows [{enc.layout.video.end}," in check.detail


def test_qwen3_deepstack_not_carried_into_the_suffix_fails_fast_engine(tmp_path, monkeypatch):
    adapter = flowcheck.load(str(save_qwen2_vl(tmp_path / "q3", version="qwen3_vl")))
    sample, frames = synthetic_sample("action_sequence")
    frames = VideoFrames.from_array(np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2), fps=1.0)
    enc = adapter.encode(sample, frames)

    def without_deepstack(extra, start, first_layer, rows):  # the pitfall of DESIGN.md 5: extras not carried over
        return {k: v for k, v in extra.items() if k not in ("visual_pos_masks", "deepstack_visual_embeds")}

    broken = dataclasses.replace(enc, inputs=dataclasses.replace(enc.inputs, suffix_extra=without_deepstack))
    assert contract.check_fast_engine(adapter, enc, 1e-5).verdict == "pass"
    check = contract.check_fast_engine(adapter, broken, 1e-5)
    assert check.failed, check.detail


def test_verification_round_trips_through_json_and_the_cache_key_follows_the_sample(bundled, tmp_path):
    adapter, sample, frames = bundled
    cache = ResultCache(tmp_path)
    first = contract.verify(adapter, sample, frames, cache=cache)
    assert not first.cached and contract.Verification.from_json(json.loads(json.dumps(first.to_json()))) == first
    assert contract.verify(adapter, sample, frames, cache=cache) == dataclasses.replace(first, cached=True)
    other = frames.copy()
    other[0, 0, 0, 0] ^= 1
    assert contract.verification_key(adapter, sample, other) != contract.verification_key(adapter, sample, frames)


def test_tolerances_come_from_the_data_file_per_dtype():
    assert contract.tolerances("float32") == {"logits": 1e-4, "hidden": 1e-4, "probs": 1e-5}
    assert contract.tolerances("torch.bfloat16")["logits"] == 5e-2
    with pytest.raises(ValueError, match="no contract tolerance"):
        contract.tolerances("int8")


def test_verify_holds_on_a_spliced_pllava_checkpoint_against_the_llama_forward(pllava_checkpoint):  # noqa: F811
    adapter = flowcheck.load(str(pllava_checkpoint[0]))  # the adapter splices the video itself
    sample, frames = synthetic_sample("moving_direction")
    result = contract.verify(adapter, sample, frames)
    assert result.ok, result.lines()
    assert "LlamaForCausalLM forward on the spliced embeddings" in result.check("decoder_inputs").detail
