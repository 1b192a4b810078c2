"""The prompt and layout path on the real tokenizers, processor configs and chat templates of public checkpoints.

../shared/real-processors/ holds the files of Qwen/Qwen2.5-VL-7B-Instruct and of a LLaVA-NeXT-Video-7B-32K
fine-tune (Mistral-Instruct's text-only chat template, no system role) beside tiny configs with the real
token ids and vision geometry. Tiny random weights are saved beside copies of those files. Expected
values: the text flowcheck meant to write (the spans decode back to it), the real processor's own
token counts (144 video tokens per pair of frames for Qwen2.5-VL at 336 x 336 px, temporal patch 2;
144 per frame for LLaVA-NeXT-Video at 336 px after 2 x 2 pooling: (336 / 14 / 2)^2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import flowcheck
from flowcheck.data.sample import OPTION_LETTERS, Sample
from flowcheck.models import AdapterError
from flowcheck.prompt import ANSWER_PREFIX, SYSTEM_MVBENCH_TURN

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real-processors"
QWEN, LLAVA = REAL / "qwen2_5_vl-7b-instruct", REAL / "llava_next_video-7b-32k-ft"

pytestmark = pytest.mark.skipif(not REAL.exists(), reason=f"{REAL} not found (shared/ beside the repository)")

SAMPLE = Sample(
    "real/t/0",
    "t",
    Path("v.mp4"),
    "What did the person do first?",
    ("Take off a hat.", "Put on a hat.", "Sit down.", "Stand up."),
    1,
)


def pixels(count: int = 8, side: int = 336) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, side, side, 3), dtype=np.uint8)


def frames(count: int = 8, side: int = 336, fps: float = 10.0):
    """`count` consecutive frames of a `fps` clip, with their times where flowcheck's frames carry them."""
    try:
        from flowcheck.data.video import VideoFrames  # issue 21 part 1: decoded frames carry their real times
    except ImportError:
        return pixels(count, side)
    return VideoFrames.from_array(pixels(count, side), fps)


def with_tiny_weights(source: Path, folder: Path, model_class) -> Path:
    """The real files of `source` plus random weights of its tiny config, saved together in `folder`."""
    shutil.copytree(source, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    config_class = model_class.config_class
    torch.manual_seed(0)
    model = model_class(config_class.from_pretrained(folder))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return with_tiny_weights(QWEN, tmp_path_factory.mktemp("real") / "qwen", Qwen2_5_VLForConditionalGeneration)


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory):
    from transformers import LlavaNextVideoForConditionalGeneration

    return with_tiny_weights(LLAVA, tmp_path_factory.mktemp("real") / "llava", LlavaNextVideoForConditionalGeneration)


def span_text(adapter, enc, span) -> str:
    return adapter.tokenizer.decode(enc.input_ids[span.start : span.end])


def assert_spans_decode_to_the_intended_text(adapter, enc, sample: Sample) -> None:
    """Every segment's tokens decode to its text (tokens at a boundary may carry the separating space)."""
    layout = enc.layout
    assert span_text(adapter, enc, layout.question_only).strip() == sample.question
    for i, option in enumerate(sample.options):
        assert span_text(adapter, enc, layout.options[i]).strip() == f"({OPTION_LETTERS[i]}) {option}"
    question = span_text(adapter, enc, layout.question).strip()
    assert question.startswith("Question:") and question.endswith(sample.options[-1])
    assert adapter.tokenizer.decode(enc.input_ids[-1:]).endswith("(")  # Qwen's BPE merges ":(" into one token
    assert adapter.tokenizer.decode(enc.input_ids[layout.question.end :]).strip().endswith(ANSWER_PREFIX)


def assert_letters_are_single_tokens_after_the_answer_prefix(adapter, enc, sample: Sample, prompt: str) -> None:
    """Appending a letter to the whole prompt adds exactly the option's letter id (no merge with "(")."""
    base = adapter.tokenizer(prompt).input_ids
    for i, letter in enumerate(sample.letters):
        ids = adapter.tokenizer(prompt + letter).input_ids
        assert ids[: len(base)] == base and ids[len(base) :] == [enc.option_ids[i]]
        assert adapter.tokenizer.decode([enc.option_ids[i]]) == letter


def test_qwen25_vl_layout_on_the_real_tokenizer_and_processor(qwen_folder):
    adapter = flowcheck.load(str(qwen_folder))
    assert adapter.family == "qwen2.5-vl"
    enc = adapter.encode(SAMPLE, frames())
    video_id = adapter.model.config.video_token_id
    placeholders = (enc.input_ids == video_id).nonzero().flatten().tolist()
    assert placeholders == list(range(placeholders[0], placeholders[-1] + 1))
    assert len(placeholders) == 4 * 144  # 8 frames of 336 px: 4 temporal groups of (336 / 14 / 2)^2
    assert list(enc.layout.video.positions()) == placeholders  # the model's own placeholder mask
    assert [len(f) for f in enc.layout.frames] == [144] * 4  # one temporal group per pair of frames
    real = adapter.processor(
        text=adapter.render(SAMPLE).text, videos=[list(pixels())], do_sample_frames=False, return_tensors="pt"
    )
    assert (real["input_ids"][0] == video_id).sum() == len(placeholders)  # the processor's own count
    assert_spans_decode_to_the_intended_text(adapter, enc, SAMPLE)
    assert_letters_are_single_tokens_after_the_answer_prefix(adapter, enc, SAMPLE, adapter.render(SAMPLE).text)
    notes = adapter.prompt_notes
    assert notes["template"] == f"processor chat template ({qwen_folder / 'chat_template.json'})"
    assert notes["system"] == "system turn" and notes["content"] == "multimodal parts"
    system = adapter.tokenizer.decode(enc.input_ids[: enc.layout.video.start])
    assert f"<|im_start|>system\n{SYSTEM_MVBENCH_TURN}<|im_end|>" in system


def test_a_template_only_in_tokenizer_config_is_used_and_named(qwen_folder, tmp_path):
    folder = tmp_path / "tokenizer-template"
    shutil.copytree(qwen_folder, folder)
    template = json.loads((folder / "chat_template.json").read_text())["chat_template"]
    (folder / "chat_template.json").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    processor_rendered = flowcheck.load(str(qwen_folder)).render(SAMPLE).text
    adapter = flowcheck.load(str(folder))
    assert not adapter.processor.chat_template  # transformers 5 leaves the processor without one
    assert adapter.render(SAMPLE).text == processor_rendered
    assert adapter.prompt_notes["template"] == f"tokenizer chat template ({folder / 'tokenizer_config.json'})"
    enc = adapter.encode(SAMPLE, frames())
    assert_spans_decode_to_the_intended_text(adapter, enc, SAMPLE)


def test_llava_next_video_32k_template_without_system_role_folds_the_system_text(llava_folder):
    adapter = flowcheck.load(str(llava_folder))
    enc = adapter.encode(SAMPLE, frames())
    notes = adapter.prompt_notes
    assert notes["system"] == "folded into the user turn (the template rejects a system turn)"
    assert notes["content"] == "string content with '<video>'"
    assert (
        "Only user and assistant roles are supported!" in notes["fallback_reason"]
        or "alternate" in (notes["fallback_reason"])
    )
    ids = enc.input_ids.tolist()
    assert ids.count(adapter.tokenizer.bos_token_id) == 1 and ids[0] == adapter.tokenizer.bos_token_id
    video = enc.layout.video
    assert [i for i, t in enumerate(ids) if t == adapter.model.config.video_token_id] == list(video.positions())
    assert len(enc.layout.frames) == 8 and all(len(f) == 144 for f in enc.layout.frames)  # (336 / 14 / 2)^2
    # what transformers tokenizes for a rendered template that writes its own BOS (add_special_tokens=False)
    expected = adapter.tokenizer(f"<s>[INST] {SYSTEM_MVBENCH_TURN}\n", add_special_tokens=False).input_ids
    assert ids[: video.start] == expected
    assert_spans_decode_to_the_intended_text(adapter, enc, SAMPLE)
    assert_letters_are_single_tokens_after_the_answer_prefix(adapter, enc, SAMPLE, adapter.render(SAMPLE).text)


def test_the_system_prompt_can_be_dropped(llava_folder):
    adapter = flowcheck.load(str(llava_folder), system_mode="drop")
    enc = adapter.encode(SAMPLE, frames())
    assert adapter.prompt_notes["system"] == "dropped (system prompt mode 'drop')"
    expected = adapter.tokenizer("<s>[INST] ", add_special_tokens=False).input_ids
    assert enc.input_ids[: enc.layout.video.start].tolist() == expected
    with pytest.raises(AdapterError, match="unknown system prompt mode 'none'"):
        flowcheck.load(str(llava_folder), system_mode="none")


def test_a_template_that_cannot_render_a_video_is_a_clear_error_naming_its_file(llava_folder, tmp_path):
    folder = tmp_path / "no-video"
    shutil.copytree(llava_folder, folder)
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if m['content'] is string %}{% if '<video>' in m['content'] %}"
        "{{ raise_exception('Videos are not supported') }}{% endif %}{{ m['content'] }}"
        "{% else %}{{ raise_exception('Only text content is supported') }}{% endif %}{% endfor %}"
    )
    adapter = flowcheck.load(str(folder))
    with pytest.raises(AdapterError, match=r"chat template in .*no-video/chat_template\.jinja cannot render") as err:
        adapter.encode(SAMPLE, frames())
    assert "Videos are not supported" in str(err.value)


def test_qwen25_vl_temporal_positions_follow_the_real_frame_times(qwen_folder):
    """An 8 s, 10 fps clip sampled at 8 segment centres (0.5, 1.5, ..., 7.5 s): two frames per temporal group,
    so 2 s per group; with the config's tokens_per_second 2 each group's temporal position is 4 past the last
    one's. The same positions as the model's own rope index given the real processor's inputs and the true
    metadata. (Runs once frames carry their times: issue 21 part 1, flowcheck.data.video.)"""
    from transformers.video_utils import VideoMetadata

    video_frames = pytest.importorskip("flowcheck.data.video").VideoFrames
    indices = tuple(range(5, 80, 10))
    clip = video_frames(pixels(), indices, tuple(i / 10 for i in indices), 10.0, 80, "decord")
    adapter = flowcheck.load(str(qwen_folder))
    enc = adapter.encode(SAMPLE, clip)
    positions = enc.inputs.position_ids.cpu()
    starts = [int(positions[0, 0, group.start]) for group in enc.layout.frames]
    assert starts == [enc.layout.video.start + 4 * g for g in range(4)]
    metadata = VideoMetadata(
        total_num_frames=80, fps=10.0, frames_indices=list(indices), duration=8.0, height=336, width=336
    )
    real = adapter.processor(
        text=adapter.render(SAMPLE).text,
        videos=[list(pixels())],
        video_metadata=[metadata],
        do_sample_frames=False,
        return_tensors="pt",
    )
    assert float(real["second_per_grid_ts"][0]) == 2.0
    own, _ = adapter.model.model.get_rope_index(
        real["input_ids"],
        real["mm_token_type_ids"],
        video_grid_thw=real["video_grid_thw"],
        second_per_grid_ts=real["second_per_grid_ts"],
        attention_mask=real["attention_mask"],
    )
    assert torch.equal(own, positions)
