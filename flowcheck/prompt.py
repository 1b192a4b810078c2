"""The paper's multiple-choice prompt protocol, as text with character spans.

Token spans are never found by searching decoded tokens: the prompt is assembled from known
segments, so the character range of every segment is known, and a tokenizer's offset mapping
turns character ranges into token ranges (`token_span`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from flowcheck.data.sample import OPTION_LETTERS

# The authors' system prompt, character for character (official-protocol.md 6.2: `SYSTEM_MVBENCH` in
# tasks/eval/eval_utils.py ends with a newline; the conversation then adds its " " separator).
SYSTEM_MVBENCH = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
    "movement of objects, and the action and pose of persons. Based on your observations, select the best "
    "option that accurately addresses the question.\n"
)
# The system turn's text for a chat template, which adds its own turn separators: the authors' text
# without the trailing newline that separates it from " USER: " in their own conversation format.
SYSTEM_MVBENCH_TURN = SYSTEM_MVBENCH.rstrip("\n")
# The Video-ChatGPT system prompt of the authors' open-ended conversation `eval_vcgbench` (official-protocol.md 11;
# `conv_eval_vcg` in tasks/eval/eval_utils.py, inherited from PLLaVA), character for character: three literals joined
# without separators, so "natural language." runs into "Follow" with no space, and no trailing newline.
SYSTEM_VCGBENCH = (
    "You are Video-ChatGPT, a large vision-language assistant. "
    "You are able to understand the video content that the user provides, and assist the user with a variety of "
    "tasks using natural language."
    "Follow the instructions carefully and explain your answers in detail based on the provided video."
)
POST_QUESTION = " \nOnly give the best option."
ANSWER_PREFIX = "Best option:("

_USER_SENTINEL = "FLOWCHECKUSERTEXTSENTINEL"
_SYSTEM_SENTINEL = "FLOWCHECKSYSTEMTEXTSENTINEL"


@dataclass(frozen=True)
class CharSpan:
    """A half-open character range ``[start, end)``."""

    start: int
    end: int

    def shifted(self, offset: int) -> CharSpan:
        return CharSpan(self.start + offset, self.end + offset)


@dataclass(frozen=True)
class MCText:
    """The user text of one question: ``Question: {q}\\nOptions:\\n(A) ...`` plus the post-question line.

    `question` covers the question and all options (the authors' "question" group),
    `question_only` the raw question text, `options[i]` the text ``(X) {option}``,
    `post` the trailing instruction.
    """

    text: str
    question: CharSpan
    question_only: CharSpan
    options: tuple[CharSpan, ...]
    post: CharSpan


def mc_text(question: str, options: Sequence[str], post: str = POST_QUESTION) -> MCText:
    """Render the authors' `qa_template` for one question (official-protocol.md, 6.1), then `post`."""
    parts: list[str] = []
    pos = 0

    def add(s: str) -> CharSpan:
        nonlocal pos
        parts.append(s)
        span = CharSpan(pos, pos + len(s))
        pos += len(s)
        return span

    q_start = pos
    add("Question: ")
    question_only = add(question)
    add("\nOptions:\n")
    option_spans = []
    for i, option in enumerate(options):
        if i:
            add("\n")
        option_spans.append(add(f"({OPTION_LETTERS[i]}) {option}"))
    question_span = CharSpan(q_start, pos)
    post_span = add(post)
    return MCText("".join(parts), question_span, question_only, tuple(option_spans), post_span)


def open_text(question: str, post: str = "") -> MCText:
    """The open-ended prompt's user text: the raw question only, no options, then `post` (default none).

    The authors' open-ended protocol (official-protocol.md 11, VCGBench) asks the question as it is and has no
    answer prefix; `question` and `question_only` are the same span and `options` is empty.
    """
    span = CharSpan(0, len(question))
    return MCText(question + post, span, span, (), CharSpan(len(question), len(question) + len(post)))


@dataclass(frozen=True)
class RenderedPrompt:
    """A full prompt string and the character spans of its named segments.

    Keys of `spans`: ``question``, ``question_only``, ``option:<i>``, ``post``, ``answer_prefix``
    and, when a system prompt was rendered, ``system``.
    """

    text: str
    spans: dict[str, CharSpan] = field(default_factory=dict)

    def without_prefix(self, prefix: str) -> RenderedPrompt:
        """The prompt with a leading `prefix` removed (e.g. a BOS the tokenizer adds itself), spans shifted."""
        if not self.text.startswith(prefix):
            return self
        shifted = {k: v.shifted(-len(prefix)) for k, v in self.spans.items()}
        return replace(self, text=self.text[len(prefix) :], spans=shifted)


FOLD_SEPARATOR = "\n"
"""Between the system text and the rest of the user turn when a template takes no system turn."""

SystemPlacement = Literal["turn", "fold"]
ContentStyle = Literal["parts", "string"]


def mc_messages(
    user_text: str,
    system: str | None = SYSTEM_MVBENCH_TURN,
    *,
    placement: SystemPlacement = "turn",
    content: ContentStyle = "parts",
    video_text: str = "<video>",
) -> list[dict]:
    """Chat messages of one question: an optional system text, then the video and the user text.

    `placement` ``"turn"`` gives the system text its own turn; ``"fold"`` puts it at the start of the
    user turn, followed by `FOLD_SEPARATOR` (for templates that reject a system turn). `content`
    ``"parts"`` is transformers' multimodal format (a list of typed parts: video, then text);
    ``"string"`` is one string, `video_text` + newline + text, for templates that only render string
    content (LLaVA's ``<video>\n`` convention).
    """
    head = [] if system is None or placement == "turn" else [system + FOLD_SEPARATOR]
    if content == "parts":
        user: list[dict] | str = [{"type": "text", "text": t} for t in head]
        user += [{"type": "video"}, {"type": "text", "text": user_text}]
    else:
        user = "".join(head) + video_text + "\n" + user_text
    messages: list[dict] = []
    if system is not None and placement == "turn":
        turn = [{"type": "text", "text": system}] if content == "parts" else system
        messages.append({"role": "system", "content": turn})
    messages.append({"role": "user", "content": user})
    return messages


def render_with_template(
    apply_template: Callable[[list[dict]], str],
    mc: MCText,
    system: str | None = SYSTEM_MVBENCH_TURN,
    answer_prefix: str = ANSWER_PREFIX,
    *,
    placement: SystemPlacement = "turn",
    content: ContentStyle = "parts",
    video_text: str = "<video>",
) -> RenderedPrompt:
    """Render `mc` through a chat template and keep the character span of every segment.

    `apply_template(messages)` must return the rendered conversation ending with the assistant
    turn's opening (``add_generation_prompt=True``). Sentinels stand in for the user text and the
    system text during rendering and are then replaced, so the spans are exact whatever the
    template adds around them. `placement`, `content` and `video_text` shape the messages
    (`mc_messages`). Raises ValueError when the template loses or repeats a segment; the
    template's own errors (jinja2 TemplateError, TypeError) pass through.
    """
    sentinel = _SYSTEM_SENTINEL if system is not None else None
    rendered = apply_template(
        mc_messages(_USER_SENTINEL, sentinel, placement=placement, content=content, video_text=video_text)
    )
    if rendered.count(_USER_SENTINEL) != 1:
        raise ValueError(
            "the chat template did not render the user text exactly once; flowcheck cannot locate the "
            "question in this template"
        )
    text = rendered
    spans: dict[str, CharSpan] = {}
    if system is not None:
        if text.count(_SYSTEM_SENTINEL) != 1:
            raise ValueError(
                "the chat template dropped or repeated the system prompt; fold it into the user turn or drop it "
                "for templates without a system turn"
            )
        s = text.index(_SYSTEM_SENTINEL)
        text = text[:s] + system + text[s + len(_SYSTEM_SENTINEL) :]
        spans["system"] = CharSpan(s, s + len(system))
    u = text.index(_USER_SENTINEL)
    text = text[:u] + mc.text + text[u + len(_USER_SENTINEL) :]
    spans["question"] = mc.question.shifted(u)
    spans["question_only"] = mc.question_only.shifted(u)
    for i, option in enumerate(mc.options):
        spans[f"option:{i}"] = option.shifted(u)
    spans["post"] = mc.post.shifted(u)
    if "system" in spans and spans["system"].start > u:
        raise ValueError("the chat template renders the system prompt after the user turn")
    spans["answer_prefix"] = CharSpan(len(text), len(text) + len(answer_prefix))
    return RenderedPrompt(text + answer_prefix, spans)


def token_span(offsets: Sequence[tuple[int, int]], span: CharSpan) -> tuple[int, int]:
    """Token range ``[first, last + 1)`` of the tokens whose characters overlap `span`.

    `offsets` is a fast tokenizer's offset mapping (one ``(start, end)`` per token; special
    tokens have ``(0, 0)`` and never match). Tokens that only partly overlap are included, as
    in the authors' code. Raises if no token overlaps the span.
    """
    hits = [i for i, (s, e) in enumerate(offsets) if e > s and s < span.end and e > span.start]
    if not hits:
        raise ValueError(f"no token covers characters [{span.start}, {span.end}) of the prompt")
    return hits[0], hits[-1] + 1
