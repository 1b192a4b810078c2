"""InternVL-chat format: a tiny checkpoint in InternVL-chat's layout (InternViT names, fused qkv, mlp1,
Phi-3 with InternVL 1.5's "su" rope) loads through flowcheck.load and matches a direct reimplementation
of its forward (InternViT -> drop CLS -> pixel shuffle v1/v2 -> mlp1 -> spliced into the LM)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from families import (
    assert_local_knockout_and_fast_engine,
    assert_question_and_answer_prefix,
    spliced_last_logits,
    spliced_reference_logits,
    word_tokenizer,
)
from protocol_text import conversation
from safetensors.torch import save_file
from tiny_checkpoint import synthetic_sample
from transformers import CLIPImageProcessor, Phi3Config, Phi3ForCausalLM

import flowcheck

SPECIALS = ["<s>", "</s>", "<img>", "</img>", "<IMG_CONTEXT>", "<|user|>", "<|assistant|>", "<|end|>"]
VIT = dict(hidden_size=32, heads=2, intermediate=64, layers=2, image_size=32, patch_size=8)
HEAD_DIM_HALF = 4  # Phi-3 below: hidden 32 / 4 heads = 8 per head
ROPE = {"long_factor": [1.0, 1.5, 2.0, 2.5], "short_factor": [1.0, 1.1, 1.2, 1.3]}


def phi3_config(vocab: int, rope_type: str) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        original_max_position_embeddings=64,
        rope_scaling={"type": rope_type, **ROPE},
        pad_token_id=0,
    )


def internvit_weights(qk_norm: bool) -> dict[str, torch.Tensor]:
    """Random InternViT weights under InternVL-chat's names."""
    c, m, p = VIT["hidden_size"], VIT["intermediate"], VIT["patch_size"]
    patches = (VIT["image_size"] // p) ** 2

    def r(*shape, scale=0.2):
        return torch.randn(*shape) * scale

    w = {
        "vision_model.embeddings.class_embedding": r(1, 1, c),
        "vision_model.embeddings.patch_embedding.weight": r(c, 3, p, p, scale=0.05),
        "vision_model.embeddings.patch_embedding.bias": r(c),
        "vision_model.embeddings.position_embedding": r(1, patches + 1, c),
    }
    for i in range(VIT["layers"]):
        layer = f"vision_model.encoder.layers.{i}."
        w |= {
            layer + "attn.qkv.weight": r(3 * c, c),
            layer + "attn.qkv.bias": r(3 * c),
            layer + "attn.proj.weight": r(c, c),
            layer + "attn.proj.bias": r(c),
            layer + "ls1": 1 + r(c),
            layer + "ls2": 1 + r(c),
            layer + "norm1.weight": 1 + r(c),
            layer + "norm1.bias": r(c),
            layer + "norm2.weight": 1 + r(c),
            layer + "norm2.bias": r(c),
            layer + "mlp.fc1.weight": r(m, c),
            layer + "mlp.fc1.bias": r(m),
            layer + "mlp.fc2.weight": r(c, m),
            layer + "mlp.fc2.bias": r(c),
        }
        if qk_norm:
            w |= {layer + "attn.q_norm.weight": 1 + r(c), layer + "attn.k_norm.weight": 1 + r(c)}
    width = 4 * c
    w |= {
        "mlp1.0.weight": 1 + r(width),
        "mlp1.0.bias": r(width),
        "mlp1.1.weight": r(32, width),
        "mlp1.1.bias": r(32),
        "mlp1.3.weight": r(32, 32),
        "mlp1.3.bias": r(32),
    }
    return w


@pytest.fixture(scope="module", params=[("v1", False), ("v2", True)], ids=["ps-v1", "ps-v2-qknorm"])
def checkpoint(request, tmp_path_factory):
    ps_version, qk_norm = request.param
    folder = tmp_path_factory.mktemp("internvl-chat")
    tokenizer = word_tokenizer(SPECIALS, [], "{{ messages }}", bos_token="<s>", eos_token="</s>")
    from tokenizers import processors

    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.convert_tokens_to_ids("<s>"))]
    )
    torch.manual_seed(0)
    vision = internvit_weights(qk_norm)
    llm = Phi3ForCausalLM(Phi3Config(**phi3_config(len(tokenizer), "longrope")))
    state = {**vision, **{f"language_model.{k}": v for k, v in llm.state_dict().items()}}
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    config = {
        "model_type": "internvl_chat",
        "architectures": ["InternVLChatModel"],
        "auto_map": {  # as InternVL-chat configs have: transformers must not be asked to run this code
            "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
            "AutoModel": "modeling_internvl_chat.InternVLChatModel",
        },
        "vision_config": {
            "model_type": "intern_vit_6b",
            "hidden_size": VIT["hidden_size"],
            "num_attention_heads": VIT["heads"],
            "intermediate_size": VIT["intermediate"],
            "num_hidden_layers": VIT["layers"],
            "image_size": VIT["image_size"],
            "patch_size": VIT["patch_size"],
            "qkv_bias": True,
            "qk_normalization": qk_norm,
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "use_flash_attn": False,
        },
        "llm_config": {
            "model_type": "phi3",
            "architectures": ["Phi3ForCausalLM"],
            "attn_implementation": "flash_attention_2",  # as InternVL-chat configs say; not available on CPU
            **phi3_config(len(tokenizer), "su"),
        },
        "select_layer": -1,
        "downsample_ratio": 0.5,
        "ps_version": ps_version,
        "force_image_size": VIT["image_size"],
        "template": "phi3-chat",
    }
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)
    return folder, vision, llm, tokenizer, ps_version, qk_norm


def rms_over_heads(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[B, H, N, D] -> RMS-normalised [B, N, H*D]."""
    flat = t.transpose(1, 2).flatten(-2)
    return flat * torch.rsqrt(flat.pow(2).mean(-1, keepdim=True) + 1e-6) * weight


def internvit(weights: dict[str, torch.Tensor], pixels: torch.Tensor, qk_norm: bool) -> torch.Tensor:
    """InternViT's forward written out: patch conv, CLS, positions, pre-norm blocks with layer scale."""
    w = {k.removeprefix("vision_model."): v for k, v in weights.items()}
    c, heads = VIT["hidden_size"], VIT["heads"]
    x = F.conv2d(pixels, w["embeddings.patch_embedding.weight"], w["embeddings.patch_embedding.bias"], stride=8)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([w["embeddings.class_embedding"].expand(x.shape[0], -1, -1), x], dim=1)
    x = x + w["embeddings.position_embedding"]
    for i in range(VIT["layers"]):
        g = {k.removeprefix(f"encoder.layers.{i}."): v for k, v in w.items() if k.startswith(f"encoder.layers.{i}.")}
        h = F.layer_norm(x, (c,), g["norm1.weight"], g["norm1.bias"], eps=1e-6)
        b, n, _ = h.shape
        qkv = (h @ g["attn.qkv.weight"].T + g["attn.qkv.bias"]).reshape(b, n, 3, heads, c // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if qk_norm:  # RMSNorm over all heads together, then split again
            q, k = (
                rms_over_heads(t, g[f"attn.{name}_norm.weight"]).view(b, n, heads, c // heads).transpose(1, 2)
                for t, name in ((q, "q"), (k, "k"))
            )
        attn = ((q * (c // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c) @ g["attn.proj.weight"].T + g["attn.proj.bias"]
        x = x + out * g["ls1"]
        h = F.layer_norm(x, (c,), g["norm2.weight"], g["norm2.bias"], eps=1e-6)
        h = F.gelu(h @ g["mlp.fc1.weight"].T + g["mlp.fc1.bias"]) @ g["mlp.fc2.weight"].T + g["mlp.fc2.bias"]
        x = x + h * g["ls2"]
    return x


def reference_logits(checkpoint, sample, frames) -> torch.Tensor:
    _, vision, llm, tokenizer, ps_version, qk_norm = checkpoint
    prompt = conversation("phi3", sample.question, sample.options)  # the protocol's text
    ids = tokenizer(prompt).input_ids
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=(0.485, 0.456, 0.406),
        image_std=(0.229, 0.224, 0.225),
    )
    pixels = processor(list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        feats = internvit(vision, pixels, qk_norm)[:, 1:].reshape(8, 4, 4, 32)  # [T, W, H, C]
        t, wd, ht, c = feats.shape
        x = feats.reshape(t, wd, ht // 2, c * 2).permute(0, 2, 1, 3).reshape(t, ht // 2, wd // 2, c * 4)
        if ps_version == "v2":
            x = x.permute(0, 2, 1, 3)
        x = x.reshape(t, -1, c * 4)
        x = F.layer_norm(x, (c * 4,), vision["mlp1.0.weight"], vision["mlp1.0.bias"])
        x = F.gelu(x @ vision["mlp1.1.weight"].T + vision["mlp1.1.bias"]) @ vision["mlp1.3.weight"].T
        x = (x + vision["mlp1.3.bias"]).flatten(0, 1)  # [32, 32]
    return spliced_reference_logits(llm, ids, tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), x)


def test_internvl_chat_checkpoint_matches_a_direct_reimplementation(checkpoint, refuse_remote_code_prompts):
    adapter = flowcheck.load(str(checkpoint[0]))
    assert adapter.family == "internvl-chat" and adapter.tokens_per_frame == 4
    sample, frames = synthetic_sample("action_sequence")
    enc = adapter.encode(sample, frames)
    logits = spliced_last_logits(adapter, enc)
    assert (logits - reference_logits(checkpoint, sample, frames)).abs().max() <= 1e-5
    layout, tok = enc.layout, adapter.tokenizer
    assert len(layout.video) == 32 and [len(f) for f in layout.frames] == [4] * 8
    assert tok.decode(enc.input_ids[layout.video.start - 1 : layout.video.start]) == "<img>"
    assert tok.decode(enc.input_ids[layout.video.end : layout.video.end + 1]) == "</img>"
    assert_question_and_answer_prefix(adapter, enc, sample)


def test_the_pixel_shuffle_versions_differ_by_a_transpose(checkpoint):
    adapter = flowcheck.load(str(checkpoint[0]))
    grid = torch.arange(2 * 4 * 4 * 3, dtype=torch.float).reshape(2, 4, 4, 3)
    shuffled = adapter.model.pixel_shuffle(grid)
    assert shuffled.shape == (2, 2, 2, 12)
    adapter.model.ps_version = "v2" if checkpoint[4] == "v1" else "v1"
    other = adapter.model.pixel_shuffle(grid)
    assert torch.equal(shuffled, other.transpose(1, 2)) and not torch.equal(shuffled, other)


def test_a_language_model_transformers_does_not_implement_is_refused_clearly(checkpoint, tmp_path):
    folder = checkpoint[0]
    config = json.loads((folder / "config.json").read_text())
    config["llm_config"] = {
        **config["llm_config"],
        "model_type": "internlm2",
        "architectures": ["InternLM2ForCausalLM"],
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(flowcheck.models.AdapterError, match=r"internlm2.*not a transformers class"):
        flowcheck.load(str(tmp_path))


def test_knockouts_are_local_and_the_fast_engine_equals_the_plain_one(checkpoint):
    adapter = flowcheck.load(str(checkpoint[0]))
    sample, frames = synthetic_sample("object_count")
    assert_local_knockout_and_fast_engine(adapter, adapter.encode(sample, frames))
