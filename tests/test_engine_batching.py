"""Staggered batching, the shared-prefix attention, out-of-memory retries and the FlexAttention backend."""

from __future__ import annotations

import pytest
import torch
from test_engine_fast import WATCH, assert_same, setup

from flowcheck.edges import make_window, paper_conditions
from flowcheck.engine import condition_knockout, prefix_attention, score
from flowcheck.engine import fast as fast_module
from flowcheck.engine.batching import Batch, plan_batches
from flowcheck.engine.prefix_attention import flash_two_piece, matmul_two_piece, shared_prefix_attention

LAST = ["video->last", "question->last", "last->last"]
QUESTION = ["video->question", "question_only->true_option"]


def test_plan_batches_by_hand():
    # four knockouts recomputing position 10 of n = 11 (one position), first layers 0, 0, 3, 5 of 8
    items = [(0, 10, 0), (1, 10, 3), (2, 10, 0), (3, 10, 5)]
    unlimited = lambda p: 99  # noqa: E731
    # no per-forward overhead: never recompute a layer a row does not need (one forward per first layer)
    assert plan_batches(items, 11, 8, unlimited, 0.0) == [Batch(10, 0, (0, 2)), Batch(10, 3, (1,)), Batch(10, 5, (3,))]
    # overhead dominates: one forward from the earliest first layer
    assert plan_batches(items, 11, 8, unlimited, 1e6) == [Batch(10, 0, (0, 2, 1, 3))]
    # ... split by the row limit, in order of first layer
    assert plan_batches(items, 11, 8, lambda p: 2, 1e6) == [Batch(10, 0, (0, 2)), Batch(10, 3, (1, 3))]
    # overhead 2 positions per layer: merging row 1 (layer 3) into the layer-0 forward costs 3 extra
    # position-layers, saving a forward of 5 layers x 2 = 10; row 3 likewise (5 extra vs 3 x 2 = 6)
    assert plan_batches(items, 11, 8, unlimited, 2.0) == [Batch(10, 0, (0, 2, 1, 3))]
    # with a 5-position suffix the extra layers cost 5x more: row 3 (25 extra vs 6) gets its own forward,
    # row 1 (3 x 5 = 15 extra vs 10 saved) too
    assert plan_batches([(i, 6, a) for i, _, a in items], 11, 8, unlimited, 2.0) == [
        Batch(6, 0, (0, 2)),
        Batch(6, 3, (1,)),
        Batch(6, 5, (3,)),
    ]
    # different suffixes never share a forward
    assert plan_batches([(0, 10, 0), (1, 9, 0)], 11, 8, unlimited, 1e6) == [Batch(9, 0, (1,)), Batch(10, 0, (0,))]


def _knockouts(prompt, layers, names):
    windows = [make_window(layers, c, 1) for c in range(layers)] + [make_window(layers, 1, 3)]
    return [condition_knockout(paper_conditions()[c], w, prompt.layout) for c in names for w in windows]


@pytest.mark.parametrize("overhead", [0.0, 1e9])
def test_staggered_batches_equal_plain(monkeypatch, overhead):
    decoder, prompt, inputs = setup("llama")
    calls = []
    original = fast_module._suffix_logits

    def spy(decoder, base, inputs, p, a, rows, shared=False):
        calls.append((inputs.n - p, a, rows, shared))
        return original(decoder, base, inputs, p, a, rows, shared)

    monkeypatch.setattr(fast_module, "_suffix_logits", spy)
    knockouts = _knockouts(prompt, decoder.num_layers, LAST + QUESTION)
    base, fast = score(decoder, inputs, knockouts, WATCH, strategy="fast", overhead_positions=overhead)
    _, plain = score(decoder, inputs, knockouts, WATCH, strategy="plain")
    for ko, a, b in zip(knockouts, plain, fast, strict=True):
        assert abs(a.probs - b.probs).max() <= 1e-5, ko.key
    assert sum(abs(r.probs - base.probs).max() > 1e-4 for r in plain) > len(plain) // 3  # not vacuous
    batches = calls[4:]  # after the self-check forwards (two of the baseline, two of the last-position shortcut)
    suffixes = {ko.earliest_query(inputs.n) for ko in knockouts}
    if overhead:  # every "-> last" knockout (3 conditions x 5 windows) in one forward of one position from layer 0
        assert (1, 0, 15, True) in batches
        assert len(batches) == len(suffixes)
    else:  # one forward per (suffix, first layer)
        assert len(batches) == len({(ko.earliest_query(inputs.n), ko.first_layer) for ko in knockouts})


def _two_piece_case(rows, heads, kv_heads, p, s, d, seed=0):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(rows, heads, s, d, generator=gen)
    prefix = torch.randn(1, kv_heads, p, d, generator=gen), torch.randn(1, kv_heads, p, d, generator=gen)
    key, value = torch.randn(rows, kv_heads, s, d, generator=gen), torch.randn(rows, kv_heads, s, d, generator=gen)
    allowed = torch.rand(rows, 1, s, p + s, generator=gen) > 0.3
    allowed[..., 0] = True  # every query reads something
    allowed[0, 0, 0, :p] = False  # a query that reads only its own suffix
    allowed[0, 0, 0, p] = True
    if s > 1:
        allowed[-1, 0, -1, p:] = False  # a query that reads only the prefix
    full_k = torch.cat([prefix[0].expand(rows, -1, -1, -1), key], dim=-2).repeat_interleave(heads // kv_heads, 1)
    full_v = torch.cat([prefix[1].expand(rows, -1, -1, -1), value], dim=-2).repeat_interleave(heads // kv_heads, 1)
    reference = torch.nn.functional.scaled_dot_product_attention(query, full_k, full_v, attn_mask=allowed, scale=0.3)
    return (query, prefix, key, value, allowed), reference.transpose(1, 2)


# flash_two_piece attends to the prefix in runs of keys (run overhead 0) or in one masked call (a huge overhead)
RUNS_OR_MASKED = pytest.mark.parametrize("run_overhead", [0, 10**12])


@RUNS_OR_MASKED
@pytest.mark.parametrize("two_piece", [matmul_two_piece, flash_two_piece, shared_prefix_attention])
@pytest.mark.parametrize("shape", [(3, 4, 2, 7, 2, 8), (5, 8, 8, 300, 61, 32), (4, 6, 2, 50, 1, 16)])
def test_shared_prefix_attention_matches_sdpa_over_the_concatenated_keys(monkeypatch, run_overhead, two_piece, shape):
    monkeypatch.setattr(prefix_attention, "RUN_OVERHEAD_PAIRS", run_overhead)
    args, reference = _two_piece_case(*shape)
    got = two_piece(*args, 0.3)
    assert got.shape == reference.shape
    assert torch.allclose(got, reference, atol=2e-6)


@RUNS_OR_MASKED
@pytest.mark.parametrize("two_piece", [matmul_two_piece, flash_two_piece])
def test_two_piece_attention_of_the_last_query_only(monkeypatch, run_overhead, two_piece):
    monkeypatch.setattr(prefix_attention, "RUN_OVERHEAD_PAIRS", run_overhead)
    # the suffix's own keys are all 61 positions, the query only the last: the last row of the full attention
    args, reference = _two_piece_case(5, 8, 2, 300, 61, 32)
    query, prefix, key, value, allowed = args
    got = two_piece(query[..., -1:, :], prefix, key, value, allowed[..., -1:, :], 0.3)
    assert got.shape == (5, 1, 8, 32)
    assert torch.allclose(got, reference[:, -1:], atol=2e-6)


def test_prefix_segments_by_hand():
    # 2 rows x 3 queries over 8 prefix keys; row 0's queries 1-2 may not read keys 2..4 (a knocked-out
    # rectangle), no query reads key 7
    allowed = torch.ones(2, 3, 8, dtype=torch.bool)
    allowed[0, 1:, 2:5] = False
    allowed[..., 7] = False
    runs = prefix_attention.prefix_segments(allowed)
    assert [(a, b) for a, b, _ in runs] == [(0, 2), (2, 5), (5, 7), (7, 8)]
    assert runs[0][2].all() and runs[2][2].all() and not runs[3][2].any()
    assert runs[1][2].tolist() == [[True, False, False], [True, True, True]]


@RUNS_OR_MASKED
@pytest.mark.parametrize("two_piece", [matmul_two_piece, flash_two_piece])
def test_two_piece_attention_with_knocked_out_rectangles(monkeypatch, run_overhead, two_piece):
    monkeypatch.setattr(prefix_attention, "RUN_OVERHEAD_PAIRS", run_overhead)
    # the structure of a question-level knockout: some rows' question queries may not read the video keys
    # (skipped runs of the prefix for those queries), one query reads no prefix key at all
    args, _ = _two_piece_case(4, 8, 4, 200, 30, 32)
    query, prefix, key, value, _ = args
    p, s = 200, 30
    allowed = torch.ones(4, 1, s, p + s, dtype=torch.bool)
    allowed[..., p:] = torch.ones(s, s, dtype=torch.bool).tril()
    allowed[1, 0, 5:12, 40:180] = False
    allowed[3, 0, :, 40:180] = False
    allowed[2, 0, 3, :p] = False
    full_k = torch.cat([prefix[0].expand(4, -1, -1, -1), key], dim=-2).repeat_interleave(2, 1)
    full_v = torch.cat([prefix[1].expand(4, -1, -1, -1), value], dim=-2).repeat_interleave(2, 1)
    reference = torch.nn.functional.scaled_dot_product_attention(query, full_k, full_v, attn_mask=allowed, scale=0.3)
    got = two_piece(query, prefix, key, value, allowed, 0.3)
    assert torch.allclose(got, reference.transpose(1, 2), atol=2e-6)


def test_flash_two_piece_in_bfloat16_is_within_bfloat16_rounding():
    args, reference = _two_piece_case(5, 8, 4, 300, 61, 32)
    query, prefix, key, value, allowed = args
    bf = [t.to(torch.bfloat16) for t in (query, key, value)]
    got = flash_two_piece(bf[0], tuple(t.to(torch.bfloat16) for t in prefix), bf[1], bf[2], allowed, 0.3)
    assert got.dtype == torch.bfloat16
    assert (got.float() - reference).abs().max() < 3e-2  # bfloat16 keeps 8 bits of mantissa


def test_out_of_memory_halves_the_batch_and_retries(monkeypatch):
    decoder, prompt, inputs = setup("llama")
    sizes = []
    original = fast_module._suffix_logits

    def tight(decoder, base, inputs, p, a, rows, shared=False):
        sizes.append(rows)
        if rows > 2:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return original(decoder, base, inputs, p, a, rows, shared)

    monkeypatch.setattr(fast_module, "_suffix_logits", tight)
    knockouts = [condition_knockout(paper_conditions()[c], make_window(4, 3, 1), prompt.layout) for c in LAST]
    knockouts += [condition_knockout(paper_conditions()[c], make_window(4, 2, 1), prompt.layout) for c in LAST]
    with pytest.warns(UserWarning) as record:
        _, fast = score(decoder, inputs, knockouts, WATCH, strategy="fast", overhead_positions=1e9)
    assert [str(w.message) for w in record] == [
        "flowcheck: out of memory with 6 rows; retrying with 3",
        "flowcheck: out of memory with 3 rows; retrying with 1",
    ]
    _, plain = score(decoder, inputs, knockouts, WATCH, strategy="plain")
    for a, b in zip(plain, fast, strict=True):
        assert abs(a.probs - b.probs).max() <= 1e-5
    # self-checks (1, 1; 2, 2 for the last-position shortcut), then 6 rows fail, 3 fail, then rows of at most 1
    # (the cap after two halvings)
    assert sizes[:6] == [1, 1, 2, 2, 6, 3] and set(sizes[6:]) == {1} and len(sizes[6:]) == 6


def test_out_of_memory_with_one_row_is_a_clear_error(monkeypatch):
    decoder, prompt, inputs = setup("llama")
    original = fast_module._suffix_logits
    calls = []

    def never(*args, **kwargs):
        calls.append(1)
        if len(calls) > 4:  # let the self-checks pass
            raise torch.OutOfMemoryError("simulated")
        return original(*args, **kwargs)

    monkeypatch.setattr(fast_module, "_suffix_logits", never)
    knockouts = [condition_knockout(paper_conditions()["last->last"], make_window(4, 3, 1), prompt.layout)]
    with pytest.raises(RuntimeError, match="single knockout"):
        score(decoder, inputs, knockouts, WATCH, strategy="fast")


@pytest.mark.parametrize("strategy", ["plain", "fast"])
def test_flex_backend_equals_sdpa(strategy):
    decoder, prompt, inputs = setup("qwen2")  # grouped-query attention
    names = ["cross_frame", "video->question", "question->last", "last->last"]
    knockouts = [condition_knockout(paper_conditions()[c], make_window(4, 1, 3), prompt.layout) for c in names]
    _, sdpa = score(decoder, inputs, knockouts, WATCH, strategy="plain")
    _, flex = score(decoder, inputs, knockouts, WATCH, strategy=strategy, attention_backend="flex")
    for ko, a, b in zip(knockouts, sdpa, flex, strict=True):
        assert abs(a.probs - b.probs).max() <= 1e-5, ko.key
    assert max(abs(r.probs - sdpa[0].probs).max() for r in sdpa) > 1e-4  # the knockouts differ: not vacuous


def test_unknown_attention_backend_is_refused():
    decoder, _, inputs = setup("llama")
    with pytest.raises(ValueError, match="unknown attention backend 'flash'"):
        score(decoder, inputs, [], WATCH, attention_backend="flash")


def test_staggered_fast_equals_plain_on_a_vlm():
    decoder, prompt, inputs = setup("llava_next_video")
    knockouts = _knockouts(prompt, decoder.num_layers, LAST + QUESTION + ["cross_frame"])
    assert_same(decoder, inputs, knockouts)


def test_shared_prefix_mode_refuses_attention_that_never_reads_the_prefix():
    # attention that does not go through flowcheck's function (here plain sdpa) would silently attend to
    # the suffix only: the second layer's cache hand-over finds the first one unread and raises
    decoder, _, inputs = setup("llama")
    base = fast_module.BaselinePass(decoder, inputs)
    p = inputs.n - 1
    suffix = inputs.suffix(p)
    mask = torch.ones(1, inputs.n, dtype=torch.long)
    assert decoder.config._attn_implementation == "sdpa"
    with (
        pytest.raises(RuntimeError, match="did not read its shared prefix"),
        torch.inference_mode(),
        prefix_attention.shared_prefix(),
    ):
        decoder.module(**suffix.kwargs(), attention_mask=mask, cache=base.prefix_cache(decoder, p, 1))
