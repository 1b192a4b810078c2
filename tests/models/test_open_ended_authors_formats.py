"""The open-ended prompt of the authors' checkpoint formats (PLLaVA, InternVL-chat, VideoLLaMA3 remote-code).

Known answers: the prompt each adapter encodes equals the conversation written out by hand here (the authors'
``eval_vcgbench`` for PLLaVA, official-protocol.md 11; the model's multiple-choice conversation without options,
instruction and answer prefix where the protocol gives no open-ended one); the question span decodes to the question;
the layout has no options; greedy generation under a knockout runs on the encoding and its first step equals the
letter-scoring engine's distribution; and teacher forcing a response extends the layout (`with_response`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from families import spliced_last_logits
from protocol_text import system_mvbench
from test_internvl_chat import checkpoint as internvl_checkpoint  # noqa: F401 (a pytest fixture)
from test_pllava import checkpoint as pllava_checkpoint  # noqa: F401 (a pytest fixture)
from test_videollama3_remote import at_1fps
from test_videollama3_remote import checkpoint as videollama3_checkpoint  # noqa: F401 (a pytest fixture)
from tiny_checkpoint import synthetic_sample

import flowcheck
from flowcheck.edges import Condition, make_window, paper_conditions
from flowcheck.engine import condition_knockout, knockout_plan, last_logits, score, score_plain
from flowcheck.engine.generate import generate_under_knockout, teacher_forced
from flowcheck.engine.scoring import Knockout
from flowcheck.models.videollama3_remote import authors_prompt

# The Video-ChatGPT system prompt of the authors' conv `eval_vcgbench` (tasks/eval/eval_utils.py, from PLLaVA),
# typed out here: its three string literals join with no space after "natural language.".
VIDEO_CHATGPT_SYSTEM = (
    "You are Video-ChatGPT, a large vision-language assistant. You are able to understand the video content that "
    "the user provides, and assist the user with a variety of tasks using natural language.Follow the instructions "
    "carefully and explain your answers in detail based on the provided video."
)
QUESTION = "Which direction does the blue circle move?"
# The open-ended flow's conditions (official-protocol.md 11, flowcheck/specs/generation.json)
OPEN_FLOW_CONDITIONS = ("video->question", "video->response", "video->last", "question->last", "response->last")


def collapsed(enc) -> list[int]:
    """The encoded ids with the video span folded back into its one placeholder (the prompt as tokenized)."""
    ids, video = enc.input_ids.tolist(), enc.layout.video
    return [*ids[: video.start], ids[video.start], *ids[video.end :]]


def assert_open_layout(adapter, enc, question: str) -> None:
    """No options, no option ids, true index -1, question == question_only == the question text."""
    layout = enc.layout
    assert layout.open_ended and layout.options == () and layout.true_index == -1 and enc.option_ids == ()
    assert layout.question == layout.question_only
    decoded = adapter.tokenizer.decode(enc.input_ids[layout.question.start : layout.question.end])
    assert decoded == question.replace("?", " ?")  # the word-level tokenizers split off punctuation


def assert_mc_unchanged(adapter, sample, frames, before) -> None:
    """Encoding open-ended leaves the multiple-choice encoding as it was (options, letters, ids)."""
    after = adapter.encode(sample, frames)
    assert after.layout == before.layout and after.option_ids == before.option_ids
    assert len(after.option_ids) == len(sample.options) and after.layout.true_index == sample.answer_index
    assert torch.equal(after.input_ids, before.input_ids)


def assert_generation_and_teacher_forcing(adapter, enc) -> None:
    """Greedy generation runs on the open-ended encoding: unblocked, its first step is the engine's last-position
    logits; with cross-frame attention blocked in the first half of the layers, the letter-scoring engine's
    knocked-out distribution. Teacher forcing three generated tokens matches `layout.with_response(3)`."""
    decoder, inputs = adapter.decoder, enc.inputs
    base = generate_under_knockout(decoder, inputs, None, max_new_tokens=4)
    diff_base = (base.first_logits - spliced_last_logits(adapter, enc).float().cpu()).abs().max().item()
    rects = paper_conditions()["cross_frame"].rectangles(enc.layout)
    layers = range(adapter.num_layers // 2)
    knocked = generate_under_knockout(decoder, inputs, dict.fromkeys(layers, rects), max_new_tokens=4)
    ko = Knockout("cross_frame@first_half", dict.fromkeys(layers, tuple(rects)))
    vocab = list(range(base.logits.shape[-1]))
    _, (plain,) = score_plain(decoder, inputs, [ko], vocab)
    diff_knock = float(np.abs(knocked.first_probs.double().numpy() - plain.probs).max())
    moved = (knocked.first_probs - base.first_probs).abs().max().item()
    print(
        f"{adapter.family}: max |generate - engine| unblocked {diff_base:.2e} (logits), knocked {diff_knock:.2e} "
        f"(probs); the knockout moves the first step's probabilities by up to {moved:.2e}"
    )
    assert diff_base <= 1e-5 and diff_knock <= 1e-6
    assert moved > 1e-7  # the knockout reaches the generated step: the comparison is not vacuous
    assert knocked.token_ids[0] == plain.argmax and 1 <= len(base.token_ids) <= 4
    tokens = [*base.token_ids, *knocked.token_ids, 0, 0][:3]
    extended = enc.layout.with_response(3)
    forced = teacher_forced(decoder, inputs, tokens)
    assert forced.n == extended.n == enc.layout.n + 3
    assert extended.response is not None and len(extended.response) == 2
    # the open-ended flow's conditions all have tokens on both sides, and the fast engine's score on the
    # teacher-forced input equals a plain knocked-out forward
    conditions = [Condition.parse(c) for c in OPEN_FLOW_CONDITIONS]
    assert all(c.rectangles(extended) for c in conditions)
    window = make_window(adapter.num_layers, 0, 1)
    knockouts = [condition_knockout(c, window, extended) for c in conditions]
    _, fast = score(decoder, forced, knockouts, vocab, strategy="fast")
    worst = 0.0
    for c, scored in zip(conditions, fast, strict=True):
        with knockout_plan(decoder, dict.fromkeys(window.layers, c.rectangles(extended))):
            probs = torch.softmax(last_logits(decoder, forced)[0].float(), -1).double().cpu().numpy()
        worst = max(worst, float(np.abs(probs - scored.probs).max()))
    print(f"{adapter.family}: open-ended flow conditions, max |fast - plain| = {worst:.2e}")
    assert worst <= 1e-6


def test_pllava_open_ended_prompt_is_the_authors_eval_vcgbench(pllava_checkpoint):  # noqa: F811
    folder, _clip, _llama, _projector, tokenizer = pllava_checkpoint
    adapter = flowcheck.load(str(folder))
    sample, frames = synthetic_sample("moving_direction")
    assert sample.question == QUESTION
    # get_prompt of eval_vcgbench after user_query(question, is_mm=True): system + sep " ", the video turn
    # "USER: " + "<image>\n" + " ", then "USER: " + question + " " + "ASSISTANT:" (no answer prompt)
    by_hand = (
        "You are Video-ChatGPT, a large vision-language assistant. You are able to understand the video content that "
        "the user provides, and assist the user with a variety of tasks using natural language.Follow the "
        "instructions carefully and explain your answers in detail based on the provided video. USER: <image>\n"
        " USER: Which direction does the blue circle move? ASSISTANT:"
    )
    assert adapter.open_prompt(sample)[0] == by_hand
    mc = adapter.encode(sample, frames)
    enc = adapter.encode_open_ended(sample, frames)
    assert_mc_unchanged(adapter, sample, frames, mc)
    assert collapsed(enc) == tokenizer(by_hand).input_ids
    assert_open_layout(adapter, enc, QUESTION)
    assert adapter.tokenizer.decode(enc.input_ids[enc.layout.post.start :]) == "ASSISTANT :"  # last = ":"
    assert len(enc.layout.video) == 32 and len(enc.layout.frames) == 8
    assert_generation_and_teacher_forcing(adapter, enc)


@pytest.mark.parametrize("internvl_checkpoint", [("v1", False)], indirect=True, ids=["ps-v1"])  # one is enough
def test_internvl_chat_open_ended_prompt_is_its_mc_conversation_without_options(internvl_checkpoint):  # noqa: F811
    folder, *_rest = internvl_checkpoint
    tokenizer = _rest[2]
    adapter = flowcheck.load(str(folder))
    sample, frames = synthetic_sample("moving_direction")
    # eval_mvbench_phi3 (official-protocol.md 6.2) with user_query(question): no qa template, no instruction,
    # no "Best option:(" answer prefix
    by_hand = (
        system_mvbench()
        + " <|user|>\n<img><IMG_CONTEXT></img>\n <|user|>\nWhich direction does the blue circle move? <|assistant|>\n"
    )
    assert adapter.open_prompt(sample)[0] == by_hand
    mc = adapter.encode(sample, frames)
    enc = adapter.encode_open_ended(sample, frames)
    assert_mc_unchanged(adapter, sample, frames, mc)
    assert collapsed(enc) == tokenizer(by_hand).input_ids
    assert_open_layout(adapter, enc, QUESTION)
    assert adapter.tokenizer.decode(enc.input_ids[enc.layout.post.start :]) == "<|assistant|> \n"
    assert [len(f) for f in enc.layout.frames] == [4] * 8
    assert_generation_and_teacher_forcing(adapter, enc)
    # generation stops at the end of the assistant's turn (eval_mvbench_phi3's sep "<|end|>"), as the model's own
    # chat() does, besides the language model's eos
    eos = adapter.decoder.owner.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos)
    assert tokenizer.convert_tokens_to_ids("<|end|>") in eos and len(eos) == len(set(eos)) >= 2


def test_videollama3_remote_open_ended_prompt_is_its_mc_prompt_without_options(videollama3_checkpoint):  # noqa: F811
    folder, _vision, _llm, tokenizer, _sample, frames = videollama3_checkpoint
    sample, _ = synthetic_sample("moving_direction")
    for family in ("videollama3-remote", "videollama3-remote-authors"):
        adapter = flowcheck.load(f"{folder}@{family}")
        video = ",".join(f"Time {t}.0s:" + "<image>" * 4 for t in range(8))
        by_hand = (
            f"<|im_start|>user\n{video}\nWhich direction does the blue circle move?<|im_end|>\n<|im_start|>assistant\n"
        )
        mc = adapter.encode(sample, at_1fps(frames))
        enc = adapter.encode_open_ended(sample, at_1fps(frames))
        assert authors_prompt(sample, [float(t) for t in range(8)], 4, open_ended=True)[0] == by_hand
        assert_mc_unchanged(adapter, sample, at_1fps(frames), mc)
        assert enc.input_ids.tolist() == tokenizer(by_hand).input_ids, family
        assert_open_layout(adapter, enc, QUESTION)
        assert (
            adapter.tokenizer.decode(enc.input_ids[enc.layout.post.start :])
            == "<|im_end|> \n <|im_start|> assistant \n"
        )
        assert [len(f) for f in enc.layout.frames] == [10] + [11] * 7
        assert mc.layout.video == enc.layout.video and len(mc.layout.options) == 2 and mc.layout.true_index >= 0
        assert torch.equal(
            mc.inputs.inputs_embeds[0, : mc.layout.video.end], enc.inputs.inputs_embeds[0, : enc.layout.video.end]
        )
    assert_generation_and_teacher_forcing(adapter, enc)
