"""VideoLLaMA3 in its original remote-code format (the paper's DAMO-NLP-SG/VideoLLaMA3-7B): a tiny checkpoint
under the remote code's names (Qwen2ForCausalLM + model.vision_encoder + model.mm_projector, config
model_type videollama3_qwen2) loads through flowcheck.load and matches a direct reimplementation of the
remote forward (patches in merge order -> NaViT with 2-D rope and per-frame attention -> bilinear 2x2
downsampling -> MLP projector -> one <image> token per visual token in the authors' prompt)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from families import assert_local_knockout_and_fast_engine, spliced_last_logits, word_tokenizer
from PIL import Image
from safetensors.torch import save_file
from tiny_checkpoint import synthetic_sample
from transformers import Qwen2Config, Qwen2ForCausalLM

import flowcheck
from flowcheck.data.video import VideoFrames
from flowcheck.models.videollama3_remote import frame_size

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
INSTRUCTION = "Answer with the option's letter from the given choices directly and only give the best option."
WORDS = ["user", "assistant", "Time", "s", *INSTRUCTION.replace("'", " ").rstrip(".").split()]
VIT = dict(hidden=32, heads=2, intermediate=64, layers=2, patch=14)
SCALE = 2  # synthetic frames are 32 px; 64 px gives 2 x 2 merged tokens per frame


def vision_weights() -> dict[str, torch.Tensor]:
    """Random weights of the remote Videollama3VisionEncoderModel and projector, under the remote names."""
    c, m, p = VIT["hidden"], VIT["intermediate"], VIT["patch"]

    def r(*shape, scale=0.2):
        return torch.randn(*shape) * scale

    enc = "model.vision_encoder."
    w = {
        enc + "embeddings.patch_embedding.weight": r(c, 3, p, p, scale=0.05),
        enc + "embeddings.patch_embedding.bias": r(c),
        enc + "post_layernorm.weight": 1 + r(c),
        enc + "post_layernorm.bias": r(c),
    }
    for i in range(VIT["layers"]):
        layer = f"{enc}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w |= {f"{layer}self_attn.{proj}.weight": r(c, c), f"{layer}self_attn.{proj}.bias": r(c)}
        for norm in ("layer_norm1", "layer_norm2"):
            w |= {f"{layer}{norm}.weight": 1 + r(c), f"{layer}{norm}.bias": r(c)}
        w |= {
            layer + "mlp.fc1.weight": r(m, c),
            layer + "mlp.fc1.bias": r(m),
            layer + "mlp.fc2.weight": r(c, m),
            layer + "mlp.fc2.bias": r(c),
        }
    w |= {
        "model.mm_projector.readout.0.weight": r(32, c),
        "model.mm_projector.readout.0.bias": r(32),
        "model.mm_projector.readout.2.weight": r(32, 32),
        "model.mm_projector.readout.2.bias": r(32),
    }
    return w


def remote_config(vocab: int, image_token: int) -> dict:
    """A config.json as the remote Videollama3Qwen2Config writes it."""
    return {
        "model_type": "videollama3_qwen2",
        "architectures": ["Videollama3Qwen2ForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_videollama3.Videollama3Qwen2Config",
            "AutoModelForCausalLM": "modeling_videollama3.Videollama3Qwen2ForCausalLM",
        },
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vision_encoder": None,
        "vision_encoder_config": {
            "model_type": "videollama3_vision_encoder",
            "hidden_size": VIT["hidden"],
            "intermediate_size": VIT["intermediate"],
            "num_hidden_layers": VIT["layers"],
            "num_attention_heads": VIT["heads"],
            "num_channels": 3,
            "patch_size": VIT["patch"],
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "attention_dropout": 0.0,
        },
        "mm_projector_type": "mlp2x_gelu",
        "use_token_compression": True,
        "image_token_index": image_token,
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videollama3-remote")
    tokenizer = word_tokenizer(SPECIALS, WORDS, "{{ messages }}", pad_token="<|endoftext|>", eos_token="<|im_end|>")
    config = remote_config(len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    llm = Qwen2ForCausalLM(Qwen2Config(**{k: v for k, v in config.items() if not k.startswith(("vision", "mm_"))}))
    vision = vision_weights()
    state = {**vision, **llm.state_dict()}  # the remote class is Qwen2ForCausalLM: model.layers.*, lm_head.*
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    preprocessor = {
        "image_processor_type": "Videollama3ImageProcessor",
        "auto_map": {"AutoImageProcessor": "image_processing_videollama3.Videollama3ImageProcessor"},
        "do_resize": True,
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "min_tokens": 1,
        "max_tokens": 16384,
        "patch_size": VIT["patch"],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    processor = {"processor_class": "Videollama3Qwen2Processor", "image_merge_size": 1, "video_merge_size": 2}
    (folder / "processor_config.json").write_text(json.dumps(processor))
    tokenizer.save_pretrained(folder)
    sample, frames = synthetic_sample("action_sequence")
    frames = np.repeat(np.repeat(frames, SCALE, axis=1), SCALE, axis=2)
    return folder, vision, llm, tokenizer, sample, frames


def at_1fps(frames: np.ndarray) -> VideoFrames:
    """The synthetic frames as consecutive frames of a 1 fps video: "Time 0.0s", "Time 1.0s", ... below."""
    return VideoFrames.from_array(frames, fps=1.0)


def authors_prompt_text(sample, tokens_per_frame: int, times: list[float]) -> str:
    """official-protocol.md 6.2, written out independently of flowcheck."""
    video = ",".join(f"Time {t:.1f}s:" + "<image>" * tokens_per_frame for t in times)
    options = "".join(f"({'ABCDEFG'[i]}) {o}\n" for i, o in enumerate(sample.options))
    question = f"Question: {sample.question}\nOptions:\n{options}{INSTRUCTION}"
    return f"<|im_start|>user\n{video}\n{question}<|im_end|>\n<|im_start|>assistant\n"


def remote_pixels(frames: np.ndarray, size: tuple[int, int], merge: int = 2) -> torch.Tensor:
    """The remote image processor: bicubic resize, rescale, normalise, patches in merge-block order."""
    p = VIT["patch"]
    h, w = size
    x = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])
    x = (x.astype(np.float32) / 255 - 0.5) / 0.5
    x = x.transpose(0, 3, 1, 2).reshape(len(frames), 3, h // p // merge, merge, p, w // p // merge, merge, p)
    x = x.transpose(0, 2, 5, 3, 6, 1, 4, 7)  # t, gh/m, gw/m, m, m, c, p, p
    return torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 3 * p * p)))


def rope(q: torch.Tensor, hw: torch.Tensor) -> torch.Tensor:
    """The remote encoder's 2-D rope: head_dim/4 frequencies for rows, head_dim/4 for columns, theta 1e4."""
    d = q.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, d // 2, 2, dtype=torch.float) / (d // 2)))
    freqs = (hw[..., None].float() * inv).flatten(1)  # [N, d/2]: rows then columns
    cos, sin = freqs.cos().repeat(1, 2)[:, None], freqs.sin().repeat(1, 2)[:, None]
    rotated = torch.cat([-q[..., d // 2 :], q[..., : d // 2]], dim=-1)
    return q * cos + rotated * sin


def remote_video_features(
    w: dict[str, torch.Tensor], pixels: torch.Tensor, t: int, gh: int, gw: int, eager: bool = False
) -> torch.Tensor:
    """Videollama3VisionEncoderModel + mm_projector: the per-frame attention of its flash path, or (`eager`)
    its eager path, which adds the boolean frame mask to the scores (+1 within a frame) over the whole video."""
    enc, c, heads, m = "model.vision_encoder.", VIT["hidden"], VIT["heads"], 2
    x = (
        pixels @ w[enc + "embeddings.patch_embedding.weight"].reshape(c, -1).T
        + w[enc + "embeddings.patch_embedding.bias"]
    )
    rows = torch.arange(gh)[:, None].expand(gh, gw).reshape(gh // m, m, gw // m, m).permute(0, 2, 1, 3).flatten()
    cols = torch.arange(gw)[None].expand(gh, gw).reshape(gh // m, m, gw // m, m).permute(0, 2, 1, 3).flatten()
    hw = torch.stack([rows, cols], dim=-1)
    per = gh * gw
    for i in range(VIT["layers"]):
        L = f"{enc}encoder.layers.{i}."
        h = F.layer_norm(x, (c,), w[L + "layer_norm1.weight"], w[L + "layer_norm1.bias"], 1e-6)
        q, k, v = (
            (h @ w[f"{L}self_attn.{n}_proj.weight"].T + w[f"{L}self_attn.{n}_proj.bias"]).reshape(-1, heads, c // heads)
            for n in "qkv"
        )
        q, k = rope(q, hw.repeat(t, 1)).transpose(0, 1), rope(k, hw.repeat(t, 1)).transpose(0, 1)
        scores = q @ k.transpose(1, 2) / math.sqrt(c // heads)
        same_frame = torch.block_diag(*[torch.ones(per, per)] * t).bool()
        scores = scores + same_frame if eager else scores.masked_fill(~same_frame, float("-inf"))
        out = (torch.softmax(scores, dim=-1) @ v.transpose(0, 1)).transpose(0, 1).reshape(-1, c)
        x = x + out @ w[L + "self_attn.out_proj.weight"].T + w[L + "self_attn.out_proj.bias"]
        h = F.layer_norm(x, (c,), w[L + "layer_norm2.weight"], w[L + "layer_norm2.bias"], 1e-6)
        h = F.gelu(h @ w[L + "mlp.fc1.weight"].T + w[L + "mlp.fc1.bias"], approximate="tanh")
        x = x + h @ w[L + "mlp.fc2.weight"].T + w[L + "mlp.fc2.bias"]
    x = F.layer_norm(x, (c,), w[enc + "post_layernorm.weight"], w[enc + "post_layernorm.bias"], 1e-6)
    x = x.view(t, gh // m, gw // m, m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(t, gh, gw, c).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(gh // m, gw // m), mode="bilinear").permute(0, 2, 3, 1).reshape(-1, c)
    x = F.gelu(x @ w["model.mm_projector.readout.0.weight"].T + w["model.mm_projector.readout.0.bias"])
    return x @ w["model.mm_projector.readout.2.weight"].T + w["model.mm_projector.readout.2.bias"]


def reference_logits(checkpoint, eager: bool = False) -> torch.Tensor:
    _, vision, llm, tokenizer, sample, frames = checkpoint
    side = round(frames.shape[1] / 28) * 28  # 64 px -> 56: sides multiples of patch x merge, within budget
    pixels = remote_pixels(frames, (side, side))
    ids = tokenizer(authors_prompt_text(sample, (side // 28) ** 2, [float(i) for i in range(8)])).input_ids
    with torch.no_grad():
        features = remote_video_features(vision, pixels, 8, side // 14, side // 14, eager)
        embeds = llm.get_input_embeddings()(torch.tensor([ids]))
        embeds[0, torch.tensor(ids) == tokenizer.convert_tokens_to_ids("<image>")] = features
        return llm(inputs_embeds=embeds).logits[0, -1]


def test_remote_checkpoint_matches_a_direct_reimplementation(checkpoint):
    folder, *_ = checkpoint
    adapter = flowcheck.load(str(folder))
    assert adapter.family == "videollama3-remote" and adapter.num_layers == 3
    sample, frames = checkpoint[4], checkpoint[5]
    enc = adapter.encode(sample, at_1fps(frames))
    assert (spliced_last_logits(adapter, enc) - reference_logits(checkpoint)).abs().max() <= 1e-5


def test_decoder_inputs_reproduce_the_vlm_forward(checkpoint):
    folder, _, _, _, sample, frames = checkpoint
    adapter = flowcheck.load(str(folder))
    enc = adapter.encode(sample, at_1fps(frames))
    text, _ = adapter.render_for(sample, at_1fps(frames), adapter.processor.video_inputs(frames))
    with torch.no_grad():
        full = adapter.model(**adapter.processor_inputs(text, at_1fps(frames), sample)).logits[0, -1]
    assert (full - spliced_last_logits(adapter, enc)).abs().max() <= 1e-5


def test_the_tokenizer_loads_without_asking_to_run_remote_code(checkpoint, refuse_remote_code_prompts):
    from flowcheck.models.handle import ModelHandle

    folder, tokenizer = checkpoint[0], checkpoint[3]
    image = tokenizer.convert_tokens_to_ids("<image>")
    assert ModelHandle(str(folder)).tokenizer.convert_tokens_to_ids("<image>") == image  # config.json has auto_map
    assert flowcheck.load(str(folder)).tokenizer.convert_tokens_to_ids("<image>") == image


def test_the_authors_eager_vision_attention_is_reproduced_by_name(checkpoint):
    folder, *_ = checkpoint
    adapter = flowcheck.load(f"{folder}@videollama3-remote-authors")
    assert adapter.family == "videollama3-remote-authors"
    enc = adapter.encode(checkpoint[4], at_1fps(checkpoint[5]))
    logits = spliced_last_logits(adapter, enc)
    assert (logits - reference_logits(checkpoint, eager=True)).abs().max() <= 1e-5
    assert (logits - reference_logits(checkpoint)).abs().max() > 1e-3  # it is not the per-frame encoder


def test_only_the_authors_vision_attention_mixes_frames(checkpoint):
    folder, _, _, _, sample, frames = checkpoint
    changed = frames.copy()
    changed[-1] = 255 - changed[-1]  # only the last frame differs
    for family, mixes in (("videollama3-remote", False), ("videollama3-remote-authors", True)):
        adapter = flowcheck.load(f"{folder}@{family}")
        a, b = adapter.encode(sample, at_1fps(frames)), adapter.encode(sample, at_1fps(changed))
        first = a.layout.frames[0]
        moved = a.inputs.inputs_embeds[0, first.start : first.end] - b.inputs.inputs_embeds[0, first.start : first.end]
        assert (moved.abs().max() > 1e-4) == mixes, family


def test_the_prompt_and_layout_are_the_authors(checkpoint):
    folder, _, _, tokenizer, sample, frames = checkpoint
    adapter = flowcheck.load(str(folder))
    enc = adapter.encode(sample, at_1fps(frames))
    assert enc.input_ids.tolist() == tokenizer(authors_prompt_text(sample, 4, [float(i) for i in range(8)])).input_ids
    layout, tok = enc.layout, adapter.tokenizer

    def text(span) -> str:
        return tok.decode(enc.input_ids[span.start : span.end])

    image = tok.convert_tokens_to_ids("<image>")
    assert set((enc.input_ids == image).nonzero().flatten().tolist()) < set(layout.video.positions())
    assert text(layout.system) == "<|im_start|> user \n"  # video = (borders[0], borders[1]) exclusive
    assert tok.decode(enc.input_ids[layout.video.end]) == "\n"
    assert [len(f) for f in layout.frames] == [10] + [11] * 7  # "Time d . d s :" + 4 <image>, then a leading ","
    assert text(layout.frames[0]).startswith("Time 0 . 0 s :")
    assert all(text(f).startswith(f", Time {i} . 0 s :") for i, f in enumerate(layout.frames[1:], 1))
    assert all((enc.input_ids[f.start : f.end] == image).sum() == 4 for f in layout.frames)
    assert text(layout.question_only) == sample.question.replace("?", " ?")
    assert text(layout.options[0]).startswith("( A )")
    assert text(layout.post).startswith("\n Answer with the option")
    assert tok.decode(enc.input_ids[-2:]) == "assistant \n"  # no answer prefix: the letter comes next
    assert tok.convert_ids_to_tokens(list(enc.option_ids)) == ["A", "B", "C", "D"][: len(sample.options)]


def test_knockouts_are_local_and_the_fast_engine_equals_the_plain_one(checkpoint):
    adapter = flowcheck.load(str(checkpoint[0]))
    assert_local_knockout_and_fast_engine(adapter, adapter.encode(checkpoint[4], at_1fps(checkpoint[5])), batch_size=4)


@pytest.mark.parametrize(
    ("height", "width", "frames", "tokens", "expected"),
    [
        (480, 640, 8, 1152, (280, 364)),  # over budget (144 per frame): beta 1.6496 -> 10 x 13 merged tokens
        (336, 336, 8, 1152, (336, 336)),  # 12 x 12 = 144 per frame: exactly the budget, kept
        (64, 64, 8, 1152, (56, 56)),  # under budget: sides rounded to multiples of 28
        (20, 30, 1, 1152, (56, 84)),  # below min_tokens 4: scaled up (beta 4.57)
    ],
)
def test_frame_size_follows_the_remote_resize_rule(height, width, frames, tokens, expected):
    assert frame_size(height, width, frames, 28, 4, tokens) == expected


def test_bad_checkpoints_are_refused_clearly(checkpoint, tmp_path):
    folder = checkpoint[0]
    for name in ("model.safetensors", "preprocessor_config.json", "processor_config.json"):
        (tmp_path / name).symlink_to(folder / name)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).symlink_to(folder / name)
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "mm_projector_type": "linear"}))
    with pytest.raises(flowcheck.models.AdapterError, match="mm_projector_type 'linear'"):
        flowcheck.load(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**config, "image_token_index": 1}))
    with pytest.raises(flowcheck.models.AdapterError, match="image_token_index"):
        flowcheck.load(str(tmp_path))
    layers = {**config, "num_hidden_layers": 4}  # the checkpoint has 3: layer 3's weights are missing
    (tmp_path / "config.json").write_text(json.dumps(layers))
    with pytest.raises(flowcheck.models.AdapterError, match="weights are missing"):
        flowcheck.load(str(tmp_path))


def test_a_family_chosen_by_name_has_its_own_cached_results(checkpoint, tmp_path):
    from flowcheck.analyses.runner import AnalysisPlan, run_analyses
    from flowcheck.cache import ResultCache
    from flowcheck.data.folder import load_tvbench_layout
    from flowcheck.data.synth import write_benchmark

    folder = checkpoint[0]
    write_benchmark(tmp_path / "bench", seed=1, per_task=2, tasks=["moving_direction"], progress=False)
    samples, _ = load_tvbench_layout(tmp_path / "bench", dataset="synthetic")
    plan, cache = AnalysisPlan(conditions=("vql-to-ql",), pruning=False), ResultCache(tmp_path / "cache")
    authors = f"{folder}@videollama3-remote-authors"
    computed, cached = (len(samples), 0), (0, len(samples))
    for name, expected in ((str(folder), computed), (authors, computed), (str(folder), cached), (authors, cached)):
        results = run_analyses(flowcheck.load(name), samples, plan, cache, dataset="synthetic")
        assert (results.computed, results.cached) == expected, name


def test_frame_labels_are_the_real_times_of_the_decoded_frames(checkpoint, tmp_path):
    from videos import write_timed_video

    from flowcheck.data.frames import read_frames

    folder, _, _, _, sample, _ = checkpoint
    adapter = flowcheck.load(str(folder))
    # 12.5 fps, 38 frames: the segment centres 2, 7, 11, 16, 20, 25, 30, 34 are shown at 0.08 s per index
    video = read_frames(write_timed_video(tmp_path / "clip.mp4", 38, fps=12.5, size=64), 8)
    enc = adapter.encode(sample, video)
    tok = adapter.tokenizer
    labels = [tok.decode(enc.input_ids[f.start : f.end]).replace(" ", "").lstrip(",")[:8] for f in enc.layout.frames]
    assert labels == ["Time0.2s", "Time0.6s", "Time0.9s", "Time1.3s", "Time1.6s", "Time2.0s", "Time2.4s", "Time2.7s"]
