"""The paper's InternVL-chat checkpoints (byminji/Mini-InternVL-4B-Video-FT, OpenGVLab/Mini-InternVL-Chat-4B-V1-5).

InternVL-chat ships its own remote code; flowcheck builds the same forward from transformers parts
instead (official-protocol.md 1.3), so knockouts go through the attention interface: transformers'
InternVL vision tower under InternViT's weight names (fused qkv split, ls1/ls2, norm1/norm2), features
of `select_layer` without CLS, pixel shuffle with `downsample_ratio` (`ps_version` v1 keeps InternVL
1.5's transposed layout, v2 swaps back), `mlp1` (LayerNorm -> Linear -> GELU -> Linear), and the
language model as a transformers class (Phi-3 for the paper's 4B). 8 frames of 448 x 448 give 256
tokens each, 2048 in all, replacing the single ``<IMG_CONTEXT>`` of the authors' phi3 prompt.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPImageProcessor,
    InternVLVisionConfig,
    InternVLVisionModel,
)

from flowcheck.models.base import AdapterError
from flowcheck.models.hf_native import torch_dtype
from flowcheck.models.registry import register
from flowcheck.models.spliced import (
    SplicedVideoAdapter,
    checkpoint_folder,
    load_converted_weights,
    tokenizer_from_files,
)
from flowcheck.prompt import SYSTEM_MVBENCH

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_CONTEXT = "<IMG_CONTEXT>"


def vision_config(raw: dict) -> InternVLVisionConfig:
    """transformers' InternVL vision config for an InternViT config (no final norm, as InternViT)."""
    return InternVLVisionConfig(
        hidden_size=raw["hidden_size"],
        num_hidden_layers=raw["num_hidden_layers"],
        num_attention_heads=raw["num_attention_heads"],
        intermediate_size=raw["intermediate_size"],
        hidden_act=raw.get("hidden_act", "gelu"),
        attention_bias=raw.get("qkv_bias", False),
        use_qk_norm=raw.get("qk_normalization", False),
        norm_type=raw.get("norm_type", "layer_norm"),
        layer_norm_eps=raw.get("layer_norm_eps", 1e-6),
        image_size=raw["image_size"],
        patch_size=raw["patch_size"],
        num_channels=raw.get("num_channels", 3),
        use_mean_pooling=True,  # makes the final layernorm an identity: InternViT has none
        use_absolute_position_embeddings=True,
        layer_scale_init_value=raw.get("initializer_factor", 0.1),
    )


def image_size(config: dict) -> int:
    """The side of the square frames the vision tower sees."""
    return int(config.get("force_image_size") or config["vision_config"]["image_size"])


def language_config(raw: dict):
    """The language model's transformers config; InternVL 1.5's Phi-3 rope type "su" is today's "longrope"."""
    raw = {k: v for k, v in raw.items() if k not in ("attn_implementation", "_attn_implementation")}
    scaling = raw.get("rope_scaling")
    if isinstance(scaling, dict) and scaling.get("type") == "su":
        raw["rope_scaling"] = {**scaling, "type": "longrope"}
    model_type = raw.pop("model_type", None)
    try:
        return AutoConfig.for_model(model_type, **raw)
    except (KeyError, ValueError) as err:
        raise AdapterError(
            f"InternVL-chat language model {model_type!r} is not a transformers class (e.g. InternLM2 needs remote "
            "code); flowcheck supports InternVL-chat checkpoints whose LLM transformers implements (Phi-3, Qwen2, "
            "Llama)"
        ) from err


class InternVLChatModel(nn.Module):
    """InternViT (as transformers' InternVL vision tower) + pixel shuffle + mlp1 + a transformers causal LM."""

    def __init__(self, config: dict, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.config_dict = config
        self.vision_model = InternVLVisionModel(vision_config(config["vision_config"]))
        self.language_model = AutoModelForCausalLM.from_config(
            language_config(config["llm_config"]), attn_implementation=attn_implementation
        )
        self.downsample_ratio = float(config.get("downsample_ratio", 0.5))
        self.ps_version = config.get("ps_version", "v1")
        self.select_layer = int(config.get("select_layer", -1))
        width = config["vision_config"]["hidden_size"] * int(1 / self.downsample_ratio) ** 2
        text = self.language_model.config.hidden_size
        self.mlp1 = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, text), nn.GELU(), nn.Linear(text, text))

    @property
    def config(self):
        return self.language_model.config

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def pixel_shuffle(self, x: torch.Tensor) -> torch.Tensor:
        """[N, W, H, C] -> [N, H*r, W*r, C/r^2] (v1: transposed, as InternVL 1.5) or [N, W*r, H*r, C/r^2] (v2)."""
        r = self.downsample_ratio
        n, w, h, c = x.shape
        x = x.reshape(n, w, int(h * r), int(c / r)).permute(0, 2, 1, 3)
        x = x.reshape(n, int(h * r), int(w * r), int(c / (r * r)))
        return x if self.ps_version == "v1" else x.permute(0, 2, 1, 3)

    @torch.no_grad()
    def video_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[T, 3, H, W] -> [T * tokens per frame, text hidden], frames in order."""
        if self.select_layer == -1:
            features = self.vision_model(pixel_values).last_hidden_state
        else:
            features = self.vision_model(pixel_values, output_hidden_states=True).hidden_states[self.select_layer]
        features = features[:, 1:]  # drop CLS
        side = round(features.shape[1] ** 0.5)
        x = self.pixel_shuffle(features.reshape(features.shape[0], side, side, -1))
        return self.mlp1(x.reshape(x.shape[0], -1, x.shape[-1])).flatten(0, 1)


_VISION_RENAMES = (
    ("vision_model.embeddings.class_embedding", "vision_model.embeddings.cls_token"),
    ("vision_model.embeddings.patch_embedding.", "vision_model.embeddings.patch_embeddings.projection."),
    ("vision_model.embeddings.position_embedding", "vision_model.embeddings.position_embeddings"),
    ("vision_model.encoder.layers.", "vision_model.encoder.layer."),
    (".attn.proj.", ".attention.projection_layer."),
    (".attn.q_norm.", ".attention.q_norm."),
    (".attn.k_norm.", ".attention.k_norm."),
    (".norm1.", ".layernorm_before."),
    (".norm2.", ".layernorm_after."),
)


def convert_weight(key: str, value: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """InternVL-chat's weight names -> InternVLChatModel's (the fused qkv becomes q/k/v projections)."""
    if not key.startswith("vision_model."):
        return [(key, value)]  # mlp1.*, language_model.*: same names
    for old, new in _VISION_RENAMES:
        key = key.replace(old, new)
    if key.endswith((".ls1", ".ls2")):
        return [(key[:-4] + (".lambda_1" if key.endswith("1") else ".lambda_2"), value)]
    if ".attn.qkv." in key:
        parts = zip("qkv", value.chunk(3, dim=0), strict=True)
        return [(key.replace(".attn.qkv.", f".attention.{name}_proj."), part) for name, part in parts]
    return [(key, value)]


@register
class InternVLChatAdapter(SplicedVideoAdapter):
    """The authors' eval_mvbench_phi3 conversation (official-protocol.md 6.2); 448-px ImageNet preprocessing.

    Open-ended prompt: the protocol gives no open-ended conversation for this model (its open-ended analysis,
    section 11, names only ``eval_vcgbench``, whose roles and ``</s>`` separator are LLaVA's, not phi3's). So the
    model's own multiple-choice conversation eval_mvbench_phi3 is used with the options, the post-question
    instruction and the answer prefix removed, as the transformers-native adapters do (HFVideoAdapter keeps the
    family's system prompt): ``SYSTEM_MVBENCH + " <|user|>\\n<img><IMG_CONTEXT></img>\\n <|user|>\\n" + question
    + " <|assistant|>\\n"``. This keeps the phi3 roles and the system text the checkpoint was evaluated with;
    Video-ChatGPT's system prompt in phi3 roles would be a conversation the authors never wrote.
    """

    family = "internvl-chat"
    model_types = ("internvl_chat",)
    description = "InternVL-chat format (the paper's Mini-InternVL-4B-Video-FT), built from transformers parts"
    prompt_head = SYSTEM_MVBENCH + " <|user|>\n<img>" + IMG_CONTEXT + "</img>\n <|user|>\n"
    prompt_tail = " <|assistant|>\n"
    open_prompt_head = prompt_head
    open_prompt_tail = prompt_tail
    turn_end = "<|end|>"  # eval_mvbench_phi3's sep[1]; phi3's eos is <|endoftext|>

    @classmethod
    def from_pretrained(cls, name_or_path: str, **options: Any) -> InternVLChatAdapter:
        cls.check_options(name_or_path, options)
        folder = checkpoint_folder(name_or_path, options.get("revision"))
        config = json.loads((folder / "config.json").read_text())
        model = InternVLChatModel(config, options.get("attn_implementation") or "sdpa")
        load_converted_weights(model, folder, convert_weight)
        model.to(dtype=torch_dtype(options.get("dtype", "float32")), device=options.get("device", "cpu"))
        tokenizer = tokenizer_from_files(folder)
        if tokenizer.convert_tokens_to_ids(IMG_CONTEXT) in (None, tokenizer.unk_token_id):
            raise AdapterError(f"{name_or_path}: the tokenizer has no {IMG_CONTEXT} token; is this InternVL-chat?")
        size = image_size(config)
        image_processor = CLIPImageProcessor(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_mean=IMAGENET_MEAN,
            image_std=IMAGENET_STD,
        )
        return cls(
            model,
            {"tokenizer": tokenizer, "image_processor": image_processor},
            name=name_or_path,
            num_frames=int(options.get("num_frames", 8)),
        )

    def placeholder_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(IMG_CONTEXT))

    @property
    def tokens_per_frame(self) -> int:
        raw = self.model.config_dict
        grid = image_size(raw) // raw["vision_config"]["patch_size"]
        return int(grid * self.model.downsample_ratio) ** 2
