"""The fast strategy gives the plain engine's numbers: every condition group, edge windows, batches, masks."""

from __future__ import annotations

import pytest
import torch
from test_engine import vlm_lm_inputs
from tiny import VOCAB, text_prompt, tiny_llama, tiny_llava_next_video, tiny_qwen2, video_prompt

from flowcheck.edges import Condition, make_window, paper_conditions, random_blocked_mask
from flowcheck.engine import Knockout, condition_knockout, embed_text, find_decoder, score
from flowcheck.engine import fast as fast_module

WATCH = list(range(VOCAB))


def setup(name: str, dtype=torch.float32):
    if name == "llava_next_video":
        model, prompt = tiny_llava_next_video(), video_prompt()
        model.to(dtype)
        return find_decoder(model), prompt, vlm_lm_inputs(model, prompt)
    model = (tiny_llama if name == "llama" else tiny_qwen2)().to(dtype)
    decoder = find_decoder(model)
    prompt = text_prompt()
    return decoder, prompt, embed_text(decoder, prompt.input_ids)


def assert_same(decoder, inputs, knockouts, tolerance=1e-5):
    base_p, plain = score(decoder, inputs, knockouts, WATCH, strategy="plain")
    base_f, fast = score(decoder, inputs, knockouts, WATCH, strategy="fast")
    assert abs(base_p.probs - base_f.probs).max() <= tolerance
    for ko, a, b in zip(knockouts, plain, fast, strict=True):
        assert abs(a.probs - b.probs).max() <= tolerance, ko.key
        assert a.argmax == b.argmax, ko.key
    return plain


@pytest.mark.parametrize("name", ["llama", "qwen2", "llava_next_video"])
def test_fast_equals_plain_for_every_condition_and_edge_windows(name):
    decoder, prompt, inputs = setup(name)
    layers = decoder.num_layers
    windows = [
        make_window(layers, 0, 1),
        make_window(layers, 0, 3),
        make_window(layers, 2, 3),
        make_window(layers, layers - 1, 1),
        make_window(layers, 1, style="top_down", width=3),
    ]
    conditions = [*paper_conditions().values(), Condition.parse("frame:0->frame:2"), Condition.parse("system->post")]
    knockouts = [condition_knockout(c, w, prompt.layout) for c in conditions for w in windows]
    plain = assert_same(decoder, inputs, knockouts)
    # and the knockouts do something: otherwise equality would be vacuous
    assert sum(abs(r.probs - plain[0].probs).max() > 1e-4 for r in plain) > len(plain) // 4


def test_fast_equals_plain_for_per_layer_pathway_plans_and_random_masks():
    decoder, prompt, inputs = setup("llama")
    layout = prompt.layout
    conditions = paper_conditions()
    plan = {
        0: conditions["cross_frame"].rectangles(layout),
        2: conditions["video->question"].rectangles(layout),
        3: conditions["question->last"].rectangles(layout),
    }
    random = {layer: random_blocked_mask(layout, 60, seed=1, key="s", layer=layer) for layer in range(4)}
    assert_same(decoder, inputs, [Knockout("pathways", plan), Knockout("random", random)])


def test_batches_mixing_prefixes_and_first_layers_match_single_runs():
    decoder, prompt, inputs = setup("qwen2")
    conditions = list(paper_conditions().values())
    knockouts = [
        condition_knockout(c, make_window(4, center, 1), prompt.layout) for c in conditions for center in (0, 3)
    ]
    singles = [score(decoder, inputs, [ko], WATCH, strategy="fast", batch_size=1)[1][0] for ko in knockouts]
    _, batched = score(decoder, inputs, knockouts, WATCH, strategy="fast", batch_size=8)
    for a, b in zip(singles, batched, strict=True):
        assert abs(a.probs - b.probs).max() <= 1e-5


def test_bf16_fast_tracks_plain():
    decoder, prompt, inputs = setup("llama", torch.bfloat16)
    knockouts = [condition_knockout(c, make_window(4, 1, 3), prompt.layout) for c in paper_conditions().values()]
    assert_same(decoder, inputs, knockouts, tolerance=2e-2)


def test_last_token_knockouts_recompute_one_position_from_the_window_start(monkeypatch):
    decoder, prompt, inputs = setup("llama")
    calls = []
    original = fast_module._suffix_logits

    def spy(decoder, base, inputs, p, a, rows, shared=False):
        calls.append((inputs.n - p, a, rows))
        return original(decoder, base, inputs, p, a, rows, shared)

    monkeypatch.setattr(fast_module, "_suffix_logits", spy)
    knockouts = [
        condition_knockout(paper_conditions()[c], make_window(4, 3, 1), prompt.layout)
        for c in ("video->last", "question->last", "last->last")
    ]
    score(decoder, inputs, knockouts, WATCH, strategy="fast")
    # two self-check runs (one position, layers 0 and L/2), two of the last-position shortcut (4 positions, 2 rows,
    # layer L-2), then one batch of 3 rows: one position from layer 3
    assert calls[-1] == (1, 3, 3)
    assert calls[:4] == [(1, 0, 1), (1, 2, 1), (4, 2, 2), (4, 2, 2)]


def test_model_is_restored_after_the_fast_path():
    decoder, prompt, inputs = setup("llama")
    layers_before = list(decoder.layers)
    knockouts = [condition_knockout(paper_conditions()["cross_frame"], make_window(4, 2, 3), prompt.layout)]
    score(decoder, inputs, knockouts, WATCH, strategy="fast")
    assert list(decoder.layers) == layers_before
    assert decoder.config._attn_implementation == "sdpa"


class _SqueezingMLP(torch.nn.Module):
    """An MLP that drops a length-1 position axis ([B, 1, D] -> [B, D]): fine for forwards of several positions,
    wrong when the last-position shortcut hands it the last position alone."""

    def __init__(self, mlp: torch.nn.Module) -> None:
        super().__init__()
        self.inner = mlp

    def forward(self, hidden_states):
        return self.inner(hidden_states).squeeze(1)


def test_last_position_shortcut_is_self_checked_per_model():
    decoder, prompt, inputs = setup("llama")
    assert fast_module.FastScorer(decoder, inputs).base.last_only  # a Llama layer tolerates it
    knockouts = [
        condition_knockout(paper_conditions()[c], make_window(4, w, 1), prompt.layout)
        for c in ("video->question", "question_only->true_option")  # suffixes of several positions
        for w in (1, 3)
    ]
    original = decoder.layers[-1].mlp
    decoder.layers[-1].mlp = _SqueezingMLP(original)
    try:
        scorer = fast_module.FastScorer(decoder, inputs)
        assert scorer.ok and not scorer.base.last_only
        assert_same(decoder, inputs, knockouts)
    finally:
        decoder.layers[-1].mlp = original
