"""The fast strategy: prefix reuse, layer reuse and batched knockouts, exact up to kernel numerics.

A knockout whose earliest changed query is p and whose first layer is a leaves every position < p
unchanged at every layer, and every position unchanged before layer a. So one baseline forward
keeps the KV cache and the residual stream entering every layer; each knockout then recomputes
only positions >= p, only in layers >= a: the decoder runs on the suffix with a cache holding the
baseline keys and values of the prefix, starting from the cached residual at layer a (layers
before it are bypassed). Knockouts with the same p run together as batch rows, each row with its own
blocked mask, from the earliest first layer among them (staggered batching, `flowcheck.engine.batching`),
in batches bounded by a memory budget; an out-of-memory error halves the batch and retries. Short
suffixes read the prefix's keys and values once for all rows (`flowcheck.engine.prefix_attention`)
instead of a copy per row.

Before trusting the shortcut on a model, a self-check reruns the last position with no knockout
from layer 0 and from the middle layer; if either differs from the baseline (a family whose
decoder does something this strategy does not reproduce), scoring falls back to the plain strategy.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicLayer

from flowcheck.engine import prefix_attention
from flowcheck.engine.attention import LazyMask, last_query_only, materialize
from flowcheck.engine.batching import MemoryModel, default_budget_bytes, plan_batches, rows_for_budget
from flowcheck.engine.knockout import knockout_plan
from flowcheck.engine.scoring import Knockout, Scored, as_spec, no_padding, score_logits, score_plain
from flowcheck.models.decoder import Decoder, LMInputs

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


class BaselinePass:
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
        self.last_only = False  # set by `FastScorer` after `self_check_last_position`

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
        shared = prefix_attention.current()
        if shared is not None:  # the attention function reads the prefix from the hand-over, once for all rows
            shared.offer(self.keys, self.values)
            return key_states, value_states
        rows = key_states.shape[0]
        keys = self.keys.expand(rows, *self.keys.shape[1:])
        values = self.values.expand(rows, *self.values.shape[1:])
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)


@contextmanager
def last_position_only(decoder: Decoder) -> Iterator[None]:
    """The last decoder layer computes its output at the last position only (the others' are left meaningless).

    The logits read the last position of the last layer only, and that layer's other positions feed nothing
    else: its attention attends for the last query only (`attention.last_query_only`; it still projects every
    position's keys and values), and its MLP (`layer.mlp`, when the layer has one) runs on the last position,
    its [B, 1, hidden] output broadcast onto the residual of all positions. Used only where `self_check`
    showed that it reproduces the baseline on this model (`BaselinePass.last_only`).
    """

    def last(_module, args):
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 3 and args[0].shape[1] > 1:
            return (args[0][:, -1:], *args[1:])
        return None

    mlp = getattr(decoder.layers[-1], "mlp", None)
    handle = mlp.register_forward_pre_hook(last) if isinstance(mlp, nn.Module) else None
    try:
        with last_query_only(decoder.attention[-1]):
            yield
    finally:
        if handle is not None:
            handle.remove()


def _suffix_logits(
    decoder: Decoder, base: BaselinePass, inputs: LMInputs, p: int, a: int, rows: int, shared: bool = False
) -> torch.Tensor:
    """Last-position logits of `rows` copies of positions >= p recomputed from layer a (under any active knockout).

    `shared`: attend to the prefix once for all rows (shared-prefix mode) instead of a copy per row. Where
    `base.last_only`, the last layer computes the last position only (`last_position_only`).
    """
    suffix = inputs.suffix(p, a, rows)
    hidden = base.hidden[a][:, p:]
    # a copy: some decoders update hidden states in place (Qwen3-VL's deepstack), which must not reach the baseline
    hidden = hidden.clone() if rows == 1 else hidden.expand(rows, *hidden.shape[1:]).clone()
    kwargs = {**suffix.kwargs(), "inputs_embeds": hidden}
    cache = base.prefix_cache(decoder, p, rows)
    mask = torch.ones(rows, inputs.n, dtype=torch.long, device=hidden.device)
    with bypass_layers(decoder, a), last_position_only(decoder) if base.last_only else nullcontext():
        if shared:
            # every layer's attention must run through flowcheck's function to read the prefix
            with knockout_plan(decoder, {}), prefix_attention.shared_prefix():
                out = decoder.module(**kwargs, attention_mask=mask, cache=cache, use_cache=True)
        else:
            out = decoder.module(**kwargs, attention_mask=mask, cache=cache, use_cache=True)
    return decoder.lm_head(out.last_hidden_state[:, -1])


def self_check(decoder: Decoder, base: BaselinePass, inputs: LMInputs) -> bool:
    """Does the suffix path reproduce the baseline without a knockout?

    From layer 0 with the shared prefix and from the middle layer with per-row prefix copies: the two ways
    batches attend to the prefix.
    """
    tolerance = SELF_CHECK_TOLERANCE.get(decoder.dtype, 1e-2)
    reference = torch.softmax(base.logits.float(), -1)
    for a, shared in ((0, True), (decoder.num_layers // 2, False)):
        try:
            logits = _suffix_logits(decoder, base, inputs, inputs.n - 1, a, 1, shared)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as err:  # e.g. an attention module that never read its shared prefix
            warnings.warn(f"flowcheck: fast-engine self-check failed: {err}", stacklevel=3)
            return False
        got = torch.softmax(logits.float(), -1)
        if (got - reference).abs().max().item() > tolerance:
            return False
    return True


def self_check_last_position(decoder: Decoder, base: BaselinePass, inputs: LMInputs) -> bool:
    """Does computing the last layer at the last position only (`last_position_only`) reproduce the baseline?

    Reruns the last few positions from the second-to-last layer, with the prefix shared and copied per row, with
    `base.last_only` set; restores `base.last_only` to False. A failure (different logits or an error) means the
    family's last layer does not tolerate it, and the fast engine computes every position there.
    """
    tolerance = SELF_CHECK_TOLERANCE.get(decoder.dtype, 1e-2)
    reference = torch.softmax(base.logits.float(), -1)
    p, a = max(inputs.n - 4, 1), max(decoder.num_layers - 2, 0)
    base.last_only = True
    try:
        for shared in (True, False):
            logits = _suffix_logits(decoder, base, inputs, p, a, 2, shared)
            if (torch.softmax(logits.float(), -1) - reference).abs().max().item() > tolerance:
                return False
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:
        return False
    finally:
        base.last_only = False
    return True


def _row_masks(group: Sequence[Knockout], n: int, p: int, device) -> dict[int, LazyMask]:
    """Per layer, a lazily stacked [rows, n - p, n] blocked mask of the suffix queries.

    Each knockout's spec is materialised once (a condition knockout uses one spec for all its layers); a
    layer's stack is built when its attention runs, with all-False rows for knockouts without that layer.
    """
    built: dict[int, torch.Tensor] = {}
    per_row: list[dict[int, int]] = []
    for ko in group:
        row = {}
        for layer, spec in ko.plan.items():
            if id(spec) not in built:
                built[id(spec)] = materialize(as_spec(spec), n, device, first_row=p)
            row[layer] = id(spec)
        per_row.append(row)
    empty = torch.zeros(n - p, n, dtype=torch.bool, device=device)

    def stack(layer: int):
        def build(kv_len: int, _device) -> torch.Tensor:
            if kv_len != n:
                raise ValueError(f"a batch's masks are built for {n} keys, the forward has {kv_len}")
            return torch.stack([built[row[layer]] if layer in row else empty for row in per_row])

        return LazyMask(build)

    return {layer: stack(layer) for layer in sorted({layer for ko in group for layer in ko.plan})}


def _shared(n: int, p: int, head_dim: int, flash: bool = False) -> bool:
    """Attend to the prefix once for all rows (shared-prefix mode) instead of a copy per row?

    With the fused two-piece kernels (`prefix_attention.flash_available`: CPU) no score matrix is materialised,
    so sharing pays off whenever the prefix is at least as long as the suffix (the copies it saves are larger
    than the suffix keys). Otherwise a row's copy of the prefix costs 2 x head_dim elements per key and head
    and the two-piece attention several passes over its float32 scores, q per key and head, where sdpa's fused
    kernel needs none: it pays off only for q <= head_dim / 4 (measured on CPU: with q = 44..65 and head_dim 32
    it was slower than copying), and only while the prefix is most of the keys.
    """
    q = n - p
    if flash:
        return q <= p
    return 4 * q <= head_dim and 4 * q <= p


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FastScorer:
    """One sample's baseline forward and self-check, reusable by several `score` calls.

    `ok` is False when the self-check failed (then `score_fast` falls back to the plain strategy).
    `overhead_positions` is the staggering cost model's per-layer overhead in positions, measured here:
    one layer of the self-check's one-position forward over one position-layer of the baseline forward.
    """

    @torch.inference_mode()
    def __init__(self, decoder: Decoder, inputs: LMInputs) -> None:
        self.decoder, self.inputs = decoder, inputs
        self.device = inputs.inputs_embeds.device
        _sync(self.device)
        started = time.perf_counter()
        self.base = BaselinePass(decoder, inputs)
        _sync(self.device)
        checked = time.perf_counter()
        self.ok = self_check(decoder, self.base, inputs)
        _sync(self.device)
        n, layers = inputs.n, decoder.num_layers
        per_layer_one = (time.perf_counter() - checked) / (layers + layers - layers // 2)
        per_position_layer = max(checked - started, 1e-9) / (n * layers)
        self.overhead_positions = min(float(n), per_layer_one / per_position_layer)
        if self.ok:
            self.base.last_only = self_check_last_position(decoder, self.base, inputs)

    @torch.inference_mode()
    def score(
        self,
        knockouts: Sequence[Knockout],
        watch_ids: Sequence[int],
        progress: Callable[[int], None] | None = None,
        batch_size: int | None = None,
        memory_budget_mb: float | None = None,
        overhead_positions: float | None = None,
    ) -> tuple[Scored, list[Scored]]:
        """Baseline and knocked-out scores (see `score_fast`); requires `ok`."""
        if not self.ok:
            raise RuntimeError("the fast engine's self-check failed on this model: use the plain strategy")
        decoder, inputs, base, device = self.decoder, self.inputs, self.base, self.device
        watch = torch.as_tensor(list(watch_ids), dtype=torch.long)
        n, layers = inputs.n, decoder.num_layers
        if overhead_positions is None:
            overhead_positions = self.overhead_positions
        baseline = score_logits(base.logits, watch)[0]
        results: list[Scored | None] = [None] * len(knockouts)
        items = []
        for index, ko in enumerate(knockouts):
            p = ko.earliest_query(n)
            if not ko.plan or p >= n:  # nothing changes: the baseline
                results[index] = baseline
                if progress is not None:
                    progress(1)
                continue
            items.append((index, p, ko.first_layer))
        memory = MemoryModel.of(decoder.config, n, decoder.dtype)
        flash = prefix_attention.flash_available(device, decoder.dtype)
        if batch_size:
            max_rows = lambda p: batch_size  # noqa: E731
        else:
            budget = (
                memory_budget_mb * 2**20
                if memory_budget_mb is not None
                else default_budget_bytes(memory, device, MIN_DEFAULT_BUDGET_MB)
            )

            def max_rows(p: int) -> int:
                return rows_for_budget(memory, n - p, _shared(n, p, memory.head_dim, flash), budget, flash)

        cap = [len(knockouts)]  # rows per forward known to fit after an out-of-memory error

        def run(p: int, chunk: Sequence[int]) -> None:
            if len(chunk) > cap[0]:
                size = cap[0]  # fixed here: a retry below may lower cap[0] while the pieces run
                for start in range(0, len(chunk), size):
                    run(p, chunk[start : start + size])
                return
            group = [knockouts[i] for i in chunk]
            a = min(ko.first_layer for ko in group)
            try:
                with knockout_plan(decoder, _row_masks(group, n, p, device)):
                    shared = _shared(n, p, memory.head_dim, flash)
                    logits = _suffix_logits(decoder, base, inputs, p, a, len(group), shared)
            except torch.OutOfMemoryError as err:
                if len(chunk) == 1:
                    raise RuntimeError(
                        "out of memory recomputing a single knockout (one batch row): use a larger device, "
                        "a smaller dtype or a shorter input"
                    ) from err
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                cap[0] = len(chunk) // 2  # halve the batch and retry, and keep later batches at most this large
                warnings.warn(f"flowcheck: out of memory with {len(chunk)} rows; retrying with {cap[0]}", stacklevel=2)
                run(p, sorted(chunk, key=lambda i: knockouts[i].first_layer))
                return
            for i, scored in zip(chunk, score_logits(logits, watch), strict=True):
                results[i] = scored
            if progress is not None:
                progress(len(group))

        for batch in plan_batches(items, n, layers, max_rows, overhead_positions):
            run(batch.start, batch.indices)
        return baseline, results  # type: ignore[return-value]


@torch.inference_mode()
def score_fast(
    decoder: Decoder,
    inputs: LMInputs,
    knockouts: Sequence[Knockout],
    watch_ids: Sequence[int],
    progress: Callable[[int], None] | None = None,
    batch_size: int | None = None,
    memory_budget_mb: float | None = None,
    overhead_positions: float | None = None,
) -> tuple[Scored, list[Scored]]:
    """Same results as `score_plain`, recomputing only what each knockout can change.

    `batch_size` fixes the rows per forward; otherwise they follow `memory_budget_mb` (default: see
    `batching.default_budget_bytes`). `overhead_positions` is the staggering cost model's per-layer overhead in
    positions (`batching.plan_batches`); by default it is measured on this sample (`FastScorer`). Neither
    changes the numbers, only how knockouts are batched.
    """
    scorer = FastScorer(decoder, inputs)
    if not scorer.ok:
        warnings.warn(
            f"flowcheck: the fast engine could not reproduce {type(decoder.module).__name__}'s baseline from its "
            "cache; falling back to one full forward per knockout",
            stacklevel=2,
        )
        return score_plain(decoder, inputs, knockouts, watch_ids, progress=progress)
    return scorer.score(knockouts, watch_ids, progress, batch_size, memory_budget_mb, overhead_positions)
