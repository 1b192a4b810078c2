"""The knockout engine: known answers, locality, the authors' reference, restoration, refusals."""

from __future__ import annotations

import pytest
import torch
from reference_authors import authors_last_probs
from tiny import VOCAB, text_prompt, tiny_llama, tiny_llava_next_video, tiny_qwen2, video_prompt

from flowcheck.edges import make_window, paper_conditions
from flowcheck.engine import (
    Knockout,
    LMInputs,
    UnsupportedModelError,
    condition_knockout,
    embed_text,
    find_decoder,
    knockout,
    score_plain,
)


def vlm_lm_inputs(model, prompt) -> LMInputs:
    """The merged embeddings the VLM hands its language model (captured with a hook)."""
    captured = {}

    def grab(_module, _args, kwargs):
        captured["embeds"] = kwargs["inputs_embeds"].detach().clone()

    decoder = find_decoder(model)
    hook = decoder.module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=prompt.input_ids, **prompt.video_inputs)
    finally:
        hook.remove()
    n = prompt.input_ids.shape[1]
    return LMInputs(captured["embeds"], torch.arange(n)[None])


def lm_inputs_for(name: str):
    if name == "llava_next_video":
        model, prompt = tiny_llava_next_video(), video_prompt()
        return model, prompt, vlm_lm_inputs(model, prompt)
    model = tiny_llama() if name == "llama" else tiny_qwen2()
    prompt = text_prompt()
    return model, prompt, embed_text(find_decoder(model), prompt.input_ids)


def all_logits(decoder, inputs: LMInputs) -> torch.Tensor:
    with torch.no_grad():
        mask = torch.ones(inputs.inputs_embeds.shape[:2], dtype=torch.long)
        hidden = decoder.module(**inputs.kwargs(), attention_mask=mask, use_cache=False).last_hidden_state
        return decoder.lm_head(hidden)[0]


@pytest.mark.parametrize("name", ["llama", "qwen2", "llava_next_video"])
def test_blocking_keys_everywhere_equals_deleting_them(name):
    model, prompt, inputs = lm_inputs_for(name)
    decoder = find_decoder(model)
    layout = prompt.layout
    removed = [*layout.frames[1].positions(), *layout.question_only.positions()]
    keep = [i for i in range(layout.n) if i not in removed]
    with knockout(model, [(range(layout.n), removed)], range(decoder.num_layers)):
        knocked = all_logits(decoder, inputs)[keep]
    deleted = all_logits(decoder, LMInputs(inputs.inputs_embeds[:, keep], inputs.position_ids[:, keep]))
    assert (knocked - deleted).abs().max().item() <= 1e-5
    # and the knockout really changed something relative to the unblocked model
    assert (all_logits(decoder, inputs)[keep] - knocked).abs().max().item() > 1e-3


def test_knockout_through_the_full_vlm_forward_matches_the_decoder_path():
    model, prompt, inputs = lm_inputs_for("llava_next_video")
    decoder = find_decoder(model)
    video, question = prompt.layout.video, prompt.layout.question
    with knockout(model, [(question, video)], [1, 2]), torch.no_grad():
        full = model(input_ids=prompt.input_ids, **prompt.video_inputs).logits[0]
        via_decoder = all_logits(decoder, inputs)
    assert (full - via_decoder).abs().max().item() <= 1e-5


def test_only_blocked_query_rows_change_and_earlier_rows_are_bit_identical():
    model = tiny_llama()
    decoder = find_decoder(model)
    prompt = text_prompt()
    inputs = embed_text(decoder, prompt.input_ids)
    queries, keys = [20, 22], [3, 4, 5]
    outputs = {}

    def record(tag):
        def hook(_module, _args, output):
            outputs[tag] = output[0].detach().clone()

        return hook

    handle = decoder.attention[1].register_forward_hook(record("base"))
    base_logits = all_logits(decoder, inputs)
    handle.remove()
    handle = decoder.attention[1].register_forward_hook(record("ko"))
    with knockout(model, [(queries, keys)], [1]):
        ko_logits = all_logits(decoder, inputs)
    handle.remove()

    changed = (outputs["base"][0] != outputs["ko"][0]).any(dim=-1).nonzero().flatten().tolist()
    assert changed == queries
    assert torch.equal(base_logits[: queries[0]], ko_logits[: queries[0]])
    assert not torch.equal(base_logits[queries[0]], ko_logits[queries[0]])


@pytest.mark.parametrize("name", ["llama", "llava_next_video"])
def test_engine_matches_the_authors_reference_for_all_eleven_conditions(name):
    model, prompt, inputs = lm_inputs_for(name)
    decoder = find_decoder(model)
    layout = prompt.layout
    conditions = list(paper_conditions().values())
    assert len(conditions) == 11
    windows = [make_window(decoder.num_layers, c, width=3) for c in (0, 2, decoder.num_layers - 1)]
    knockouts = [condition_knockout(c, w, layout) for c in conditions for w in windows]
    watch = list(range(VOCAB))
    base, results = score_plain(decoder, inputs, knockouts, watch)
    forward_kwargs = {"input_ids": prompt.input_ids, **prompt.video_inputs}
    ref_base = authors_last_probs(model, forward_kwargs, [], [])
    assert abs(ref_base[base.argmax].item() - base.argmax_prob) <= 1e-5
    i = 0
    for condition in conditions:
        pairs = [(q.positions(), k.positions()) for q, k in condition.rectangles(layout)]
        for window in windows:
            ref = authors_last_probs(model, forward_kwargs, pairs, window.layers)
            got = results[i]
            assert abs(ref[base.argmax].item() - got.probs[base.argmax]) <= 1e-5
            assert float((ref[watch].double() - torch.from_numpy(got.probs)).abs().max()) <= 1e-5, (
                condition.name,
                window,
            )
            assert int(ref.argmax()) == got.argmax
            i += 1


def test_model_is_unchanged_after_exit_and_after_an_exception():
    model = tiny_llama()
    decoder = find_decoder(model)
    inputs = embed_text(decoder, text_prompt().input_ids)
    before = all_logits(decoder, inputs)
    implementation = model.config._attn_implementation
    with knockout(model, [(range(10, 20), range(0, 5))], range(4)):
        assert not torch.equal(all_logits(decoder, inputs), before)
    assert torch.equal(all_logits(decoder, inputs), before)
    with pytest.raises(RuntimeError, match="boom"), knockout(model, [(range(10, 20), range(0, 5))], range(4)):
        raise RuntimeError("boom")
    assert torch.equal(all_logits(decoder, inputs), before)
    assert model.config._attn_implementation == implementation
    assert not decoder.module._forward_hooks and not decoder.module._forward_pre_hooks


def test_nested_contexts_add_their_edges():
    model = tiny_llama()
    decoder = find_decoder(model)
    inputs = embed_text(decoder, text_prompt().input_ids)
    a, b = [(range(15, 30), range(2, 6))], [(range(20, 30), range(8, 12))]
    with knockout(model, a, [0, 1]), knockout(model, b, [1, 2]):
        nested = all_logits(decoder, inputs)
    with knockout(model, a, [0]), knockout(model, a + b, [1]), knockout(model, b, [2]):
        combined = all_logits(decoder, inputs)
    assert torch.equal(nested, combined)


def test_boolean_tensor_and_per_row_masks_match_position_pairs():
    model = tiny_llama()
    decoder = find_decoder(model)
    inputs = embed_text(decoder, text_prompt().input_ids)
    n = inputs.n
    pairs = [(range(12, n), range(3, 9))]
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[12:, 3:9] = True
    with knockout(model, pairs, [1, 2]):
        from_pairs = all_logits(decoder, inputs)
    with knockout(model, mask, [1, 2]):
        from_mask = all_logits(decoder, inputs)
    assert torch.equal(from_pairs, from_mask)
    # one mask per batch row: row 0 unblocked, row 1 blocked
    batch = LMInputs(inputs.inputs_embeds.expand(2, -1, -1), inputs.position_ids.expand(2, -1))
    per_row = torch.stack([torch.zeros_like(mask), mask])
    with knockout(model, per_row, [1, 2]), torch.no_grad():
        out = decoder.lm_head(decoder.module(**batch.kwargs()).last_hidden_state)
    assert (out[0] - all_logits(decoder, inputs)).abs().max() <= 1e-5
    assert (out[1] - from_mask).abs().max() <= 1e-5

    # the rows of the last positions only ([r, n]): what the fast engine passes for a suffix forward
    with knockout(model, mask[12:], [1, 2]):
        from_suffix_rows = all_logits(decoder, inputs)
    assert torch.equal(from_suffix_rows, from_mask)
    with pytest.raises(ValueError, match="last rows"), knockout(model, mask[12:, :-1], [1, 2]):
        all_logits(decoder, inputs)


def test_bf16_knockout_tracks_fp32():
    model = tiny_llama()
    decoder = find_decoder(model)
    prompt = text_prompt()
    knockouts = [Knockout("v->q", {layer: [(prompt.layout.question, prompt.layout.video)] for layer in range(4)})]
    watch = list(range(128))
    base32, ko32 = score_plain(decoder, embed_text(decoder, prompt.input_ids), knockouts, watch)
    model.to(torch.bfloat16)
    base16, ko16 = score_plain(decoder, embed_text(decoder, prompt.input_ids), knockouts, watch)
    assert abs(ko16[0].probs - ko32[0].probs).max() < 2e-3
    assert abs(base16.probs - base32.probs).max() < 2e-3
    assert abs(ko32[0].probs - base32.probs).max() > 1e-4


def test_refuses_hybrid_models_with_a_clear_error():
    from transformers import Lfm2Config, Lfm2ForCausalLM

    config = Lfm2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        layer_types=["conv", "full_attention"],
    )
    with pytest.raises(UnsupportedModelError, match="non-attention"):
        find_decoder(Lfm2ForCausalLM(config))


def test_refuses_attention_that_bypasses_the_attention_interface():
    model = tiny_llama()
    decoder = find_decoder(model)
    attn = decoder.attention[2]
    original = type(attn).forward

    class Bypass(type(attn)):
        def forward(self, hidden_states, position_embeddings, attention_mask=None, **kwargs):
            saved = self.config._attn_implementation
            self.config._attn_implementation = "sdpa"
            try:
                return original(self, hidden_states, position_embeddings, attention_mask, **kwargs)
            finally:
                self.config._attn_implementation = saved

    attn.__class__ = Bypass
    inputs = embed_text(decoder, text_prompt().input_ids)
    with (
        pytest.raises(UnsupportedModelError, match=r"layer\(s\) \[2\]"),
        knockout(model, [([30], [1])], [1, 2]),
    ):
        all_logits(decoder, inputs)


def test_layers_out_of_range_are_refused():
    model = tiny_llama(layers=2)
    with pytest.raises(ValueError, match=r"layers 0\.\.1"), knockout(model, [([3], [1])], [2]):
        pass


def test_materialize_builds_only_the_rows_from_first_row_on():
    from flowcheck.engine.attention import materialize

    n = 20
    pairs = [(range(3, 15), range(0, 4)), ([2, 9, 17], [5, 6]), (slice(12, 20), slice(10, 12)), (range(0, 5), [1])]
    full = materialize(pairs, n, torch.device("cpu"))
    assert int(full.sum()) == 12 * 4 + 3 * 2 + 8 * 2 + 5 - 2  # (3, 1) and (4, 1) are in the first block too
    for first in (0, 1, 7, 12, 19):
        assert torch.equal(materialize(pairs, n, torch.device("cpu"), first_row=first), full[first:])
        assert torch.equal(materialize(full, n, torch.device("cpu"), first_row=first), full[first:])
