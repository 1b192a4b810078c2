"""Greedy generation with an attention knockout active over the prompt and every decoded token.

transformers' ``generate`` (``do_sample=False``, ``num_beams=1``) runs on the model that owns the text decoder,
with the prompt given as the decoder's ``inputs_embeds`` (video already merged, so the vision tower does not run
again). The knockout goes through the engine's own machinery (`flowcheck.engine.knockout.knockout_plan` and the
`flowcheck_sdpa` attention function): every forward ``generate`` makes, the prefill and each one-token decode step
on top of the KV cache, removes the blocked edges of its query rows.

Convention for the new tokens (the authors' `generate_with_attn_block`, official-protocol.md 2.2): a query at a
generated position inherits the blocking pattern of the last prompt row over the prompt keys, and every generated
position stays visible to it. The KV cache is consistent with the knockout because each cached key and value was
computed by a forward that already had the knockout active (the prefill for the prompt, each decode step for its
token); `tests/test_generate.py` checks the result against step-by-step full forwards without a cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from flowcheck.engine.attention import BlockedSpec, LazyMask, materialize
from flowcheck.engine.knockout import knockout_plan
from flowcheck.models.decoder import Decoder, LMInputs, UnsupportedModelError


def inherit_last_row(spec: BlockedSpec, n: int) -> LazyMask:
    """`spec` (a prompt of `n` positions) extended to generated positions by the authors' convention.

    For kv_len == n the mask is `spec`'s [n, n] (or [B, n, n]) blocked mask; for kv_len > n it holds the rows of
    the generated positions n..kv_len-1 only ([..., kv_len - n, kv_len]): each is the last prompt row (n - 1) over
    the prompt keys and False (visible) over the generated keys. Raises ValueError for kv_len < n.
    """
    built: dict[torch.device, torch.Tensor] = {}

    def prompt_mask(device: torch.device) -> torch.Tensor:
        if device not in built:
            built[device] = materialize(spec, n, device)
        return built[device]

    def build(kv_len: int, device: torch.device) -> torch.Tensor:
        base = prompt_mask(device)
        if kv_len == n:
            return base
        if kv_len < n:
            raise ValueError(f"a forward over {kv_len} keys is shorter than the {n}-position prompt it extends")
        last = base[..., n - 1 : n, :]
        rows = last.expand(*last.shape[:-2], kv_len - n, n)
        free = torch.zeros(*rows.shape[:-1], kv_len - n, dtype=torch.bool, device=device)
        return torch.cat([rows, free], dim=-1)

    return LazyMask(build)


@dataclass(frozen=True)
class Generation:
    """One greedy continuation: the new token ids, each step's logits ([steps, vocab], fp32, before any logits
    processor) and why it stopped (``"eos"``, ``"stop_string"`` or ``"max_new_tokens"``)."""

    token_ids: list[int]
    logits: torch.Tensor
    stopped: str

    @property
    def first_logits(self) -> torch.Tensor:
        """The first generated step's logits, [vocab]."""
        return self.logits[0]

    @property
    def first_probs(self) -> torch.Tensor:
        """Softmax of the first step over the full vocabulary, [vocab]."""
        return torch.softmax(self.first_logits.float(), dim=-1)


class DecodedStop(StoppingCriteria):
    """Stop when the decoded new tokens contain one of `stop_strings` (plain substring search on
    ``tokenizer.decode``). transformers' StopStringCriteria needs a tokenizer whose vocabulary it can clean of
    prefix markers, which word-level tokenizers (the bundled models') are not; this check works with any tokenizer.
    `generate` from ``inputs_embeds`` passes only the new tokens as ``input_ids``."""

    def __init__(self, stop_strings: Sequence[str], tokenizer) -> None:
        self.stop_strings = list(stop_strings)
        self.tokenizer = tokenizer

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = [any(s in self.tokenizer.decode(row) for s in self.stop_strings) for row in input_ids.tolist()]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _check_plain_positions(inputs: LMInputs) -> None:
    n = inputs.n
    positions = inputs.position_ids
    plain = positions is None or (
        positions.dim() == 2 and torch.equal(positions.cpu(), torch.arange(n)[None].expand(positions.shape[0], n))
    )
    if not plain or inputs.extra:
        raise UnsupportedModelError(
            "generation under knockout needs a decoder whose prompt positions are 0..n-1 with no extra decoder "
            "inputs (LLaVA-style families); this family passes "
            + ("multimodal rotary positions" if not plain else f"extra inputs {sorted(inputs.extra)}")
            + ", which transformers' generate cannot continue from inputs_embeds. Use the letter-scoring analyses "
            "for this model."
        )


@torch.inference_mode()
def generate_under_knockout(
    decoder: Decoder,
    inputs: LMInputs,
    plan: Mapping[int, BlockedSpec] | None,
    *,
    max_new_tokens: int = 8,
    eos_token_ids: Sequence[int] | None = None,
    stop_strings: Sequence[str] = (),
    tokenizer=None,
) -> Generation:
    """Greedy ``generate`` of `decoder`'s model from one encoded prompt with `plan` knocked out.

    `inputs`: one sample's decoder inputs ([1, n, d] embeddings, positions 0..n-1); `plan`: blocked spec per layer
    for the prompt's n positions (`flowcheck.engine.knockout.knockout_plan`; None or {} = no knockout, still
    through flowcheck's attention function); new tokens follow `inherit_last_row`. `eos_token_ids`: default the
    model's generation config; `stop_strings` need `tokenizer` (`DecodedStop`). Raises
    UnsupportedModelError for families with multimodal rotary positions or extra decoder inputs, ValueError for
    max_new_tokens < 1 or stop strings without a tokenizer.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if stop_strings and tokenizer is None:
        raise ValueError("stop strings need the tokenizer (transformers matches them on decoded tokens)")
    _check_plain_positions(inputs)
    n = inputs.n
    lazy = {layer: inherit_last_row(spec, n) for layer, spec in (plan or {}).items()}
    owner = decoder.owner
    config = owner.generation_config
    eos = list(eos_token_ids) if eos_token_ids is not None else config.eos_token_id
    pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    extra = {"stopping_criteria": StoppingCriteriaList([DecodedStop(stop_strings, tokenizer)])} if stop_strings else {}
    embeds = inputs.inputs_embeds
    with knockout_plan(decoder, lazy):
        out = owner.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=eos,
            pad_token_id=pad,
            output_logits=True,
            return_dict_in_generate=True,
            **extra,
        )
    if out.sequences.shape[1] != len(out.logits):
        raise RuntimeError("generate from inputs_embeds returned the prompt ids too; flowcheck expects new tokens only")
    tokens = out.sequences[0].tolist()
    eos_set = set([eos] if isinstance(eos, int) else (eos or []))
    if tokens and tokens[-1] in eos_set:
        stopped = "eos"
    elif len(tokens) < max_new_tokens:
        stopped = "stop_string"
    else:
        stopped = "max_new_tokens"
    return Generation(tokens, torch.stack([step[0] for step in out.logits]).float().cpu(), stopped)


@torch.inference_mode()
def teacher_forced(decoder: Decoder, inputs: LMInputs, tokens: Sequence[int]) -> LMInputs:
    """The prompt followed by `tokens` (a generated response fed back, teacher forcing) as one input:
    [1, n + len(tokens), d] embeddings with positions 0..n+len(tokens)-1 (the positions `generate` gave them).

    Raises UnsupportedModelError as `generate_under_knockout` does for families with multimodal rotary positions
    or extra decoder inputs.
    """
    _check_plain_positions(inputs)
    if not tokens:
        return inputs
    ids = torch.tensor([list(tokens)], dtype=torch.long, device=inputs.inputs_embeds.device)
    embeds = torch.cat([inputs.inputs_embeds, decoder.input_embeddings()(ids).to(inputs.inputs_embeds.dtype)], dim=1)
    return LMInputs(embeds, torch.arange(embeds.shape[1], device=embeds.device)[None])
