"""Generation under knockout: known answers against the letter-scoring engine, plain `generate`, and step-by-step
full forwards without a KV cache (the authors' convention for new tokens made explicit as a mask)."""

from __future__ import annotations

import pytest
import torch
from test_engine import vlm_lm_inputs
from tiny import VOCAB, text_prompt, tiny_llama, tiny_llava_next_video, video_prompt

from flowcheck.edges import blocked_mask, paper_conditions
from flowcheck.engine import LMInputs, embed_text, find_decoder, knockout_plan, last_logits, score, score_plain
from flowcheck.engine.generate import generate_under_knockout, inherit_last_row
from flowcheck.engine.scoring import Knockout
from flowcheck.models.decoder import UnsupportedModelError

NEW = 6


def setup_vlm():
    model, prompt = tiny_llava_next_video(layers=4), video_prompt()
    return model, prompt, vlm_lm_inputs(model, prompt), find_decoder(model)


def extended(decoder, inputs: LMInputs, tokens: list[int]) -> LMInputs:
    """The prompt followed by `tokens` as one input (teacher forcing), positions 0..m-1."""
    with torch.no_grad():
        more = decoder.input_embeddings()(torch.tensor([tokens], dtype=torch.long))
    embeds = torch.cat([inputs.inputs_embeds, more], dim=1)
    return LMInputs(embeds, torch.arange(embeds.shape[1])[None])


def inherited_mask(n: int, rects, m: int) -> torch.Tensor:
    """The authors' convention written out: rows >= n copy the last prompt row over the prompt keys."""
    mask = torch.zeros(m, m, dtype=torch.bool)
    mask[:n, :n] = blocked_mask(n, rects)
    mask[n:, :n] = mask[n - 1, :n]
    return mask


def uncached_greedy(decoder, inputs: LMInputs, plan_of_length, steps: int) -> tuple[list[int], torch.Tensor]:
    """Greedy decoding by one full forward per step (no KV cache); `plan_of_length(m)` gives the knockout plan.
    Returns the tokens and each step's logits [steps, vocab]."""
    tokens: list[int] = []
    logits = []
    for _ in range(steps):
        ext = extended(decoder, inputs, tokens) if tokens else inputs
        with knockout_plan(decoder, plan_of_length(ext.n)):
            logits.append(last_logits(decoder, ext)[0])
        tokens.append(int(logits[-1].argmax()))
    return tokens, torch.stack(logits)


def test_first_token_distribution_equals_letter_scoring_engine():
    _model, prompt, inputs, decoder = setup_vlm()
    rects = paper_conditions()["cross_frame"].rectangles(prompt.layout)
    layers = range(decoder.num_layers // 2)
    generated = generate_under_knockout(decoder, inputs, dict.fromkeys(layers, rects), max_new_tokens=2)
    ko = Knockout("cross_frame@first_half", dict.fromkeys(layers, tuple(rects)))
    vocab = list(range(VOCAB))
    _, (plain,) = score_plain(decoder, inputs, [ko], vocab)
    _, (fast,) = score(decoder, inputs, [ko], vocab, strategy="fast")
    probs = generated.first_probs.double().numpy()
    diff_plain = abs(probs - plain.probs).max()
    diff_fast = abs(probs - fast.probs).max()
    print(f"max |p_generate - p_score_plain| = {diff_plain:.2e}; vs fast = {diff_fast:.2e}")
    assert diff_plain <= 1e-6 and diff_fast <= 1e-6
    assert generated.token_ids[0] == plain.argmax
    base = torch.softmax(last_logits(decoder, inputs)[0], -1).double().numpy()
    assert abs(base - probs).max() > 1e-4  # the knockout does change the distribution: the check is not vacuous


def test_empty_knockout_equals_plain_generate_token_for_token():
    model, _prompt, inputs, decoder = setup_vlm()
    nothing = {key: [] for key in range(decoder.num_layers)}  # every layer through the knockout path, no edge removed
    ours = generate_under_knockout(decoder, inputs, nothing, max_new_tokens=NEW)
    mask = torch.ones(inputs.inputs_embeds.shape[:2], dtype=torch.long)
    with torch.no_grad():
        plain = model.generate(
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=mask,
            max_new_tokens=NEW,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    assert ours.token_ids == plain.sequences[0].tolist()
    diff = (ours.first_logits - plain.logits[0][0]).abs().max().item()
    print(f"tokens {ours.token_ids}; max |first logits difference| = {diff:.2e}")
    assert diff <= 1e-5


@pytest.mark.parametrize("condition", ["cross_frame", "video->question"])
def test_kv_cache_consistent_with_knockout(condition):
    """generate (prefill + cached decode steps) == one full forward per step with the inherited mask written out."""
    _model, prompt, inputs, decoder = setup_vlm()
    n = inputs.n
    rects = paper_conditions()[condition].rectangles(prompt.layout)
    layers = (0, 1)
    ours = generate_under_knockout(decoder, inputs, dict.fromkeys(layers, rects), max_new_tokens=NEW)
    reference, logits = uncached_greedy(
        decoder, inputs, lambda m: dict.fromkeys(layers, inherited_mask(n, rects, m)), NEW
    )
    baseline = generate_under_knockout(decoder, inputs, None, max_new_tokens=NEW)
    diff = (ours.logits - logits).abs().max().item()
    print(
        f"{condition}: knockout {ours.token_ids} reference {reference} baseline {baseline.token_ids}; "
        f"max |logits - uncached reference| over {NEW} steps = {diff:.2e}"
    )
    assert ours.token_ids == reference
    assert diff <= 1e-5


def test_last_to_last_at_one_layer_changes_only_what_it_should():
    """Blocking last->last at one layer: the prompt's other positions and the layers below are untouched; the
    last position and every new token (which inherits the last row) lose key n-1 at that layer only."""
    _model, prompt, inputs, decoder = setup_vlm()
    n, layer = inputs.n, 1
    last = prompt.layout.last
    plan = {layer: [(last, last)]}
    caches = {}
    for name, p in (("base", {}), ("knocked", plan)):
        with knockout_plan(decoder, {k: inherit_last_row(v, n) for k, v in p.items()}), torch.no_grad():
            out = decoder.module(**inputs.kwargs(), attention_mask=torch.ones(1, n, dtype=torch.long), use_cache=True)
        caches[name] = out.past_key_values
    diffs = []
    for i in range(decoder.num_layers):
        kb, vb = caches["base"].layers[i].keys, caches["base"].layers[i].values
        kk, vk = caches["knocked"].layers[i].keys, caches["knocked"].layers[i].values
        diffs.append(
            max((kb[..., : n - 1, :] - kk[..., : n - 1, :]).abs().max(), (vb - vk)[..., : n - 1, :].abs().max())
        )
        last_diff = max((kb - kk)[..., n - 1, :].abs().max(), (vb - vk)[..., n - 1, :].abs().max())
        if i <= layer:  # keys/values of layer i are computed from the residual entering it: changed only above
            assert last_diff == 0, f"layer {i}: the last position's cache changed below the knocked-out layer"
        else:
            assert last_diff > 0, f"layer {i}: the last position's cache should differ above layer {layer}"
    print(f"max |cache difference| over positions < n-1, all layers: {max(diffs):.2e}")
    assert max(diffs) == 0
    ours = generate_under_knockout(decoder, inputs, plan, max_new_tokens=NEW)
    base = generate_under_knockout(decoder, inputs, None, max_new_tokens=NEW)
    assert (ours.first_logits - base.first_logits).abs().max() > 1e-4  # the last row did change
    reference, logits = uncached_greedy(decoder, inputs, lambda m: {layer: inherited_mask(n, [(last, last)], m)}, NEW)
    diff = (ours.logits - logits).abs().max().item()
    assert ours.token_ids == reference and diff <= 1e-5
    # new rows inherit "no key n-1" at `layer` (not "no key of their own"): the other reading of "last->last" for
    # new tokens gives other logits from the second step on, so the check above can tell the two apart
    _, diagonal = uncached_greedy(
        decoder,
        inputs,
        lambda m: {layer: torch.eye(m, dtype=torch.bool) & (torch.arange(m) >= n - 1)[:, None]},
        NEW,
    )
    other = (diagonal[1:] - logits[1:]).abs().max().item()
    print(f"last->last@{layer}: max |logits - reference| = {diff:.2e}; other convention differs by {other:.2e}")
    assert other > 1e-4


def test_text_model_and_refusals():
    model = tiny_llama(layers=2)
    decoder = find_decoder(model)
    prompt = text_prompt()
    inputs = embed_text(decoder, prompt.input_ids)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_under_knockout(decoder, inputs, None, max_new_tokens=0)
    with pytest.raises(ValueError, match="tokenizer"):
        generate_under_knockout(decoder, inputs, None, stop_strings=["."])
    rope3d = LMInputs(inputs.inputs_embeds, torch.arange(inputs.n)[None, None].expand(3, 1, inputs.n))
    with pytest.raises(UnsupportedModelError, match="rotary"):
        generate_under_knockout(decoder, rope3d, None)
    assert len(generate_under_knockout(decoder, inputs, None, max_new_tokens=3).token_ids) <= 3


class _SpaceJoined:
    """A stand-in tokenizer: ids decode to their decimal numbers joined by spaces."""

    def decode(self, ids):
        return " ".join(str(i) for i in ids)


def test_stop_strings_end_generation_on_the_decoded_text():
    decoder = find_decoder(tiny_llama(layers=2))
    inputs = embed_text(decoder, text_prompt().input_ids)
    free = generate_under_knockout(decoder, inputs, None, max_new_tokens=4, eos_token_ids=[VOCAB + 1])
    assert free.stopped == "max_new_tokens" and len(free.token_ids) == 4
    stop = f"{free.token_ids[0]} {free.token_ids[1]}"
    cut = generate_under_knockout(
        decoder,
        inputs,
        None,
        max_new_tokens=4,
        eos_token_ids=[VOCAB + 1],
        stop_strings=[stop],
        tokenizer=_SpaceJoined(),
    )
    assert cut.token_ids == free.token_ids[:2] and cut.stopped == "stop_string"
