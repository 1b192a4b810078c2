"""Capture exactly what a VLM hands its language model, so the vision tower runs once per sample."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from flowcheck.models.decoder import Decoder, LMInputs

# Keyword arguments of a decoder call that describe the call, not the sample.
_CALL_KWARGS = {
    "input_ids",
    "inputs_embeds",
    "attention_mask",
    "past_key_values",
    "cache",
    "use_cache",
    "position_ids",
    "cache_position",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
}


class _Captured(Exception):
    """Raised by the capture hook to stop the forward once the decoder's inputs are known."""


@torch.inference_mode()
def capture_decoder_inputs(model: nn.Module, decoder: Decoder, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run ``model(**inputs)`` until its text decoder is called; return the decoder's keyword arguments.

    The decoder layers never run: a forward pre-hook records the arguments and stops the call.
    """
    captured: dict[str, Any] = {}

    def hook(_module, args, kwargs):
        if args:
            kwargs = {**kwargs, "inputs_embeds": args[0]} if "inputs_embeds" not in kwargs else kwargs
        captured.update(kwargs)
        raise _Captured

    handle = decoder.module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(**inputs)
    except _Captured:
        pass
    finally:
        handle.remove()
    if "inputs_embeds" not in captured or captured["inputs_embeds"] is None:
        raise RuntimeError(
            f"{type(model).__name__} did not call its text decoder with inputs_embeds; flowcheck cannot capture the "
            "merged video embeddings of this model"
        )
    return captured


def lm_inputs_from_capture(captured: dict[str, Any]) -> LMInputs:
    """LMInputs (embeddings, positions, family extras) from captured decoder arguments."""
    embeds = captured["inputs_embeds"].detach()
    n = embeds.shape[1]
    positions = captured.get("position_ids")
    if positions is None:
        positions = torch.arange(n, device=embeds.device)[None]
    extra = {k: v for k, v in captured.items() if k not in _CALL_KWARGS and v is not None}
    return LMInputs(embeds, positions.detach(), extra)
