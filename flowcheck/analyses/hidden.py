"""Residual streams per layer of one encoded sample (for the answer-probability and logit-lens analyses)."""

from __future__ import annotations

import torch

from flowcheck.engine import Decoder, LMInputs
from flowcheck.engine.scoring import no_padding


@torch.inference_mode()
def hidden_states(decoder: Decoder, inputs: LMInputs) -> tuple[torch.Tensor, ...]:
    """transformers' convention: L + 1 tensors [1, n, d]; entry l < L is the input of layer l, entry L the
    output of the last layer after the final norm."""
    out = decoder.module(
        **inputs.kwargs(), attention_mask=no_padding(inputs), use_cache=False, output_hidden_states=True
    )
    states = out.hidden_states
    if states is None or len(states) != decoder.num_layers + 1:
        raise RuntimeError(f"{type(decoder.module).__name__} did not return {decoder.num_layers + 1} hidden states")
    return tuple(states)


def layer_outputs(states: tuple[torch.Tensor, ...], decoder: Decoder, final_norm: bool) -> list[torch.Tensor]:
    """Output of every layer l = 0..L-1; the last one is normed already, the others only if `final_norm`."""
    outs = []
    for layer in range(decoder.num_layers):
        h = states[layer + 1]
        if final_norm and layer < decoder.num_layers - 1 and decoder.norm is not None:
            h = decoder.norm(h)
        outs.append(h)
    return outs
