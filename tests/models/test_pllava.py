"""PLLaVA format: a tiny checkpoint in PLLaVA's layout loads through flowcheck.load and matches a direct
reimplementation of its forward (CLIP layer -2 without CLS -> linear/GELU/linear -> 3D average pool -> Llama)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from families import (
    assert_question_and_answer_prefix,
    spliced_last_logits,
    spliced_reference_logits,
    word_tokenizer,
)
from protocol_text import conversation
from safetensors.torch import save_file
from tiny_checkpoint import synthetic_sample
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

import flowcheck

TEMPLATE = "{{ messages }}"  # PLLaVA does not use a chat template: the adapter writes the authors' prompt


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pllava")
    tokenizer = word_tokenizer(
        ["<s>", "</s>", "<image>"], ["USER", "ASSISTANT"], TEMPLATE, bos_token="<s>", eos_token="</s>"
    )
    from tokenizers import processors

    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.convert_tokens_to_ids("<s>"))]
    )
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    clip, llama = CLIPVisionModel(vision), LlamaForCausalLM(text)
    projector = {
        "multi_modal_projector.linear_1.weight": torch.randn(48, 32) * 0.1,
        "multi_modal_projector.linear_1.bias": torch.randn(48) * 0.1,
        "multi_modal_projector.linear_2.weight": torch.randn(48, 48) * 0.1,
        "multi_modal_projector.linear_2.bias": torch.randn(48) * 0.1,
    }
    state = {
        **{f"vision_tower.{k}": v for k, v in clip.state_dict().items()},
        **{f"language_model.{k}": v for k, v in llama.state_dict().items()},
        **projector,
    }
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    config = {
        "model_type": "llava",
        "architectures": ["PllavaForConditionalGeneration"],
        "vision_config": vision.to_dict(),
        "text_config": text.to_dict(),
        "pooling_shape": [8, 2, 2],
        "vision_feature_layer": -2,
        "image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
        "projector_hidden_act": "gelu",
    }
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder, clip, llama, projector, tokenizer


def reference_logits(checkpoint, sample, frames) -> torch.Tensor:
    """PLLaVA's forward written out independently."""
    folder, clip, llama, projector, tokenizer = checkpoint
    prompt = conversation("llava", sample.question, sample.options)  # the protocol's text
    ids = tokenizer(prompt).input_ids
    pixels = CLIPImageProcessor.from_pretrained(folder)(list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        feats = clip(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]  # [8, 16, 32]
        x = F.linear(
            feats, projector["multi_modal_projector.linear_1.weight"], projector["multi_modal_projector.linear_1.bias"]
        )
        x = F.linear(
            F.gelu(x),
            projector["multi_modal_projector.linear_2.weight"],
            projector["multi_modal_projector.linear_2.bias"],
        )
        x = x.reshape(1, 8, 4, 4, 48).permute(0, 4, 1, 2, 3)
        x = F.adaptive_avg_pool3d(x, (8, 2, 2)).flatten(2).transpose(1, 2)[0]  # [32, 48]
    return spliced_reference_logits(llama, ids, tokenizer.convert_tokens_to_ids("<image>"), x)


def test_pllava_checkpoint_matches_a_direct_reimplementation(checkpoint):
    adapter = flowcheck.load(str(checkpoint[0]))
    assert adapter.family == "pllava" and adapter.tokens_per_frame == 4
    sample, frames = synthetic_sample("moving_direction")
    enc = adapter.encode(sample, frames)
    logits = spliced_last_logits(adapter, enc)
    assert (logits - reference_logits(checkpoint, sample, frames)).abs().max() <= 1e-5
    assert len(enc.layout.video) == 32 and len(enc.layout.frames) == 8
    assert_question_and_answer_prefix(adapter, enc, sample)


def test_image_llava_next_checkpoints_need_the_family_flag(checkpoint, tmp_path):
    folder = checkpoint[0]
    config = json.loads((folder / "config.json").read_text())
    del config["pooling_shape"]
    config["model_type"] = "llava"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(flowcheck.models.AdapterError, match="no flowcheck adapter for model_type 'llava'"):
        flowcheck.load(str(tmp_path))
    for f in folder.iterdir():
        if f.name != "config.json":
            (tmp_path / f.name).write_bytes(f.read_bytes())
    adapter = flowcheck.load(f"{tmp_path}@pllava")
    assert adapter.family == "pllava" and np.array_equal(
        adapter.model.multi_modal_projector.pool.output_size, (8, 12, 12)
    )
