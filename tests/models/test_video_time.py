"""Video time is real time, end to end: for every family whose processor or prompt takes timing, the inputs
flowcheck builds from a generated mp4 (12.5 fps, 38 frames = 3.04 s) equal what the family's own processor
produces when given the true metadata (transformers' VideoMetadata), and hand-checkable values hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from families import save_glm4v, save_qwen2_vl, save_smolvlm, save_videollama3
from tiny_checkpoint import synthetic_sample
from transformers.video_utils import VideoMetadata
from videos import write_timed_video

import flowcheck
from flowcheck.data.frames import read_frames
from flowcheck.data.sampling import segment_centre_indices
from flowcheck.data.synth import write_mp4
from flowcheck.models.base import AdapterError
from flowcheck.models.capture import capture_decoder_inputs, lm_inputs_from_capture

REAL_QWEN25 = Path(__file__).resolve().parents[3] / "shared" / "real-processors" / "qwen2_5_vl-7b-instruct"

FPS, COUNT = 12.5, 38  # 3.04 s; frame i is shown at i * 0.08 s
INDICES = [2, 7, 11, 16, 20, 25, 30, 34]  # the authors' rule by hand: int(37/16 + round(37/8 * i))
TIMES = [0.16, 0.56, 0.88, 1.28, 1.6, 2.0, 2.4, 2.72]


def save_real_qwen25(folder: Path) -> Path:
    """Qwen2.5-VL-7B-Instruct's real tokenizer, processor files and chat template with tiny random weights."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if not REAL_QWEN25.is_dir():
        pytest.skip(f"{REAL_QWEN25} (the real Qwen2.5-VL processor files) is not on this machine")
    for path in REAL_QWEN25.iterdir():
        shutil.copy(path, folder / path.name)
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(folder)).save_pretrained(folder)
    return folder


FAMILIES = {
    "qwen2_5_vl_real": save_real_qwen25,
    "qwen2_5_vl": lambda d: save_qwen2_vl(d, version="qwen2_5_vl"),
    "qwen3_vl": lambda d: save_qwen2_vl(d, version="qwen3_vl"),
    "glm4v": save_glm4v,
    "smolvlm": save_smolvlm,
    "video_llama_3": save_videollama3,
}
EXTRA = {"video_llama_3": {"use_token_compression": False}}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_timed_video(tmp_path_factory.mktemp("clip") / "clip.mp4", COUNT, fps=FPS, size=64)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    adapter = flowcheck.load(str(FAMILIES[request.param](tmp_path_factory.mktemp(request.param))))
    return request.param, adapter


def true_metadata() -> VideoMetadata:
    """What a decoder of the file reports, written down from how the file was made (not from flowcheck)."""
    return VideoMetadata(total_num_frames=COUNT, fps=FPS, frames_indices=INDICES, duration=COUNT / FPS)


def reference_inputs(adapter, text: str, frames, metadata: VideoMetadata | None, **extra) -> dict:
    """The family's own processor (the class its checkpoint ships) on already sampled frames."""
    kwargs = {"video_metadata": [metadata]} if metadata is not None else {}
    return dict(
        adapter.processor(
            text=text, videos=[list(frames)], do_sample_frames=False, return_tensors="pt", **kwargs, **extra
        )
    )


def per_grid(inputs: dict) -> list[float]:
    """Seconds per temporal group (``second_per_grid_ts``) as floats."""
    return [float(x) for x in inputs["second_per_grid_ts"]]


def positions(adapter, inputs: dict) -> torch.Tensor:
    """The decoder's position ids the model itself computes from processor inputs ([k, 1, n] for 3-D rope)."""
    return lm_inputs_from_capture(capture_decoder_inputs(adapter.model, adapter.decoder, inputs)).position_ids


def test_the_clip_is_decoded_at_its_real_times(clip):
    assert segment_centre_indices(COUNT, FPS, 8) == INDICES
    video = read_frames(clip, 8)
    assert list(video.indices) == INDICES and video.times == pytest.approx(TIMES, abs=1e-6)


def test_processor_inputs_equal_the_processor_given_the_true_metadata(family, clip):
    key, adapter = family
    sample, _ = synthetic_sample("action_sequence")
    video = read_frames(clip, 8)
    text = adapter.render(sample).text
    ours = adapter.processor_inputs(text, video, sample)
    theirs = reference_inputs(adapter, text, video.frames, true_metadata(), **EXTRA.get(key, {}))
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()  # timestamps written in the prompt
    if "second_per_grid_ts" in theirs:
        assert per_grid(ours) == pytest.approx(per_grid(theirs))
    enc = adapter.encode(sample, video)
    assert torch.equal(enc.inputs.position_ids.cpu(), positions(adapter, theirs).cpu())
    # the test can fail: without the metadata (what flowcheck used to send) the processor builds other inputs
    blind = reference_inputs(adapter, text, video.frames, None, **EXTRA.get(key, {}))
    differs = blind["input_ids"].tolist() != theirs["input_ids"].tolist()
    if "second_per_grid_ts" in theirs:
        differs |= per_grid(blind) != pytest.approx(per_grid(theirs))
    assert differs, key


def decoded(adapter, ids) -> str:
    return adapter.tokenizer.decode(ids).replace(" ", "")


@pytest.mark.parametrize("family", ["qwen3_vl", "video_llama_3", "smolvlm", "glm4v"], indirect=True)
def test_the_labels_shown_are_the_real_times(family, clip):
    """Hand-written labels of frames at 0.16, 0.56, ..., 2.72 s, in each family's own format."""
    key, adapter = family
    sample, _ = synthetic_sample("action_sequence")
    inputs = adapter.processor_inputs(adapter.render(sample).text, read_frames(clip, 8), sample)
    text = decoded(adapter, inputs["input_ids"][0])
    if key == "qwen3_vl":  # one label per temporal group of 2 frames: the mean of its frames' times, 1 decimal
        assert [f"<{t}seconds>" in text for t in ("0.4", "1.1", "1.8", "2.6")] == [True] * 4
    elif key == "video_llama_3":  # "Time t s:" with one decimal per frame
        assert [f"Time{t}s:" in text for t in ("0.2", "0.6", "0.9", "1.3", "1.6", "2.0", "2.4", "2.7")] == [True] * 8
    elif key == "smolvlm":  # "Frame from mm:ss" per frame; the intro gives the duration, 3 s
        assert text.count("Framefrom00:00") == 3 and text.count("Framefrom00:01") == 2
        assert text.count("Framefrom00:02") == 3 and "0:00:03" in text
    else:  # GLM-4.1V: whole seconds of every other frame (one per temporal group) after each image block
        tail = [part.split("<|begin_of_image|>")[0] for part in text.split("<|end_of_image|>")[1:]]
        assert [t[:1] for t in tail] == ["0", "0", "1", "2"]


@pytest.mark.parametrize("family", ["qwen2_5_vl_real", "qwen2_5_vl"], indirect=True)
@pytest.mark.parametrize(("count", "fps", "per_group"), [(COUNT, FPS, 0.76), (80, 10.0, 2.0)])
def test_qwen25_second_per_grid_and_temporal_positions_follow_the_real_spacing(family, tmp_path, count, fps, per_group):
    """2 frames per group, 8 frames over count / fps s: per_group = 2 * (count / fps) / 8 s (3.04 s -> 0.76;
    the issue's 8 s, 10 fps clip -> 2.0); group k's temporal position = start + int(k * tokens_per_second *
    per_group)."""
    _, adapter = family
    path = tmp_path / "v.mp4"
    if count <= 42:
        write_timed_video(path, count, fps=fps, size=64)
    else:  # more frames than index_frames has grey levels; the spacing, not the content, matters here
        write_mp4(path, np.zeros((count, 64, 64, 3), np.uint8), fps=int(fps))
    sample, _ = synthetic_sample("action_sequence")
    video = read_frames(path, 8)
    ours = adapter.processor_inputs(adapter.render(sample).text, video, sample)
    assert per_grid(ours) == pytest.approx([per_group])
    enc = adapter.encode(sample, video)
    tps = adapter.model.config.vision_config.tokens_per_second
    temporal = enc.inputs.position_ids[-3, 0, enc.layout.video.start : enc.layout.video.end]
    groups = [int(temporal[f.start - enc.layout.video.start]) for f in enc.layout.frames]
    start = groups[0]
    assert groups == [start + int(k * tps * per_group) for k in range(4)]


@pytest.mark.parametrize("family", ["qwen2_5_vl"], indirect=True)
def test_a_qwen25_checkpoint_shipping_qwen2vl_processor_still_gets_the_real_spacing(family, clip):
    _, adapter = family
    from transformers import Qwen2VLProcessor

    sample, _ = synthetic_sample("action_sequence")
    video = read_frames(clip, 8)
    text = adapter.render(sample).text
    expected = per_grid(adapter.processor_inputs(text, video, sample))
    real = adapter.processor
    adapter.processor = Qwen2VLProcessor(
        image_processor=real.image_processor,
        tokenizer=real.tokenizer,
        video_processor=real.video_processor,
        chat_template=real.chat_template,
    )
    try:
        got = per_grid(adapter.processor_inputs(text, video, sample))
    finally:
        adapter.processor = real
    assert got == pytest.approx(expected) and got == pytest.approx([0.76])


def test_frames_without_times_are_refused_not_labelled_0_1_2(family):
    _, adapter = family
    sample, frames = synthetic_sample("action_sequence")
    with pytest.raises(AdapterError, match="carry none"):
        adapter.encode(sample, frames)
