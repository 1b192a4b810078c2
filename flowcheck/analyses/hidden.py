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


_SHARED = "_flowcheck_last_position_states"


@torch.inference_mode()
def last_position_states(decoder: Decoder, inputs: LMInputs, reuse: bool = False) -> tuple[torch.Tensor, ...]:
    """`hidden_states` at the last position only: L + 1 tensors [1, 1, d] (same convention).

    With `reuse`, the states are kept on `inputs` and an earlier `reuse` call for the same decoder and the same
    (unchanged) input embeddings returns them without a forward: the analyses of one sample that read the last
    position (answer probability, early exit) share one forward. Only the runner's per-sample loop should reuse:
    a hook or knockout added to the model between two calls is not seen."""
    key = (id(decoder.module), id(inputs.inputs_embeds), inputs.inputs_embeds._version)
    kept = getattr(inputs, _SHARED, None)
    if reuse and kept is not None and kept[0] == key:
        return kept[1]
    states = tuple(h[:, -1:].clone() for h in hidden_states(decoder, inputs))  # a view would keep all n positions
    if reuse:
        setattr(inputs, _SHARED, (key, states))
    return states


def readout_logits(decoder: Decoder, states: tuple[torch.Tensor, ...], final_norm: bool) -> torch.Tensor:
    """[L, vocab] float32 logits of lm_head on each layer's output at the last position of `states` (as
    `layer_outputs`: the last layer is normed already, the others only if `final_norm`)."""
    return torch.stack([decoder.lm_head(h[:, -1]).float()[0] for h in layer_outputs(states, decoder, final_norm)])
