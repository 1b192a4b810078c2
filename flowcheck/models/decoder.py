"""The model's text decoder and its inputs: find the decoder inside any transformers causal LM or VLM,
refuse what attention masks cannot knock out, and carry one sample's decoder inputs (`LMInputs`).

Adapters (`flowcheck.models`) build these; the knockout engine (`flowcheck.engine`) runs them. They live
with the models so that the models never import the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

ATTENTION_LAYER_TYPES = {"full_attention", "sliding_attention", "chunked_attention"}
_ATTENTION_ATTRS = ("self_attn", "attention", "attn")
_NON_ATTENTION_MIXERS = ("linear_attn", "mamba", "mixer", "conv", "short_conv", "ssm", "recurrent")


class UnsupportedModelError(RuntimeError):
    """A model flowcheck cannot knock out (no decoder found, or token mixing outside attention)."""


@dataclass
class Decoder:
    """The language-model part of a model: decoder layers, final norm and unembedding.

    `module` is the text decoder (e.g. ``LlamaModel``), called with ``inputs_embeds``;
    `attention[i]` is the attention module of decoder layer i.
    """

    module: nn.Module
    layers: nn.ModuleList
    attention: list[nn.Module]
    norm: nn.Module | None
    lm_head: nn.Module
    owner: nn.Module

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def config(self):
        return self.module.config

    @property
    def dtype(self):
        return next(self.module.parameters()).dtype

    @property
    def device(self):
        return next(self.module.parameters()).device

    def input_embeddings(self) -> nn.Module:
        return self.module.get_input_embeddings()


def _text_module(model: nn.Module) -> nn.Module:
    seen = set()
    candidate: nn.Module = model
    for _ in range(6):
        if id(candidate) in seen:
            break
        seen.add(id(candidate))
        if isinstance(getattr(candidate, "layers", None), nn.ModuleList) and hasattr(candidate, "embed_tokens"):
            return candidate
        for name in ("language_model", "text_model", "model", "decoder"):
            child = getattr(candidate, name, None)
            if isinstance(child, nn.Module):
                candidate = child
                break
        else:
            break
    matches = [
        m
        for m in model.modules()
        if isinstance(getattr(m, "layers", None), nn.ModuleList) and hasattr(m, "embed_tokens")
    ]
    if len(matches) == 1:
        return matches[0]
    raise UnsupportedModelError(
        f"could not find the text decoder of {type(model).__name__}: flowcheck looks for a module with "
        "`embed_tokens` and a `layers` ModuleList (as in every transformers decoder); "
        + ("found several" if matches else "found none")
        + ". Write a model adapter that points at the decoder."
    )


def _attention_of(layer: nn.Module, index: int) -> nn.Module:
    for name in _ATTENTION_ATTRS:
        module = getattr(layer, name, None)
        if isinstance(module, nn.Module):
            return module
    raise UnsupportedModelError(
        f"decoder layer {index} ({type(layer).__name__}) has no attention module "
        f"({' / '.join(_ATTENTION_ATTRS)}); flowcheck can only knock out attention layers"
    )


def check_attention_only(decoder_module: nn.Module, layers: nn.ModuleList) -> None:
    """Refuse hybrids: layers that mix tokens with linear attention, state-space or convolution blocks."""
    config = getattr(decoder_module, "config", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        bad = sorted({t for t in layer_types if t not in ATTENTION_LAYER_TYPES})
        if bad:
            raise UnsupportedModelError(
                f"{type(decoder_module).__name__} mixes tokens with non-attention layers ({', '.join(bad)}); "
                "attention knockout cannot block information flow through them (e.g. Qwen3.5 / Mamba hybrids). "
                "Use a model whose decoder layers are all attention layers."
            )
    for i, layer in enumerate(layers):
        for name in _NON_ATTENTION_MIXERS:
            if isinstance(getattr(layer, name, None), nn.Module):
                raise UnsupportedModelError(
                    f"decoder layer {i} ({type(layer).__name__}) has a `{name}` token mixer besides attention; "
                    "attention knockout cannot block information flow through it."
                )


def find_decoder(model: nn.Module) -> Decoder:
    """The `Decoder` of a causal LM, a VLM, or a bare decoder module."""
    if isinstance(model, Decoder):
        return model
    module = _text_module(model)
    layers = module.layers
    check_attention_only(module, layers)
    attention = [_attention_of(layer, i) for i, layer in enumerate(layers)]
    lm_head = None
    if hasattr(model, "get_output_embeddings"):
        lm_head = model.get_output_embeddings()
    if lm_head is None:
        lm_head = getattr(model, "lm_head", None)
    if lm_head is None:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no output embeddings (lm_head); pass the model with its LM head "
            "(e.g. *ForCausalLM or *ForConditionalGeneration), not the bare decoder"
        )
    return Decoder(module, layers, attention, getattr(module, "norm", None), lm_head, model)


@dataclass
class LMInputs:
    """What the text decoder needs for one sample, with video already embedded.

    `position_ids` is [1, n] or, for multimodal rotary models, [k, 1, n]; `extra` holds further
    decoder keyword arguments (e.g. Qwen3-VL's ``visual_pos_masks`` and
    ``deepstack_visual_embeds``). When only a suffix is recomputed (positions >= start, from
    layer `first_layer` on, as `rows` batch rows), `suffix_extra(extra, start, first_layer, rows)`
    gives the extras; the default slices tensors whose second dimension is the sequence and
    repeats them over the rows. When positions are appended after the prompt (generated tokens fed
    back, `extended`), `extend_extra(extra, count)` gives the extras of the longer input; a family
    with extras and no `extend_extra` cannot be extended (UnsupportedModelError).
    """

    inputs_embeds: torch.Tensor
    position_ids: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    suffix_extra: Callable[[dict[str, Any], int, int, int], dict[str, Any]] | None = None
    extend_extra: Callable[[dict[str, Any], int], dict[str, Any]] | None = None

    @property
    def n(self) -> int:
        return self.inputs_embeds.shape[1]

    def kwargs(self) -> dict[str, Any]:
        out = {"inputs_embeds": self.inputs_embeds, **self.extra}
        if self.position_ids is not None:
            out["position_ids"] = self.position_ids
        return out

    def suffix(self, start: int, first_layer: int = 0, rows: int = 1) -> LMInputs:
        """The inputs of positions ``>= start`` as `rows` batch rows (for a forward on top of a prefix cache)."""
        if self.suffix_extra is not None:
            extra = self.suffix_extra(self.extra, start, first_layer, rows)
        else:
            extra = {k: _rows(v[:, start:], rows) if _is_sequence(v, self.n) else v for k, v in self.extra.items()}
        positions = None
        if self.position_ids is not None:
            positions = self.position_ids[..., start:]
            if rows > 1:
                positions = positions.expand(*positions.shape[:-2], rows, positions.shape[-1])
        return LMInputs(
            _rows(self.inputs_embeds[:, start:], rows), positions, extra, self.suffix_extra, self.extend_extra
        )

    def continue_positions(self, count: int) -> torch.Tensor:
        """Positions of `count` tokens appended after the prompt, [1, count] or [k, 1, count] like `position_ids`.

        Every axis continues from the last prompt position: last + 1, ..., last + count. This is how transformers'
        ``generate`` moves positions for every family (``GenerationMixin._update_model_kwargs_for_generation``
        appends ``position_ids[..., -1:] + 1`` per step), multimodal rotary positions (Qwen2-VL, Qwen2.5-VL,
        Qwen3-VL, GLM-4V: [3, 1, n]) included. When the last prompt token holds the largest position it equals the
        models' ``rope_deltas`` rule (max + 1); where the two differ (transformers 5's Qwen2.5-VL with a long video,
        whose temporal positions run past the text after it) the model's own ``generate`` follows last + 1, and so
        does flowcheck (tests/test_generate.py). Without `position_ids` the prompt is 0..n-1 and the new tokens
        n..n+count-1. Raises ValueError for count < 0 or a batch of more than one row.
        """
        if count < 0:
            raise ValueError(f"cannot append {count} positions")
        positions = self.position_ids
        if positions is None:
            positions = torch.arange(self.n, device=self.inputs_embeds.device)[None]
        if positions.shape[-2] != 1:
            raise ValueError(f"positions are continued for one sample; these have {positions.shape[-2]} batch rows")
        step = torch.arange(1, count + 1, dtype=positions.dtype, device=positions.device)
        return positions[..., -1:] + step

    def extended(self, more_embeds: torch.Tensor) -> LMInputs:
        """The prompt followed by `more_embeds` ([1, m, d], e.g. the embeddings of generated tokens fed back) as one
        input of n + m positions: positions continued (`continue_positions`), extras by `extend_extra`.

        Raises UnsupportedModelError when the inputs carry extras and no `extend_extra` says how they continue.
        """
        count = more_embeds.shape[1]
        if self.extra and self.extend_extra is None:
            raise UnsupportedModelError(
                f"this family passes extra decoder inputs {sorted(self.extra)} and its adapter does not say how they "
                "continue past the prompt (LMInputs.extend_extra); flowcheck cannot append generated tokens to it. "
                "Give the adapter an extend_extra rule (see flowcheck/models/qwen_vl.py) or use the letter-scoring "
                "analyses."
            )
        embeds = torch.cat([self.inputs_embeds, more_embeds.to(self.inputs_embeds.dtype)], dim=1)
        base = self.position_ids
        if base is None:
            base = torch.arange(self.n, device=embeds.device)[None]
        positions = torch.cat([base, self.continue_positions(count)], dim=-1)
        extra = self.extend_extra(self.extra, count) if self.extra else {}
        return LMInputs(embeds, positions, extra, self.suffix_extra, self.extend_extra)


def _is_sequence(value: Any, n: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == n


def _rows(value: torch.Tensor, rows: int) -> torch.Tensor:
    return value if rows == 1 else value.expand(rows, *value.shape[1:])
