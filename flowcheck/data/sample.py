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
    """One video question: multiple-choice (`options`, `answer_index`) or open-ended (`reference`).

    `id` is unique within its dataset (for example ``"tvbench/action_sequence/0012"``);
    `start` / `end` bound the clip in seconds when the benchmark gives bounds. `question`,
    `options` and `reference` are stored normalised (`normalise_text`).

    An open-ended sample has no options, ``answer_index == -1`` and a `reference` answer (free text, e.g. the
    folder layout's `answer` without `candidates`); only the analyses that generate an answer run on it
    (`flowcheck.analyses.base.Analysis.handles_open_ended`). Raises ValueError for no options and no reference,
    a reference beside options, more than 26 options, an answer index out of range, or options identical after
    normalisation.
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
    reference: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "question", normalise_text(self.question))
        object.__setattr__(self, "options", tuple(normalise_text(o) for o in self.options))
        if self.reference is not None:
            object.__setattr__(self, "reference", normalise_text(self.reference))
            if self.options:
                raise ValueError(
                    f"sample {self.id!r} has both options and an open-ended reference answer; give one of them"
                )
            if not self.reference:
                raise ValueError(f"sample {self.id!r}: the open-ended reference answer is empty")
            if self.answer_index != -1:
                raise ValueError(f"sample {self.id!r} is open-ended (no options): its answer_index must be -1")
            return
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
    def open_ended(self) -> bool:
        """True for a sample with a free-text reference answer and no options."""
        return self.reference is not None

    def annotation(self) -> list:
        """The annotation as a JSON-able list, what the content fingerprints of a sample hash (result cache, gating
        records, contract verifications): ``[id, question, options, answer_index, start, end]``, plus the reference
        answer for an open-ended sample (the list of a multiple-choice sample is unchanged, and so are its
        fingerprints)."""
        values = [self.id, self.question, list(self.options), self.answer_index, self.start, self.end]
        return values if self.reference is None else [*values, self.reference]

    @property
    def letters(self) -> tuple[str, ...]:
        """Option letters in order: ``("A", "B", ...)``."""
        return tuple(OPTION_LETTERS[: len(self.options)])

    @property
    def answer(self) -> str:
        """The text of the true option (of an open-ended sample: its reference answer)."""
        if self.reference is not None:
            return self.reference
        return self.options[self.answer_index]

    @property
    def answer_letter(self) -> str:
        """The letter of the true option. Raises ValueError for an open-ended sample (it has no options)."""
        if self.reference is not None:
            raise ValueError(f"sample {self.id!r} is open-ended: it has no option letters")
        return OPTION_LETTERS[self.answer_index]
