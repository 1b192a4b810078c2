"""TokenLayout: the named token spans of one encoded sample, in expanded coordinates.

Expanded coordinates are positions in the sequence the decoder sees, after video placeholders
were replaced by video embeddings. Every span is half-open, ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np


class LayoutError(ValueError):
    """A TokenLayout whose spans are inconsistent (overlap, out of range, empty)."""


@dataclass(frozen=True, order=True)
class Span:
    """A half-open range of token positions."""

    start: int
    end: int

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __contains__(self, position: object) -> bool:
        return isinstance(position, (int, np.integer)) and self.start <= position < self.end

    def positions(self) -> range:
        return range(self.start, self.end)

    def overlaps(self, other: Span) -> bool:
        return max(self.start, other.start) < min(self.end, other.end)

    def covers(self, other: Span) -> bool:
        return self.start <= other.start and other.end <= self.end

    def __repr__(self) -> str:
        return f"[{self.start},{self.end})"


GROUP_NAMES = (
    "system",
    "video",
    "frames",
    "question",
    "question_only",
    "options",
    "true_option",
    "false_options",
    "post",
    "last",
    "response",
)


@dataclass(frozen=True)
class TokenLayout:
    """Named spans of one encoded sample.

    `question` is the question text with all options (the authors' "question" group),
    `question_only` the question text without options, `options[i]` the i-th option
    ``(X) text``, `post` the template text between the question and the last position,
    `last` the final input position (where the answer letter is predicted), `frames[i]`
    the video tokens of the i-th temporal group (they partition `video`). `frame_grid` is the
    (rows, columns) token grid of every frame, declared by the model adapter when a frame's tokens
    are its patches in row-major order (e.g. LLaVA-NeXT-Video's pooled 12 x 12); None when the
    family's frames are not a grid (extra separator, CLS or newline tokens): a 1-D strip.

    Open-ended prompts (`open_ended`: the question without options, official-protocol.md 11) have no option
    spans and ``true_index == -1``. `response` is the generated answer fed back up to, but excluding, `last`
    (teacher forcing in the open-ended flow analysis; the authors' ``response_before_last``); None otherwise.
    """

    n: int
    video: Span
    frames: tuple[Span, ...]
    question: Span
    question_only: Span
    options: tuple[Span, ...]
    true_index: int
    system: Span | None = None
    post: Span | None = None
    response: Span | None = None
    frame_grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def last(self) -> Span:
        return Span(self.n - 1, self.n)

    @property
    def open_ended(self) -> bool:
        """True for an open-ended prompt (no options)."""
        return not self.options

    @property
    def true_option(self) -> Span:
        if self.open_ended:
            raise LayoutError("an open-ended prompt has no true option")
        return self.options[self.true_index]

    @property
    def false_options(self) -> tuple[Span, ...]:
        return tuple(s for i, s in enumerate(self.options) if i != self.true_index)

    @property
    def tokens_per_frame(self) -> tuple[int, ...]:
        return tuple(len(f) for f in self.frames)

    def video_cells(self) -> list[tuple[int, int, int]]:
        """(frame, row, column) of every video position, in order: the frame's token grid (`frame_grid`), or a
        1-D strip (row 0, column = index within the frame) when the frames are not a grid."""
        cells = []
        for f, span in enumerate(self.frames):
            width = self.frame_grid[1] if self.frame_grid else max(len(span), 1)
            cells += [(f, i // width, i % width) for i in range(len(span))]
        return cells

    def spans(self, group: str) -> tuple[Span, ...]:
        """The spans of a named group: one of `GROUP_NAMES`, ``frame:<i>`` or ``option:<i>``."""
        if group.startswith("frame:"):
            return (self.frames[_index(group, len(self.frames))],)
        if group.startswith("option:"):
            return (self.options[_index(group, len(self.options))],)
        match group:
            case "frames":
                return self.frames
            case "options":
                return self.options
            case "false_options":
                return self.false_options
            case "true_option":
                return () if self.open_ended else (self.true_option,)
            case "last":
                return (self.last,)
            case "system" | "post" | "response":
                span = getattr(self, group)
                return () if span is None else (span,)
            case "video" | "question" | "question_only":
                return (getattr(self, group),)
        raise LayoutError(
            f"unknown token group {group!r}; known groups: {', '.join(GROUP_NAMES)}, frame:<i>, option:<i>"
        )

    def positions(self, group: str) -> np.ndarray:
        """Sorted positions of a named group."""
        spans = self.spans(group)
        if not spans:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([np.arange(s.start, s.end) for s in spans]))

    def validate(self) -> None:
        """Raise `LayoutError` naming the first inconsistency found."""
        n = self.n
        if n < 2:
            raise LayoutError(f"sequence length {n} is too short for a layout")
        named: list[tuple[str, Span]] = [
            ("video", self.video),
            ("question", self.question),
            ("question_only", self.question_only),
        ]
        named += [(f"frame:{i}", s) for i, s in enumerate(self.frames)]
        named += [(f"option:{i}", s) for i, s in enumerate(self.options)]
        for name, span in [*named, ("system", self.system), ("post", self.post), ("response", self.response)]:
            if span is None:
                continue
            if not 0 <= span.start <= span.end <= n:
                raise LayoutError(f"span {name} {span} is out of range for a sequence of {n} tokens")
        for name, span in named:
            if len(span) == 0:
                raise LayoutError(f"span {name} is empty; every video, frame, question and option span needs tokens")
        if not self.frames:
            raise LayoutError("layout has no frames; give at least one frame span inside the video span")
        if self.frame_grid is not None:
            rows, cols = self.frame_grid
            if rows < 1 or cols < 1 or any(len(f) != rows * cols for f in self.frames):
                raise LayoutError(
                    f"frame grid {rows} x {cols} does not match the frames' token counts {self.tokens_per_frame}; "
                    "declare a grid only when every frame is exactly rows x columns tokens (else None: a 1-D strip)"
                )
        if self.open_ended:
            if self.true_index != -1:
                raise LayoutError(f"an open-ended layout (no options) needs true_index -1, got {self.true_index}")
        elif len(self.options) < 2:
            raise LayoutError(f"layout has {len(self.options)} option spans; a multiple-choice question needs two")
        elif not 0 <= self.true_index < len(self.options):
            raise LayoutError(f"true option index {self.true_index} is not among {len(self.options)} options")
        if (
            self.frames[0].start != self.video.start
            or self.frames[-1].end != self.video.end
            or any(a.end != b.start for a, b in pairwise(self.frames))
        ):
            raise LayoutError(f"frames {list(self.frames)} do not partition the video span {self.video}")
        top_level = [("video", self.video), ("question", self.question), ("last", self.last)]
        if self.system is not None:
            top_level.append(("system", self.system))
        if self.post is not None:
            top_level.append(("post", self.post))
        if self.response is not None:
            if len(self.response) == 0 or self.response.start < self.question.end:
                raise LayoutError(f"the response span {self.response} must be non-empty and after the question")
            top_level.append(("response", self.response))
        for i, (a_name, a) in enumerate(top_level):
            for b_name, b in top_level[i + 1 :]:
                if a.overlaps(b):
                    raise LayoutError(f"spans {a_name} {a} and {b_name} {b} overlap")
        if self.video.end > self.question.start:
            raise LayoutError(
                f"the video {self.video} comes after the question {self.question}; flowcheck's conditions "
                "assume the video precedes the question (render the video first in the prompt)"
            )
        inner = [("question_only", self.question_only)] + [(f"option:{i}", s) for i, s in enumerate(self.options)]
        for name, span in inner:
            if not self.question.covers(span):
                raise LayoutError(f"span {name} {span} is not inside the question span {self.question}")
        for i, (a_name, a) in enumerate(inner):
            for b_name, b in inner[i + 1 :]:
                if a.overlaps(b):
                    raise LayoutError(f"spans {a_name} {a} and {b_name} {b} overlap")

    def to_dict(self) -> dict:
        """A JSON-ready dict (spans as ``[start, end]`` lists)."""

        def pair(s: Span | None) -> list[int] | None:
            return None if s is None else [s.start, s.end]

        out = {
            "n": self.n,
            "video": pair(self.video),
            "frames": [pair(s) for s in self.frames],
            "question": pair(self.question),
            "question_only": pair(self.question_only),
            "options": [pair(s) for s in self.options],
            "true_index": self.true_index,
            "system": pair(self.system),
            "post": pair(self.post),
        }
        if self.response is not None:  # absent when None: layouts stored before responses existed read the same
            out["response"] = pair(self.response)
        if self.frame_grid is not None:  # absent when None: layouts stored before grids existed read the same
            out["frame_grid"] = list(self.frame_grid)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> TokenLayout:
        def span(v: Iterable[int] | None) -> Span | None:
            return None if v is None else Span(*v)

        return cls(
            n=d["n"],
            video=Span(*d["video"]),
            frames=tuple(Span(*f) for f in d["frames"]),
            question=Span(*d["question"]),
            question_only=Span(*d["question_only"]),
            options=tuple(Span(*o) for o in d["options"]),
            true_index=d["true_index"],
            system=span(d.get("system")),
            post=span(d.get("post")),
            response=span(d.get("response")),
            frame_grid=tuple(d["frame_grid"]) if d.get("frame_grid") else None,
        )

    def with_response(self, added: int) -> TokenLayout:
        """The layout of this prompt followed by `added` >= 0 teacher-forced response tokens.

        The prompt's last position joins `post`; the new last position is the last added token; the added tokens
        before it are `response` (None when fewer than two were added). Raises LayoutError for added < 0.
        """
        if added < 0:
            raise LayoutError(f"cannot add {added} response tokens")
        if added == 0:
            return self
        n = self.n + added
        start = self.post.start if self.post is not None else self.question.end
        return replace(
            self,
            n=n,
            post=Span(start, self.n),
            response=Span(self.n, n - 1) if added >= 2 else None,
        )


def _index(group: str, count: int) -> int:
    try:
        i = int(group.split(":", 1)[1])
    except ValueError:
        raise LayoutError(f"group {group!r} needs an integer index, e.g. frame:0") from None
    if not 0 <= i < count:
        raise LayoutError(f"group {group!r} is out of range: there are {count}")
    return i


def synthetic_layout(
    *,
    system: int,
    frames: int,
    tokens_per_frame: int,
    question_only: int,
    option_lengths: Iterable[int],
    true_index: int = 0,
    post: int,
    between: int = 0,
    question_prefix: int = 2,
    options_header: int = 3,
) -> TokenLayout:
    """A layout built from token counts, in the order of the paper's prompt.

    system | video (frames x tokens_per_frame) | `between` template tokens |
    "Question:" question_only "Options:" options | post | last.
    Used for edge counting on the paper's shapes and in tests.
    """
    pos = 0

    def take(k: int) -> Span:
        nonlocal pos
        span = Span(pos, pos + k)
        pos += k
        return span

    system_span = take(system) if system else None
    frame_spans = tuple(take(tokens_per_frame) for _ in range(frames))
    video = Span(frame_spans[0].start, frame_spans[-1].end)
    take(between)
    q_start = pos
    take(question_prefix)
    question_only_span = take(question_only)
    take(options_header)
    option_spans = []
    for i, length in enumerate(option_lengths):
        if i:
            take(1)  # the newline between options
        option_spans.append(take(length))
    question = Span(q_start, pos)
    post_span = take(post) if post else None
    take(1)  # last
    return TokenLayout(
        n=pos,
        video=video,
        frames=frame_spans,
        question=question,
        question_only=question_only_span,
        options=tuple(option_spans),
        true_index=true_index,
        system=system_span,
        post=post_span,
    )
