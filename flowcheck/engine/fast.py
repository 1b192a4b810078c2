"""The fast strategy: prefix reuse, layer reuse and batched knockouts, exact up to kernel numerics.

A knockout whose earliest changed query is p and whose first layer is a leaves every position < p
unchanged at every layer, and every position unchanged before layer a. So one baseline forward
keeps the KV cache and the residual stream entering every layer; each knockout then recomputes
only positions >= p, only in layers >= a: the decoder runs on the suffix with a cache holding the
baseline keys and values of the prefix, starting from the cached residual at layer a (layers
before it are bypassed). Knockouts with the same (p, a) run together as batch rows, each row with
its own blocked mask, in batches bounded by a memory budget.

Before trusting the shortcut on a model, a self-check reruns the last position with no knockout
from layer 0 and from the middle layer; if either differs from the baseline (a family whose
decoder does something this strategy does not reproduce), scoring falls back to the plain strategy.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicLayer

from flowcheck.engine.decoder import Decoder
from flowcheck.engine.knockout import knockout_plan
from flowcheck.engine.scoring import Knockout, LMInputs, Scored, _as_spec, _score_logits, no_padding, score_plain

# Small models spend a forward's time on per-call overhead, not arithmetic: let them batch at least this much.
MIN_DEFAULT_BUDGET_MB = 64
SELF_CHECK_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}


class _Bypass(nn.Module):
    """Stands in for a decoder layer whose output is already known: returns its input unchanged."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


@contextmanager
def bypass_layers(decoder: Decoder, below: int) -> Iterator[None]:
    """Layers 0..below-1 return their input (restored on exit)."""
    saved = [decoder.layers[i] for i in range(below)]
    try:
        for i in range(below):
            decoder.layers[i] = _Bypass()
        yield
    finally:
        for i, layer in enumerate(saved):
            decoder.layers[i] = layer


class Baseline:
    """One cached forward: the KV cache, the residual entering every layer, and the last-position logits."""

    def __init__(self, decoder: Decoder, inputs: LMInputs) -> None:
        # The residual entering each layer is read with pre-hooks, not from output_hidden_states: what a
        # layer receives is what a suffix forward must start from (e.g. Qwen3-VL adds deepstack features
        # between layers, after the hidden states are recorded).
        self.hidden: list[torch.Tensor | None] = [None] * decoder.num_layers

        def keep(index: int):
            def hook(_module, args, kwargs):
                self.hidden[index] = args[0] if args else kwargs["hidden_states"]

            return hook

        handles = [layer.register_forward_pre_hook(keep(i), with_kwargs=True) for i, layer in enumerate(decoder.layers)]
        try:
            out = decoder.module(**inputs.kwargs(), attention_mask=no_padding(inputs), use_cache=True)
        finally:
            for handle in handles:
                handle.remove()
        self.cache = out.cache if hasattr(out, "cache") else out.past_key_values
        self.logits = decoder.lm_head(out.last_hidden_state[:, -1])
        self.layers = [(layer.keys, layer.values) for layer in self.cache.layers]

    def prefix_cache(self, decoder: Decoder, p: int, rows: int) -> Cache:
        """A cache that serves the baseline keys and values of positions < p to `rows` suffix rows.

        It stores nothing: each layer's call concatenates the shared prefix (broadcast over the rows, never
        copied per row into the cache) with the suffix's new keys and values and returns them, so memory
        holds one layer's concatenation at a time instead of every layer's for every row.
        """
        return Cache(layers=[_PrefixLayer(keys[..., :p, :], values[..., :p, :]) for keys, values in self.layers])


class _PrefixLayer(DynamicLayer):
    """A read-only cache layer holding a batch-1 prefix."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.keys, self.values = keys, values
        self.device = keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows = key_states.shape[0]
        keys = self.keys.expand(rows, *self.keys.shape[1:])
        values = self.values.expand(rows, *self.values.shape[1:])
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)


def _suffix_logits(decoder: Decoder, base: Baseline, inputs: LMInputs, p: int, a: int, rows: int) -> torch.Tensor:
    """Last-position logits of `rows` copies of positions >= p recomputed from layer a (under any active knockout)."""
    suffix = inputs.suffix(p, a, rows)
    hidden = base.hidden[a][:, p:]
    # a copy: some decoders update hidden states in place (Qwen3-VL's deepstack), which must not reach the baseline
    hidden = hidden.clone() if rows == 1 else hidden.expand(rows, *hidden.shape[1:]).clone()
    kwargs = {**suffix.kwargs(), "inputs_embeds": hidden}
    cache = base.prefix_cache(decoder, p, rows)
    mask = torch.ones(rows, inputs.n, dtype=torch.long, device=hidden.device)
    with bypass_layers(decoder, a):
        out = decoder.module(**kwargs, attention_mask=mask, cache=cache, use_cache=True)
    return decoder.lm_head(out.last_hidden_state[:, -1])


def self_check(decoder: Decoder, base: Baseline, inputs: LMInputs) -> bool:
    """Does the suffix path reproduce the baseline without a knockout (from layer 0 and from the middle)?"""
    tolerance = SELF_CHECK_TOLERANCE.get(decoder.dtype, 1e-2)
    reference = torch.softmax(base.logits.float(), -1)
    for a in (0, decoder.num_layers // 2):
        got = torch.softmax(_suffix_logits(decoder, base, inputs, inputs.n - 1, a, 1).float(), -1)
        if (got - reference).abs().max().item() > tolerance:
            return False
    return True


def _row_masks(group: Sequence[Knockout], n: int, p: int, device) -> dict[int, torch.Tensor]:
    """Per layer, a [rows, n - p, n] blocked mask of the suffix queries (rows without that layer block nothing)."""
    from flowcheck.engine.attention import materialize

    layers = sorted({layer for ko in group for layer in ko.plan})
    out = {}
    for layer in layers:
        stack = torch.zeros(len(group), n - p, n, dtype=torch.bool, device=device)
        for row, ko in enumerate(group):
            if layer in ko.plan:
                stack[row] = materialize(_as_spec(ko.plan[layer]), n, device, first_row=p)
        out[layer] = stack
    return out


def _rows_for_budget(
    decoder: Decoder, inputs: LMInputs, p: int, budget_mb: float | None, batch_size: int | None
) -> int:
    """How many knockouts share one forward: the explicit batch size, or what fits the memory budget.

    Without a budget, the budget is what one full forward of the sample needs transiently (attention
    scores of one layer and a few activations of every position), so batching keeps peak memory near
    that of the plain strategy (and at least MIN_DEFAULT_BUDGET_MB).
    """
    if batch_size:
        return batch_size
    n, suffix = inputs.n, inputs.n - p
    config = decoder.config
    heads = getattr(config, "num_attention_heads", 8)
    kv_heads = getattr(config, "num_key_value_heads", heads) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    width = decoder.dtype.itemsize
    inter = getattr(config, "intermediate_size", 4 * config.hidden_size)

    def transient(q: int) -> float:
        return (
            heads * q * n * 4  # attention scores of one layer
            + 2 * kv_heads * head_dim * n * width  # one layer's keys and values
            + q * (4 * config.hidden_size + 2 * inter) * width  # activations of one layer
            + q * n * decoder.num_layers
        )  # the suffix rows of every layer's boolean mask

    budget = budget_mb * 2**20 if budget_mb is not None else max(transient(n), MIN_DEFAULT_BUDGET_MB * 2**20)
    return max(1, int(budget // transient(suffix)))


@torch.inference_mode()
def score_fast(
    decoder: Decoder,
    inputs: LMInputs,
    knockouts: Sequence[Knockout],
    watch_ids: Sequence[int],
    progress: Callable[[int], None] | None = None,
    batch_size: int | None = None,
    memory_budget_mb: float | None = None,
) -> tuple[Scored, list[Scored]]:
    """Same results as `score_plain`, recomputing only what each knockout can change."""
    watch = torch.as_tensor(list(watch_ids), dtype=torch.long)
    base = Baseline(decoder, inputs)
    if not self_check(decoder, base, inputs):
        warnings.warn(
            f"flowcheck: the fast engine could not reproduce {type(decoder.module).__name__}'s baseline from its "
            "cache; falling back to one full forward per knockout",
            stacklevel=2,
        )
        return score_plain(decoder, inputs, knockouts, watch_ids, progress=progress)
    baseline = _score_logits(base.logits, watch)[0]
    n = inputs.n
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    results: list[Scored | None] = [None] * len(knockouts)
    for index, ko in enumerate(knockouts):
        p = ko.earliest_query(n)
        if not ko.plan or p >= n:  # nothing changes: the baseline
            results[index] = baseline
            if progress is not None:
                progress(1)
            continue
        groups[(p, ko.first_layer)].append(index)
    for (p, a), indices in sorted(groups.items()):
        rows = _rows_for_budget(decoder, inputs, p, memory_budget_mb, batch_size)
        for start in range(0, len(indices), rows):
            chunk = indices[start : start + rows]
            group = [knockouts[i] for i in chunk]
            try:
                with knockout_plan(decoder, _row_masks(group, n, p, inputs.inputs_embeds.device)):
                    logits = _suffix_logits(decoder, base, inputs, p, a, len(group))
            except torch.OutOfMemoryError as err:
                raise RuntimeError(
                    f"out of memory with {len(group)} knockouts per forward; pass a smaller batch_size or "
                    "memory_budget_mb (--flow-batch-size / --flow-memory-budget)"
                ) from err
            for i, scored in zip(chunk, _score_logits(logits, watch), strict=True):
                results[i] = scored
            if progress is not None:
                progress(len(group))
    return baseline, results  # type: ignore[return-value]
