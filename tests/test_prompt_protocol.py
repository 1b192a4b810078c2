"""Every paper checkpoint's prompt equals the authors' protocol text, character for character and token for token.

The reference strings come from ../shared/reference/official-protocol.md (tests/protocol_text.py), never
from flowcheck's constants.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from protocol_text import PROTOCOL, authors_question, conversation, system_mvbench, videollama3_prompt

from flowcheck.data.sample import Sample
from flowcheck.models.internvl_chat import InternVLChatAdapter
from flowcheck.models.pllava import PllavaAdapter
from flowcheck.models.videollama3_remote import authors_prompt
from flowcheck.prompt import ANSWER_PREFIX, POST_QUESTION, SYSTEM_MVBENCH, SYSTEM_MVBENCH_TURN

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-processors"

pytestmark = pytest.mark.skipif(not PROTOCOL.exists(), reason=f"{PROTOCOL} not found (shared/ beside the repo)")

SAMPLES = [
    Sample("t/0", "t", Path("v.mp4"), "What happened first?", ("Take off a hat.", "Put on a hat."), 0),
    Sample("t/1", "t", Path("v.mp4"), "Which way does it move?", ("up", "down", "left", "right", "none"), 3),
]


def test_the_system_prompt_is_the_protocols_and_ends_with_its_newline():
    assert system_mvbench() == SYSTEM_MVBENCH
    assert SYSTEM_MVBENCH.endswith("question.\n")
    assert SYSTEM_MVBENCH_TURN + "\n" == SYSTEM_MVBENCH  # chat templates get the text without the separator


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
@pytest.mark.parametrize(("adapter", "style"), [(PllavaAdapter, "llava"), (InternVLChatAdapter, "phi3")])
def test_paper_checkpoint_prompts_equal_the_protocol_character_for_character(adapter, style, sample):
    text, spans = adapter.prompt(sample)
    assert text == conversation(style, sample.question, sample.options)
    question = spans["question"]
    assert text[question.start : question.end] == authors_question(sample.question, sample.options)
    assert text[spans["post"].start : spans["post"].end] == POST_QUESTION
    assert text.endswith(ANSWER_PREFIX)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_the_videollama3_prompt_equals_the_protocol(sample):
    times = [0.5, 1.5, 2.5, 3.5]
    text, _ = authors_prompt(sample, times, 3)
    assert text == videollama3_prompt(sample.question, sample.options, times, 3)


@pytest.mark.skipif(not (REAL / "llava_next_video-7b-32k-ft").exists(), reason="real processors not found")
def test_the_pllava_prompt_tokenizes_as_the_authors_with_a_real_sentencepiece_tokenizer():
    """Mistral's (Llama-2 style) SentencePiece tokenizer: the protocol's newline is one more token, and every
    token equals the authors' (before the fix, every position after the system prompt was shifted by one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(REAL / "llava_next_video-7b-32k-ft")
    sample = SAMPLES[0]
    text, _ = PllavaAdapter.prompt(sample)
    ids = tokenizer(text).input_ids
    assert ids == tokenizer(conversation("llava", sample.question, sample.options)).input_ids
    without_newline = tokenizer(text.replace("question.\n USER:", "question. USER:", 1)).input_ids
    assert len(ids) == len(without_newline) + 1
