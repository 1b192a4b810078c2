"""Generation under knockout: known answers against the letter-scoring engine, plain `generate`, and step-by-step
full forwards without a KV cache (the authors' convention for new tokens made explicit as a mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models.families import save_glm4v, save_qwen2_vl
from test_engine import vlm_lm_inputs
from tiny import VOCAB, text_prompt, tiny_llama, tiny_llava_next_video, video_prompt
from tiny_checkpoint import synthetic_sample

import flowcheck
from flowcheck.data.video import VideoFrames
from flowcheck.edges import Condition, blocked_mask, make_window, paper_conditions
from flowcheck.engine import (
    LMInputs,
    condition_knockout,
    embed_text,
    find_decoder,
    knockout_plan,
    last_logits,
    score,
    score_plain,
)
from flowcheck.engine.generate import generate_under_knockout, inherit_last_row, teacher_forced
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
    unknown_extra = LMInputs(inputs.inputs_embeds, torch.arange(inputs.n)[None], {"token_type_ids": inputs.n})
    with pytest.raises(UnsupportedModelError, match="extend_extra"):
        generate_under_knockout(decoder, unknown_extra, None)
    with pytest.raises(UnsupportedModelError, match="extend_extra"):
        teacher_forced(decoder, unknown_extra, [1, 2])
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


# -- families with multimodal rotary positions (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, GLM-4V) -------------------------------

QWEN_NEW = 8
QWEN_FAMILIES = {
    # key: (checkpoint builder, fps of the synthetic video)
    "qwen2_vl": (lambda d: save_qwen2_vl(d, version="qwen2_vl"), 1.0),
    # 8 frames over 400 s: the video's temporal positions (second_per_grid_ts x tokens_per_second apart) run past
    # the last prompt position, so generate's rule (last + 1) and the rope_deltas rule (max + 1) disagree
    "qwen2_5_vl_long": (lambda d: save_qwen2_vl(d, version="qwen2_5_vl"), 0.02),
    "qwen3_vl": (lambda d: save_qwen2_vl(d, version="qwen3_vl"), 1.0),
    "glm4v": (save_glm4v, 1.0),
}


@pytest.fixture(scope="module", params=sorted(QWEN_FAMILIES))
def qwen(request, tmp_path_factory):
    """(key, adapter, encoded sample, the processor's own model inputs) on a tiny checkpoint of the family."""
    build, fps = QWEN_FAMILIES[request.param]
    adapter = flowcheck.load(str(build(tmp_path_factory.mktemp(request.param))))
    sample, frames = synthetic_sample("action_sequence")
    frames = np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2)  # >= 56 px for the 2x2 merges
    video = VideoFrames.from_array(frames, fps=fps)
    encoded = adapter.encode(sample, video)
    model_inputs = adapter.processor_inputs(adapter.render(sample).text, video, sample)
    return request.param, adapter, encoded, model_inputs


def uncached_greedy_on(decoder, inputs: LMInputs, plan_of_length, steps: int, forced=teacher_forced):
    """`uncached_greedy` with the prompt extended by `forced(decoder, inputs, tokens)` (positions and extras of the
    family) instead of positions 0..m-1."""
    tokens: list[int] = []
    logits = []
    for _ in range(steps):
        ext = forced(decoder, inputs, tokens)
        with knockout_plan(decoder, plan_of_length(ext.n)):
            logits.append(last_logits(decoder, ext)[0])
        tokens.append(int(logits[-1].argmax()))
    return tokens, torch.stack(logits)


def forced_at(rule: str):
    """Teacher forcing with a deliberately chosen position rule for the new tokens on every axis: ``"n+i"`` (the
    text counter), ``"max+1"`` (the rope_deltas rule); the extras as `teacher_forced` extends them."""

    def forced(decoder, inputs: LMInputs, tokens: list[int]) -> LMInputs:
        ext = teacher_forced(decoder, inputs, tokens)
        if not tokens:
            return ext
        start = inputs.n if rule == "n+i" else int(inputs.position_ids.max()) + 1
        new = torch.arange(start, start + len(tokens)).expand(*ext.position_ids.shape[:-1], len(tokens))
        return LMInputs(ext.inputs_embeds, torch.cat([inputs.position_ids, new], -1), ext.extra, ext.suffix_extra)

    return forced


def test_qwen_empty_knockout_equals_the_models_own_generate(qwen):
    """The model's own generate from the processor's outputs (input_ids, pixels, grid; its own 3-D position
    logic) is the independent reference: same tokens, same per-step logits. Wrong positions for the new tokens
    (n+i, or max+1 where that differs from generate's last+1) give other logits: the check is not vacuous."""
    key, adapter, encoded, model_inputs = qwen
    decoder, inputs = adapter.decoder, encoded.inputs
    nothing = {layer: [] for layer in range(decoder.num_layers)}
    ours = generate_under_knockout(decoder, inputs, nothing, max_new_tokens=QWEN_NEW, eos_token_ids=[-1])
    with torch.no_grad():
        own = adapter.model.generate(
            **model_inputs,
            max_new_tokens=QWEN_NEW,
            eos_token_id=[-1],
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    own_logits = torch.stack([step[0] for step in own.logits]).float()
    diff = (ours.logits - own_logits).abs().max().item()
    assert ours.token_ids == own.sequences[0, inputs.n :].tolist()
    assert diff <= 1e-5
    _, forced_logits = uncached_greedy_on(decoder, inputs, lambda m: {}, QWEN_NEW)
    forced_diff = (forced_logits - own_logits).abs().max().item()
    assert forced_diff <= 1e-5  # teacher_forced gives the fed-back tokens generate's positions and extras
    positions = inputs.position_ids
    last, top = positions[..., -1].flatten().tolist(), int(positions.max())
    wrong = {}
    for rule, start in (("n+i", inputs.n), ("max+1", top + 1)):
        if any(start != p + 1 for p in last):
            _, logits = uncached_greedy_on(decoder, inputs, lambda m: {}, QWEN_NEW, forced_at(rule))
            wrong[rule] = (logits - own_logits).abs().max().item()
    print(
        f"{key}: tokens {ours.token_ids}; max |logits - own generate| over {QWEN_NEW} steps = {diff:.2e}, "
        f"teacher-forced = {forced_diff:.2e}; last prompt position {last}, max {top}, n {inputs.n}; "
        f"wrong position rules differ by {wrong}"
    )
    assert all(d > 1e-4 for d in wrong.values())
    if key == "glm4v":  # GLM-4V's prompt positions end at n-1: every rule agrees there
        assert last == [inputs.n - 1] * 3 and not wrong
    else:
        assert "n+i" in wrong
    if key == "qwen2_5_vl_long":
        assert top > last[0] and "max+1" in wrong


def test_qwen_first_step_equals_the_letter_scoring_engine(qwen):
    key, adapter, encoded, _ = qwen
    decoder, inputs = adapter.decoder, encoded.inputs
    rects = paper_conditions()["cross_frame"].rectangles(encoded.layout)
    layers = range(decoder.num_layers // 2)
    generated = generate_under_knockout(decoder, inputs, dict.fromkeys(layers, rects), max_new_tokens=2)
    ko = Knockout("cross_frame@first_half", dict.fromkeys(layers, tuple(rects)))
    vocab = list(range(decoder.input_embeddings().weight.shape[0]))
    _, (plain,) = score_plain(decoder, inputs, [ko], vocab)
    _, (fast,) = score(decoder, inputs, [ko], vocab, strategy="fast")
    probs = generated.first_probs.double().numpy()
    diff_plain, diff_fast = abs(probs - plain.probs).max(), abs(probs - fast.probs).max()
    with knockout_plan(decoder, {layer: rects for layer in layers}):
        forward = last_logits(decoder, inputs)[0]  # score_plain's forward, compared as logits (sharper than probs)
    diff_logits = (generated.first_logits - forward).abs().max().item()
    base = generate_under_knockout(decoder, inputs, None, max_new_tokens=1).first_logits
    effect = (base - generated.first_logits).abs().max().item()
    print(
        f"{key}: max |p_generate - p_score_plain| = {diff_plain:.2e}; vs fast = {diff_fast:.2e}; "
        f"max |logits - knocked-out forward| = {diff_logits:.2e}; knockout moves logits by {effect:.2e}"
    )
    assert diff_plain <= 1e-6 and diff_fast <= 1e-6 and diff_logits <= 1e-5
    assert generated.token_ids[0] == plain.argmax
    assert effect > 1e-4  # the knockout changes the first step's logits: the check is not vacuous


@pytest.mark.parametrize("condition", ["cross_frame", "video->question"])
def test_qwen_kv_cache_consistent_with_knockout(qwen, condition):
    """Cached generation under a knockout == one full forward per step without a cache: the prompt and fed-back
    tokens by `teacher_forced` (continued positions, extended extras), the plan extended by the inherited mask."""
    key, adapter, encoded, _ = qwen
    decoder, inputs = adapter.decoder, encoded.inputs
    n = inputs.n
    rects = paper_conditions()[condition].rectangles(encoded.layout)
    layers = (0, 1)
    ours = generate_under_knockout(
        decoder, inputs, dict.fromkeys(layers, rects), max_new_tokens=QWEN_NEW, eos_token_ids=[-1]
    )
    reference, logits = uncached_greedy_on(
        decoder, inputs, lambda m: dict.fromkeys(layers, inherited_mask(n, rects, m)), QWEN_NEW
    )
    baseline = generate_under_knockout(decoder, inputs, None, max_new_tokens=QWEN_NEW, eos_token_ids=[-1])
    diff = (ours.logits - logits).abs().max().item()
    effect = (ours.logits - baseline.logits).abs().max().item()
    print(
        f"{key} {condition}: knockout {ours.token_ids} baseline {baseline.token_ids}; max |logits - uncached "
        f"reference| over {QWEN_NEW} steps = {diff:.2e}; knockout effect {effect:.2e}"
    )
    assert ours.token_ids == reference
    assert diff <= 1e-5
    assert effect > 1e-5


def test_teacher_forced_positions_and_extras(qwen):
    """The fed-back tokens' positions continue every axis from the last prompt position; Qwen3-VL's visual mask
    gets False for them and its deepstack features stay as they were."""
    key, adapter, encoded, _ = qwen
    inputs = encoded.inputs
    forced = teacher_forced(adapter.decoder, inputs, [5, 6, 7])
    last = inputs.position_ids[..., -1:]
    assert forced.n == inputs.n + 3 and forced.position_ids.shape == (3, 1, inputs.n + 3)
    assert torch.equal(forced.position_ids[..., : inputs.n], inputs.position_ids)
    assert torch.equal(forced.position_ids[..., inputs.n :], last + torch.tensor([1, 2, 3]))
    if key == "qwen3_vl":
        mask = forced.extra["visual_pos_masks"]
        assert mask.shape == (1, inputs.n + 3) and not mask[0, inputs.n :].any()
        assert torch.equal(mask[:, : inputs.n], inputs.extra["visual_pos_masks"])
        assert forced.extra["deepstack_visual_embeds"] is inputs.extra["deepstack_visual_embeds"]
    else:
        assert forced.extra == {}


def test_qwen_fast_engine_on_teacher_forced_inputs(qwen):
    """The open-ended flow scores teacher-forced inputs with the prefix-caching engine: its suffix forwards over the
    extended positions and extras (Qwen3-VL's visual mask with the new positions False) equal full forwards."""
    key, adapter, encoded, _ = qwen
    decoder = adapter.decoder
    forced = teacher_forced(decoder, encoded.inputs, [5, 6, 7])
    layout = encoded.layout.with_response(3)
    layers = decoder.num_layers
    knockouts = [
        condition_knockout(Condition.parse(name), make_window(layers, center, 1), layout)
        for name in ("video->response", "response->last", "question->last")
        for center in (0, layers - 1)
    ]
    vocab = list(range(decoder.input_embeddings().weight.shape[0]))
    base_plain, plain = score_plain(decoder, forced, knockouts, vocab)
    base_fast, fast = score(decoder, forced, knockouts, vocab, strategy="fast")
    diff = max(abs(a.probs - b.probs).max() for a, b in zip([base_plain, *plain], [base_fast, *fast], strict=True))
    effect = max(abs(a.probs - base_plain.probs).max() for a in plain)
    print(f"{key}: max |p_fast - p_plain| on teacher-forced inputs = {diff:.2e}; largest knockout effect {effect:.2e}")
    assert diff <= 1e-5 and effect > 1e-6
