"""The paper's PLLaVA-format checkpoints (byminji/LLaVA-NeXT-7B-Video-FT, -13B-) and their image baselines.

PLLaVA is not a transformers class, so its forward is built here from transformers parts
(official-protocol.md 1.3): CLIP features from layer -2 without CLS, a linear-GELU-linear projector
applied to every frame, then a 3D average pool of the (t, h, w) grid to `pooling_shape` (8 x 12 x 12),
flattened in (t, h, w) order, replacing the single ``<image>`` placeholder of the prompt. (transformers'
LlavaNextVideo pools *before* its projector, so it cannot stand in for this.) Weights are read under
PLLaVA's names (``vision_tower.*``, ``multi_modal_projector.*``, ``language_model.*``); a llava-hf
LLaVA-NeXT image checkpoint (``model.vision_tower.*``, ...) runs through the same pipeline, as the
paper's ImageLLM baselines do. The prompt is the authors' exact MVBench conversation.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)
from transformers.activations import ACT2FN

from flowcheck.models.hf_native import torch_dtype
from flowcheck.models.registry import register
from flowcheck.models.spliced import (
    SplicedVideoAdapter,
    checkpoint_folder,
    load_converted_weights,
    tokenizer_from_files,
)
from flowcheck.prompt import SYSTEM_MVBENCH, SYSTEM_VCGBENCH


class PllavaProjector(nn.Module):
    """linear -> act -> linear on every frame's patches, then a 3D average pool to `pooling_shape`."""

    def __init__(self, vision_hidden: int, text_hidden: int, act: str, pooling_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(vision_hidden, text_hidden)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(text_hidden, text_hidden)
        self.pool = nn.AdaptiveAvgPool3d(pooling_shape)

    def forward(self, features: torch.Tensor, frames: int, grid: tuple[int, int]) -> torch.Tensor:
        """[frames, h*w, vision] -> [t*h'*w', text] in (t, h, w) order."""
        x = self.linear_2(self.act(self.linear_1(features)))
        x = x.reshape(1, frames, grid[0], grid[1], -1).permute(0, 4, 1, 2, 3)
        x = self.pool(x)
        return x.flatten(2).transpose(1, 2)[0]


class PllavaModel(nn.Module):
    """CLIP vision tower + PLLaVA projector/pooling + Llama language model."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config_dict = config
        vision = CLIPVisionConfig(**{k: v for k, v in config["vision_config"].items() if k != "model_type"})
        text = LlamaConfig(**{k: v for k, v in config["text_config"].items() if k != "model_type"})
        self.vision_tower = CLIPVisionModel(vision)
        self.multi_modal_projector = PllavaProjector(
            vision.hidden_size,
            text.hidden_size,
            config.get("projector_hidden_act", "gelu"),
            tuple(config.get("pooling_shape", (8, 12, 12))),
        )
        self.language_model = LlamaForCausalLM(text)
        self.vision_feature_layer = int(config.get("vision_feature_layer", -2))
        self.image_token_index = int(config.get("image_token_index", 32000))

    @property
    def config(self):
        return self.language_model.config

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.lm_head

    @torch.no_grad()
    def video_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[T, 3, H, W] -> [pooled tokens, text hidden]."""
        out = self.vision_tower(pixel_values, output_hidden_states=True)
        features = out.hidden_states[self.vision_feature_layer][:, 1:]  # drop CLS
        side = round(features.shape[1] ** 0.5)
        return self.multi_modal_projector(features, pixel_values.shape[0], (side, side))


# Weight names of the two on-disk formats, mapped to PllavaModel's.
_PREFIXES = (
    ("model.vision_tower.", "vision_tower."),  # llava-hf (transformers 5) LLaVA-NeXT image checkpoints
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
)


def _rename(key: str, value: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    if key.startswith(("vision_tower.", "multi_modal_projector.", "language_model.")):
        return [(key, value)]  # PLLaVA's own names
    for old, new in _PREFIXES:
        if key.startswith(old):
            return [(new + key[len(old) :], value)]
    return []  # e.g. LLaVA-NeXT's image_newline: unused by the pooled video pipeline


@register
class PllavaAdapter(SplicedVideoAdapter):
    """The authors' eval_mvbench conversation (official-protocol.md 6.2); CLIP preprocessing.

    Open-ended prompt: the authors' ``eval_vcgbench`` conversation (official-protocol.md 11), the one their
    open-ended analysis ran this model with: the Video-ChatGPT system prompt (`SYSTEM_VCGBENCH`), the same roles
    ``("USER: ", "ASSISTANT:")``, separator and video turn as eval_mvbench, and ``user_query(question)`` with no
    post-question instruction and no answer prefix, so the prompt is
    ``SYSTEM_VCGBENCH + " USER: <image>\\n USER: " + question + " ASSISTANT:"``.
    """

    family = "pllava"
    model_types = ("llava",)
    description = "PLLaVA format (the paper's LLaVA-NeXT-Video-FT; image baselines with @pllava)"
    prompt_head = SYSTEM_MVBENCH + " USER: <image>\n USER: "
    prompt_tail = " ASSISTANT:"
    open_prompt_head = SYSTEM_VCGBENCH + " USER: <image>\n USER: "
    open_prompt_tail = " ASSISTANT:"

    @classmethod
    def accepts(cls, config: dict) -> bool:
        return "pooling_shape" in config

    @classmethod
    def from_pretrained(cls, name_or_path: str, **options: Any) -> PllavaAdapter:
        cls.check_options(name_or_path, options)
        folder = checkpoint_folder(name_or_path, options.get("revision"))
        config = json.loads((folder / "config.json").read_text())
        if "pooling_shape" not in config:  # an image LLaVA-NeXT checkpoint run as the paper's baseline
            config = {
                **config,
                "pooling_shape": [8, 12, 12],
                "vision_feature_layer": -2,
                "image_token_index": config.get("image_token_index", config.get("image_token_id", 32000)),
            }
        model = PllavaModel(config)
        load_converted_weights(model, folder, _rename)
        model.to(dtype=torch_dtype(options.get("dtype", "float32")), device=options.get("device", "cpu"))
        tokenizer = tokenizer_from_files(folder)
        image_processor = CLIPImageProcessor.from_pretrained(folder)
        frames = int(config["pooling_shape"][0])
        return cls(
            model, {"tokenizer": tokenizer, "image_processor": image_processor}, name=name_or_path, num_frames=frames
        )

    def placeholder_id(self) -> int:
        return self.model.image_token_index

    def frame_groups(self, frames: np.ndarray) -> int:
        return int(self.model.config_dict["pooling_shape"][0])  # temporal groups after pooling

    @property
    def tokens_per_frame(self) -> int:
        shape = self.model.config_dict["pooling_shape"]
        return int(shape[1] * shape[2])
