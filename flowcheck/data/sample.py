"""The benchmark-independent sample every loader produces and every adapter consumes."""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path

OPTION_LETTERS = string.ascii_uppercase
_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Unicode NFC, format characters (zero-width space, joiners, BOM: category Cf) removed, every whitespace run
    (spaces, tabs, newlines, NBSP) one space, stripped.

    Applied to every question and option before prompting, so that no option differs from the
    others by invisible characters (a trailing or double space on the correct option only would
    leak the answer).
    """
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")  # zero-width and other format characters
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Sample:
    """One multiple-choice video question.

    `id` is unique within its dataset (for example ``"tvbench/action_sequence/0012"``);
    `start` / `end` bound the clip in seconds when the benchmark gives bounds. `question` and
    `options` are stored normalised (`normalise_text`). Raises ValueError for no options, more than
    26, an answer index out of range, or options identical after normalisation.
    """

    id: str
    task: str
    video: Path
    question: str
    options: tuple[str, ...]
    answer_index: int
    start: float | None = None
    end: float | None = None
    dataset: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "question", normalise_text(self.question))
        object.__setattr__(self, "options", tuple(normalise_text(o) for o in self.options))
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"sample {self.id!r}: two options are identical after normalisation: {self.options}")
        if not self.options:
            raise ValueError(f"sample {self.id!r} has no options")
        if len(self.options) > len(OPTION_LETTERS):
            raise ValueError(f"sample {self.id!r} has {len(self.options)} options; at most 26 are supported")
        if not 0 <= self.answer_index < len(self.options):
            raise ValueError(
                f"sample {self.id!r}: answer index {self.answer_index} is not among its {len(self.options)} options"
            )

    @property
    def letters(self) -> tuple[str, ...]:
        """Option letters in order: ``("A", "B", ...)``."""
        return tuple(OPTION_LETTERS[: len(self.options)])

    @property
    def answer(self) -> str:
        """The text of the true option."""
        return self.options[self.answer_index]

    @property
    def answer_letter(self) -> str:
        """The letter of the true option."""
        return OPTION_LETTERS[self.answer_index]
