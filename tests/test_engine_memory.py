"""Memory at real scale, by formula and on the meta device (no timing, no GPU): a 7B-shaped model fits."""

from __future__ import annotations

import pytest
import torch
from test_engine_fast import setup
from transformers import LlamaConfig, LlamaForCausalLM

from flowcheck.edges import make_window, paper_conditions
from flowcheck.engine import condition_knockout
from flowcheck.engine.batching import CUDA_FREE_FRACTION, MemoryModel, default_budget_bytes, rows_for_budget
from flowcheck.engine.fast import BaselinePass, _row_masks, _shared

GIB = 2**30
H100 = 80 * GIB  # device memory of one H100 (H200: 141 GB)
CUDA_CONTEXT = 1 * GIB  # CUDA context and allocator slack, kept out of "free"


def seven_b() -> LlamaConfig:
    """The language model of LLaVA-NeXT-Video-7B (Vicuna-7B: Llama, 32 layers, hidden 4096, 32 heads)."""
    return LlamaConfig(
        vocab_size=32064,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=8192,
    )


def test_state_formula_equals_the_baseline_tensors():
    decoder, _, inputs = setup("llama")
    base = BaselinePass(decoder, inputs)
    held = sum(k.nbytes + v.nbytes for k, v in base.layers) + sum(h.nbytes for h in base.hidden)
    assert MemoryModel.of(decoder.config, inputs.n, decoder.dtype).state == held


def test_row_masks_hold_one_layer_of_rows_at_a_time():
    decoder, prompt, inputs = setup("llama")
    n = inputs.n
    knockouts = [condition_knockout(c, make_window(4, 1, 3), prompt.layout) for c in paper_conditions().values()]
    p = min(ko.earliest_query(n) for ko in knockouts)
    masks = _row_masks(knockouts, n, p, torch.device("cpu"))
    built = masks[1].build(n, torch.device("cpu"))
    assert built.shape == (len(knockouts), n - p, n) and built.dtype == torch.bool
    per_row = MemoryModel.of(decoder.config, n, decoder.dtype).per_row(n - p, shared=False)
    assert built.nbytes / len(knockouts) <= per_row


@pytest.mark.parametrize("n", [1270, 8000])
def test_seven_b_sweep_fits_an_80_gb_device(monkeypatch, n):
    config = seven_b()
    with torch.device("meta"):
        weights = sum(p.numel() for p in LlamaForCausalLM(config).parameters()) * 2  # bf16
    assert 6.5e9 < weights / 2 < 7.0e9  # really 7B-shaped
    memory = MemoryModel.of(config, n, torch.bfloat16)
    free = H100 - CUDA_CONTEXT - weights - memory.state
    assert free > 0.5 * H100 - weights  # the baseline's keys, values and residuals leave most of the device free
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, H100))
    budget = default_budget_bytes(memory, torch.device("cuda"), floor_mb=64)
    assert budget == CUDA_FREE_FRACTION * free
    # the largest recomputation (every position after the first: a knockout from position 1) fits one row
    assert memory.per_row(n - 1, shared=False) <= budget
    # every "-> last" knockout of the sweep (6 conditions x 32 windows) shares one forward of one position
    assert _shared(n, n - 1, memory.head_dim)
    assert rows_for_budget(memory, 1, True, budget) >= 6 * 32
    # question-level suffixes (question, options, answer prompt: about 100 positions) batch widely
    assert not _shared(n, n - 100, memory.head_dim)
    # with the fused two-piece kernels (CPU) they share the prefix too, and only the additive masks scale with rows
    assert _shared(n, n - 100, memory.head_dim, flash=True) and not _shared(n, 100, memory.head_dim, flash=True)
    assert memory.per_row(100, True, flash=True) < memory.per_row(100, False) / 4
    assert rows_for_budget(memory, 100, False, budget) >= 32
    for q in (1, 100, n // 2, n - 1):
        shared = _shared(n, n - q, memory.head_dim)
        rows = rows_for_budget(memory, q, shared, budget)
        assert rows * memory.per_row(q, shared) <= budget
