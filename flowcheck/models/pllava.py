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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)
from transformers.activations import ACT2FN

from flowcheck.data.sample import Sample
from flowcheck.engine import LMInputs
from flowcheck.layout import Span, TokenLayout
from flowcheck.models.base import AdapterError, EncodedSample, ModelAdapter
from flowcheck.models.hf_native import letter_token_ids, torch_dtype
from flowcheck.models.registry import register
from flowcheck.prompt import ANSWER_PREFIX, SYSTEM_MVBENCH, CharSpan, mc_text, token_span


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


def _rename(key: str) -> str | None:
    if key.startswith(("vision_tower.", "multi_modal_projector.", "language_model.")):
        return key  # PLLaVA's own names
    for old, new in _PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return None  # e.g. LLaVA-NeXT's image_newline: unused by the pooled video pipeline


def load_weights(model: PllavaModel, folder: Path) -> None:
    """Load every safetensors shard of `folder` into `model` under PLLaVA's names; fail on missing weights."""
    from safetensors.torch import load_file

    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise AdapterError(f"{folder} has no .safetensors weights")
    state = {}
    for shard in shards:
        for key, value in load_file(str(shard)).items():
            name = _rename(key)
            if name is not None:
                state[name] = value
    expected = dict(model.state_dict())
    missing = sorted(k for k in expected if k not in state and not k.endswith("position_ids"))
    if missing:
        raise AdapterError(f"{folder}: weights missing for {len(missing)} parameters, e.g. {missing[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


@register
class PllavaAdapter(ModelAdapter):
    family = "pllava"
    model_types = ("llava",)
    description = "PLLaVA format (the paper's LLaVA-NeXT-Video-FT; image baselines with @pllava)"

    @classmethod
    def accepts(cls, config: dict) -> bool:
        return "pooling_shape" in config

    @classmethod
    def from_pretrained(cls, name_or_path: str, **options: Any) -> PllavaAdapter:
        folder = Path(name_or_path)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(
                    name_or_path,
                    revision=options.get("revision"),
                    allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"],
                )
            )
        config = json.loads((folder / "config.json").read_text())
        if "pooling_shape" not in config:  # an image LLaVA-NeXT checkpoint run as the paper's baseline
            config = {
                **config,
                "pooling_shape": [8, 12, 12],
                "vision_feature_layer": -2,
                "image_token_index": config.get("image_token_index", config.get("image_token_id", 32000)),
            }
        model = PllavaModel(config)
        load_weights(model, folder)
        model.to(dtype=torch_dtype(options.get("dtype", "float32")), device=options.get("device", "cpu"))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        image_processor = CLIPImageProcessor.from_pretrained(folder)
        frames = int(config["pooling_shape"][0])
        return cls(
            model, {"tokenizer": tokenizer, "image_processor": image_processor}, name=name_or_path, num_frames=frames
        )

    @property
    def tokenizer(self):
        return self.processor["tokenizer"]

    @property
    def tokens_per_frame(self) -> int:
        shape = self.model.config_dict["pooling_shape"]
        return int(shape[1] * shape[2])

    def prompt(self, sample: Sample) -> tuple[str, dict[str, CharSpan]]:
        """The authors' eval_mvbench conversation (official-protocol.md 6.2) with character spans."""
        mc = mc_text(sample.question, sample.options)
        head = SYSTEM_MVBENCH + " USER: <image>\n USER: "
        text = head + mc.text + " ASSISTANT:" + ANSWER_PREFIX
        u = len(head)
        spans = {
            "question": mc.question.shifted(u),
            "question_only": mc.question_only.shifted(u),
            "post": mc.post.shifted(u),
        }
        spans.update({f"option:{i}": s.shifted(u) for i, s in enumerate(mc.options)})
        return text, spans

    def pixel_values(self, frames: np.ndarray) -> torch.Tensor:
        """The authors' preprocessing: short edge resized, then the CLIP processor's resize and centre crop."""
        processed = self.processor["image_processor"](list(frames), return_tensors="pt")
        return processed["pixel_values"].to(self.device, self.dtype)

    def encode(self, sample: Sample, frames: np.ndarray) -> EncodedSample:
        text, spans = self.prompt(sample)
        tokenizer = self.tokenizer
        enc = tokenizer(text, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        placeholder = self.model.image_token_index
        if ids.count(placeholder) != 1:
            raise AdapterError(
                f"the prompt tokenizes to {ids.count(placeholder)} <image> placeholders; PLLaVA needs one"
            )
        p = ids.index(placeholder)
        video = self.model.video_embeddings(self.pixel_values(frames))
        with torch.no_grad():
            embeds = self.decoder.input_embeddings()(torch.tensor([ids], device=self.device))
        merged = torch.cat([embeds[:, :p], video[None].to(embeds.dtype), embeds[:, p + 1 :]], dim=1)
        shift = video.shape[0] - 1

        def span(name: str) -> Span:
            start, end = token_span(offsets, spans[name])
            return Span(start + shift, end + shift) if start > p else Span(start, end)

        n = merged.shape[1]
        count = int(self.model.config_dict["pooling_shape"][0])  # temporal groups after pooling
        per = video.shape[0] // count
        question = span("question")
        layout = TokenLayout(
            n=n,
            video=Span(p, p + video.shape[0]),
            frames=tuple(Span(p + i * per, p + (i + 1) * per) for i in range(count)),
            question=question,
            question_only=span("question_only"),
            options=tuple(span(f"option:{i}") for i in range(len(sample.options))),
            true_index=sample.answer_index,
            system=Span(0, p),
            post=Span(question.end, n - 1),
        )
        inputs = LMInputs(merged, torch.arange(n, device=self.device)[None])
        expanded = torch.tensor(ids[:p] + [placeholder] * video.shape[0] + ids[p + 1 :])
        return EncodedSample(sample.id, layout, inputs, letter_token_ids(tokenizer, len(sample.options)), expanded)
