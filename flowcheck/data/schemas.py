"""Annotation entry schemas (pydantic) and the text normalisation every loader applies.

Each loader validates an entry against its schema before building a `Sample`; a bad entry becomes
one line of the LoadReport (`entry_problem` names the field and the value), never an exception.
Question and option text is normalised (Unicode NFC, whitespace runs collapsed to one space,
stripped) so that no option differs from the others by invisible characters: a trailing or double
space on the correct option only would leak the answer into the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from flowcheck.data.report import DataError
from flowcheck.data.sample import normalise_text


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number here")
    return value


def _not_empty(text: str) -> str:
    if not text:
        raise ValueError("empty after whitespace normalisation")
    return text


Text = Annotated[StrictStr, AfterValidator(normalise_text), AfterValidator(_not_empty)]
Seconds = Annotated[float | None, BeforeValidator(_not_bool), Field(ge=0, allow_inf_nan=False)]
EntryId = Annotated[StrictStr | StrictInt | None, BeforeValidator(_not_bool)]


def _folder_name(text: str) -> str:
    if text in (".", "..") or "/" in text or "\\" in text:
        raise ValueError(
            f"{text!r} is not a folder name (no '/', '\\', '.' or '..'): videos are read from videos/<type>/"
        )
    return text


PathPart = Annotated[StrictStr, Field(min_length=1), AfterValidator(_folder_name)]


class OpenEndedEntry(BaseModel):
    """One open-ended question of a TVBench-layout file: no `candidates`, `answer` is a free-text reference answer
    (issue 17: open-ended flow on datasets such as VCGBench's temporal QA, official-protocol.md 11)."""

    model_config = ConfigDict(extra="allow")

    video: StrictStr = Field(min_length=1)
    question: Text
    answer: Text
    start: Seconds = None
    end: Seconds = None
    id: EntryId = None

    @model_validator(mode="after")
    def _bounds_in_order(self) -> OpenEndedEntry:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start ({self.start} s) must come before end ({self.end} s)")
        if isinstance(self.id, str) and not self.id.strip():
            raise ValueError("id is empty")
        return self


class TVBenchEntry(OpenEndedEntry):
    """One multiple-choice question of a TVBench-layout file (official-protocol.md 6.1): the open-ended entry's
    fields plus `candidates`, and `answer` is a candidate's text."""

    candidates: list[Text] = Field(min_length=2)


class TomatoEntry(BaseModel):
    """One question of a TOMATO file (official-protocol.md 6.3): `answer` is an index into `options`."""

    model_config = ConfigDict(extra="allow")

    question: Text
    options: list[Text] = Field(min_length=2)
    answer: StrictInt
    key: StrictStr | StrictInt
    demonstration_type: PathPart


def entry_problem(err: ValidationError) -> str:
    """A validation error as one line naming each bad field and its value."""
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e["loc"]) or "entry"
        given = "" if e["type"] == "missing" else f" (got {e['input']!r:.60})"
        parts.append(f"field {field!r}: {e['msg']}{given}")
    return "; ".join(parts)


def answer_index(answer: str, options: list[str]) -> tuple[int | None, str | None]:
    """The index of `answer` among the (normalised) options, or None and why not.

    A match that needs case folding is refused (the annotation is ambiguous); options that are
    identical after normalisation are refused (the answer index would be ambiguous).
    """
    seen: dict[str, int] = {}
    for i, option in enumerate(options):
        if option in seen:
            return None, f"options {seen[option]} and {i} are identical after normalisation ({option!r})"
        seen[option] = i
    if answer in seen:
        return seen[answer], None
    folded = [i for i, o in enumerate(options) if o.casefold() == answer.casefold()]
    if folded:
        return None, (
            f"field 'answer': {answer!r} matches candidate {options[folded[0]]!r} only when case is ignored; "
            "fix the annotation"
        )
    return None, f"field 'answer': {answer!r} is not among the candidates {options}"


class _Object(dict):
    """A JSON object that remembers the keys it saw twice (json.loads would keep the last silently)."""

    duplicates: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        else:
            obj[key] = value
    return obj


def read_json(path: Path) -> Any:
    """A JSON annotation file; objects keep their first value of a repeated key and list the repeats in
    `.duplicates`. Raises DataError when the file cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_pairs)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); fix or re-download the annotations") from None
    except OSError as err:
        raise DataError(f"cannot read {path} ({err})") from None


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), "null")
