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

Positions and extra decoder inputs (the same for every family, no family names here):

- Prompts whose positions are 0..n-1 (LLaVA-style) go to ``generate`` as embeddings only; it numbers the new
  tokens n, n+1, ...
- Prompts with other positions (the multimodal rotary positions [3, 1, n] of Qwen2-VL, Qwen2.5-VL, Qwen3-VL and
  GLM-4V) pass their ``position_ids`` to ``generate``, which continues every axis from the last prompt position
  + 1 (``GenerationMixin._update_model_kwargs_for_generation``; what the model's own ``generate`` from
  ``input_ids`` and pixels does in transformers 5, checked token for token and logit for logit in the tests).
  `LMInputs.continue_positions` is the same rule for teacher forcing.
- Extra decoder inputs (Qwen3-VL's ``visual_pos_masks`` and ``deepstack_visual_embeds``) belong to the prompt's
  visual positions: they reach the decoder's prefill call only, never a decode step, as in the model's own
  ``generate`` (pixel values are dropped after the prefill, ``MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL``).
  Families with extras must say how they continue past the prompt (`LMInputs.extend_extra`); the others are
  refused with UnsupportedModelError.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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


def _plain_positions(inputs: LMInputs) -> bool:
    """True when the prompt's positions are 0..n-1 (or not given), the numbering ``generate`` uses by itself."""
    positions = inputs.position_ids
    if positions is None:
        return True
    return positions.dim() == 2 and torch.equal(positions.cpu(), torch.arange(inputs.n)[None].expand_as(positions))


def _check_generatable(inputs: LMInputs) -> None:
    if inputs.inputs_embeds.shape[0] != 1:
        raise ValueError(f"generation runs one sample at a time; got a batch of {inputs.inputs_embeds.shape[0]}")
    positions = inputs.position_ids
    if positions is not None and (positions.shape[-1] != inputs.n or positions.shape[-2] != 1):
        raise ValueError(f"position_ids {tuple(positions.shape)} do not match one prompt of {inputs.n} positions")
    if inputs.extra and inputs.extend_extra is None:
        raise UnsupportedModelError(
            f"generation under knockout cannot continue this family's extra decoder inputs {sorted(inputs.extra)}: "
            "its adapter does not say how they extend past the prompt (LMInputs.extend_extra). Give the adapter "
            "an extend_extra rule (see flowcheck/models/qwen_vl.py) or use the letter-scoring analyses."
        )


@contextmanager
def _extras_at_prefill(decoder: Decoder, inputs: LMInputs) -> Iterator[None]:
    """Hand `inputs.extra` to the decoder's first call (the prefill over the n prompt positions) and to no other."""
    if not inputs.extra:
        yield
        return
    calls = 0

    def add_extras(_module, args, kwargs):
        nonlocal calls
        calls += 1
        if calls > 1:
            return None
        embeds = kwargs.get("inputs_embeds", args[0] if args else None)
        if embeds is None or embeds.shape[1] != inputs.n:
            raise RuntimeError(
                "generate's first decoder call is not the prefill over the prompt's "
                f"{inputs.n} positions; flowcheck cannot place this family's extra decoder inputs"
            )
        return args, {**kwargs, **inputs.extra}

    handle = decoder.module.register_forward_pre_hook(add_extras, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


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

    `inputs`: one sample's decoder inputs ([1, n, d] embeddings; positions [1, n] or multimodal [k, 1, n], which
    continue as the module docstring says; extras reach the prefill only); `plan`: blocked spec per layer for the
    prompt's n positions (`flowcheck.engine.knockout.knockout_plan`; None or {} = no knockout, still through
    flowcheck's attention function); new tokens follow `inherit_last_row`. `eos_token_ids`: default the model's
    generation config; `stop_strings` need `tokenizer` (`DecodedStop`). Raises UnsupportedModelError for families
    whose extra decoder inputs have no continuation rule (`LMInputs.extend_extra`), ValueError for
    max_new_tokens < 1, stop strings without a tokenizer, or a batch of more than one sample.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if stop_strings and tokenizer is None:
        raise ValueError("stop strings need the tokenizer (transformers matches them on decoded tokens)")
    _check_generatable(inputs)
    n = inputs.n
    lazy = {layer: inherit_last_row(spec, n) for layer, spec in (plan or {}).items()}
    owner = decoder.owner
    config = owner.generation_config
    eos = list(eos_token_ids) if eos_token_ids is not None else config.eos_token_id
    pad = config.pad_token_id if config.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    extra = {"stopping_criteria": StoppingCriteriaList([DecodedStop(stop_strings, tokenizer)])} if stop_strings else {}
    if not _plain_positions(inputs):
        extra["position_ids"] = inputs.position_ids
    embeds = inputs.inputs_embeds
    with knockout_plan(decoder, lazy), _extras_at_prefill(decoder, inputs):
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
    [1, n + len(tokens), d] embeddings with the positions `generate_under_knockout` gave the tokens
    (`LMInputs.continue_positions`: n.. for positions 0..n-1, last prompt position + 1.. on every axis for
    multimodal rotary positions) and the extras extended (`LMInputs.extend_extra`).

    Raises UnsupportedModelError as `generate_under_knockout` does for families whose extras have no continuation
    rule.
    """
    _check_generatable(inputs)
    if not tokens:
        return inputs
    ids = torch.tensor([list(tokens)], dtype=torch.long, device=inputs.inputs_embeds.device)
    return inputs.extended(decoder.input_embeddings()(ids))
