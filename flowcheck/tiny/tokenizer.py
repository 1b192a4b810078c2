"""A word-level fast tokenizer over the synthetic benchmark's vocabulary, with a LLaVA-style chat template."""

from __future__ import annotations

import string

import numpy as np
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from flowcheck.data.synth_tasks import TASKS, generate_group
from flowcheck.prompt import ANSWER_PREFIX, POST_QUESTION, SYSTEM_MVBENCH, mc_text

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
VIDEO_TOKEN, IMAGE_TOKEN = "<video>", "<image>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, VIDEO_TOKEN, IMAGE_TOKEN)

# "{system} USER: <video>\n{text} ASSISTANT:" — the LLaVA conversation style of the paper's prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] }}"
    "{% elif message['role'] == 'user' %} USER: "
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>\n{% elif part['type'] == 'image' %}<image>\n"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
    "{% elif message['role'] == 'assistant' %} ASSISTANT:{{ message['content'][0]['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
)


def pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Split on spaces, keep newlines and punctuation as their own tokens."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"),
            pre_tokenizers.Split(Regex(r"\n"), "isolated"),
            pre_tokenizers.Punctuation("isolated"),
        ]
    )


def vocabulary(groups_per_task: int = 300, seed: int = 12345) -> list[str]:
    """Every word the prompts of the synthetic benchmark can contain, plus letters and digits."""
    split = pre_tokenizer()
    texts = [SYSTEM_MVBENCH, POST_QUESTION, ANSWER_PREFIX, " USER: ASSISTANT:", ")"]
    rng = np.random.default_rng(seed)
    for task in TASKS:
        for _ in range(groups_per_task):
            for video in generate_group(task, rng):
                texts.append(mc_text(video.question, video.options).text)
    words = {piece for text in texts for piece, _ in split.pre_tokenize_str(text)}
    words |= set(string.ascii_uppercase) | set(string.digits)
    return sorted(words)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny model's tokenizer: word level, no merges; every option letter is one token."""
    words = vocabulary()
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizer()
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"video_token": VIDEO_TOKEN, "image_token": IMAGE_TOKEN},
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [VIDEO_TOKEN, IMAGE_TOKEN]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
