"""Attention weights of chosen query rows (flowcheck.engine.attention_weights) against eager attention's
``output_attentions`` on tiny real transformers models, with and without a knockout."""

from __future__ import annotations

import pytest
import torch
from reference_authors import authors_mask
from tiny import text_prompt, tiny_llama, tiny_qwen2

from flowcheck.edges import paper_conditions
from flowcheck.engine import embed_text, find_decoder
from flowcheck.engine.attention_weights import attention_rows, query_row_weights

TOLERANCE = 1e-5


def peaky(model):
    """Scale the query and key projections so that attention is far from uniform (random init is nearly uniform,
    which would make any comparison trivially close)."""
    with torch.no_grad():
        for layer in find_decoder(model).layers:
            layer.self_attn.q_proj.weight.mul_(12.0)
            layer.self_attn.k_proj.weight.mul_(12.0)
    return model


def eager_attentions(model, input_ids, pairs=(), layers=()) -> tuple[torch.Tensor, ...]:
    """Per layer [H, n, n] from eager attention (``output_attentions=True``), with the authors' dense additive mask
    swapped into `layers` when `pairs` are blocked (tests/reference_authors.py)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    n, heads = input_ids.shape[1], model.config.num_attention_heads
    mask = authors_mask(n, heads, list(pairs), torch.float32)

    def swap(_module, args, kwargs):
        kwargs["attention_mask"] = mask
        return args, kwargs

    decoder = find_decoder(model)
    hooks = [decoder.layers[i].self_attn.register_forward_pre_hook(swap, with_kwargs=True) for i in layers]
    try:
        with torch.no_grad():
            out = model(input_ids=input_ids, output_attentions=True)
    finally:
        for hook in hooks:
            hook.remove()
        model.set_attn_implementation(previous)
    return tuple(a[0] for a in out.attentions)


@pytest.mark.parametrize("build", [tiny_llama, tiny_qwen2], ids=["llama-gqa", "qwen2-bias"])
def test_query_rows_match_eager_output_attentions(build):
    model = peaky(build(layers=3))
    prompt = text_prompt()
    decoder = find_decoder(model)
    layout = prompt.layout
    queries = [*layout.question_only.positions(), layout.n - 1]
    eager = eager_attentions(model, prompt.input_ids)
    rows = attention_rows(decoder, embed_text(decoder, prompt.input_ids), queries, range(3), average_heads=False)
    worst = max((rows[layer] - eager[layer][:, queries]).abs().max().item() for layer in range(3))
    print(f"max |flowcheck - eager output_attentions| = {worst:.3g}")
    assert worst <= TOLERANCE
    assert max(eager[layer][:, queries].max().item() for layer in range(3)) > 0.5  # not a uniform softmax
    averaged = attention_rows(decoder, embed_text(decoder, prompt.input_ids), queries, [1])
    assert (averaged[1] - eager[1][:, queries].mean(0)).abs().max().item() <= TOLERANCE


def test_knocked_out_rows_match_eager_with_the_authors_mask():
    model = peaky(tiny_llama(layers=4))
    prompt = text_prompt()
    decoder = find_decoder(model)
    layout = prompt.layout
    rects = paper_conditions()["cross_frame"].rectangles(layout)
    pairs = [(q.positions(), k.positions()) for q, k in rects]
    knocked_layers = [0, 1]
    queries = [*layout.frames[2].positions(), *layout.question_only.positions(), layout.n - 1]
    eager = eager_attentions(model, prompt.input_ids, pairs, knocked_layers)
    plan = {layer: [(q, k) for q, k in rects] for layer in knocked_layers}
    rows = attention_rows(decoder, embed_text(decoder, prompt.input_ids), queries, range(4), plan, False)
    worst = max((rows[layer] - eager[layer][:, queries]).abs().max().item() for layer in range(4))
    print(f"max |flowcheck - eager output_attentions| under cross-frame knockout = {worst:.3g}")
    assert worst <= TOLERANCE
    # frame 2's queries read nothing of frames 0-1 in the knocked-out layers, and do read them afterwards
    earlier = list(range(layout.frames[0].start, layout.frames[2].start))
    frame_rows = list(range(len(layout.frames[2])))
    assert rows[0][:, frame_rows][..., earlier].abs().max().item() == 0.0
    assert rows[3][:, frame_rows][..., earlier].max().item() > 1e-3


def test_query_row_weights_known_answer():
    """Two keys with scores 0 and log 3 (scaling 1): weights 1/4 and 3/4; a blocked key gets 0 and the row
    renormalises; grouped-query heads read their shared key head."""
    query = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]]).expand(1, 2, 2, 2).clone()  # [B=1, H=2, q=2, d=2]
    key = torch.tensor([[[[0.0, 0.0], [torch.log(torch.tensor(3.0)).item(), 0.0]]]])  # [B=1, Hk=1, kv=2, d=2]
    w = query_row_weights(query, key, None, torch.tensor([1]), scaling=1.0)
    assert torch.allclose(w[0, 0, 0], torch.tensor([0.25, 0.75]))
    assert torch.allclose(w[0, 1, 0], torch.tensor([0.5, 0.5]))  # head 1's query is orthogonal to the keys
    allowed = torch.tensor([[True, False], [False, True]])  # query 1 may not read key 0
    w = query_row_weights(query, key, allowed, torch.tensor([0, 1]), scaling=1.0)
    assert torch.equal(w[0, 0, 1], torch.tensor([0.0, 1.0]))
    assert torch.equal(w[0, 0, 0], torch.tensor([1.0, 0.0]))
