"""Rendering the paper's prompt through a checkpoint's own chat template, whatever that template accepts.

Real checkpoints ship templates that differ in what they accept: some live only in
``tokenizer_config.json`` (transformers 5 processors then have none), some reject a system turn
(Mistral-Instruct's: "Only user and assistant roles are supported!"), some render string content
only. `render_chat` tries, in order, the multimodal message format with a system turn, then with
the system text folded into the user turn, then the same two with string content; it records
which one rendered in `PromptNotes`, and raises a clear AdapterError naming the template file
when none does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jinja2.exceptions import TemplateError

from flowcheck.models.base import AdapterError
from flowcheck.prompt import ANSWER_PREFIX, ContentStyle, MCText, RenderedPrompt, SystemPlacement, render_with_template

SystemMode = Literal["auto", "turn", "fold", "drop"]
SYSTEM_MODES: tuple[str, ...] = ("auto", "turn", "fold", "drop")

# Where transformers reads a chat template from, in its order of preference.
TEMPLATE_FILES = {
    "processor": ("chat_template.jinja", "chat_template.json", "processor_config.json"),
    "tokenizer": ("chat_template.jinja", "tokenizer_config.json"),
}


@dataclass(frozen=True)
class TemplateSource:
    """A chat template and where it came from: ``owner`` is ``"processor"`` or ``"tokenizer"``."""

    owner: str
    file: str
    apply: Callable[[list[dict]], str]


def template_file(name_or_path: str, owner: str) -> str:
    """The file a checkpoint's `owner` (processor or tokenizer) read its chat template from, as a readable path."""
    folder = Path(name_or_path)
    candidates = TEMPLATE_FILES[owner]
    if folder.is_dir():
        for candidate in candidates:
            path = folder / candidate
            if path.exists() and (candidate.endswith(".jinja") or "chat_template" in path.read_text()):
                return str(path)
    return f"{name_or_path}/{' or '.join(candidates)}"


def template_source(processor, tokenizer, name_or_path: str) -> TemplateSource:
    """The processor's chat template, else the tokenizer's (a template only in tokenizer_config.json).

    Raises AdapterError when neither has one.
    """
    if getattr(processor, "chat_template", None):
        return TemplateSource(
            "processor",
            template_file(name_or_path, "processor"),
            lambda m: processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False),
        )
    if getattr(tokenizer, "chat_template", None):
        return TemplateSource(
            "tokenizer",
            template_file(name_or_path, "tokenizer"),
            lambda m: tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False),
        )
    raise AdapterError(
        f"{name_or_path} ships no chat template (none in {', '.join(TEMPLATE_FILES['processor'])} or "
        "tokenizer_config.json); add the model's template as chat_template.jinja beside its config"
    )


def _attempts(system: str | None, mode: str) -> list[tuple[SystemPlacement | None, ContentStyle]]:
    if mode not in SYSTEM_MODES:
        raise AdapterError(f"unknown system prompt mode {mode!r}; choose one of {', '.join(SYSTEM_MODES)}")
    if system is None or mode == "drop":
        placements: list[SystemPlacement | None] = [None]
    else:
        placements = {"auto": ["turn", "fold"], "turn": ["turn"], "fold": ["fold"]}[mode]
    return [(p, c) for c in ("parts", "string") for p in placements]


def render_chat(
    source: TemplateSource,
    mc: MCText,
    system: str | None,
    *,
    mode: str = "auto",
    video_text: str = "<video>",
    answer_prefix: str = ANSWER_PREFIX,
) -> tuple[RenderedPrompt, dict[str, str]]:
    """The prompt rendered by the first message format `source`'s template accepts, and notes on it.

    `mode`: ``"auto"`` (a system turn, else the system text folded into the user turn), ``"turn"``,
    ``"fold"``, or ``"drop"`` (no system text). The notes (`prompt_notes` of an adapter) are
    ``template`` (which template, from which file), ``system`` (turn / folded into the user turn /
    dropped / none) and ``content`` (multimodal parts / string with the video token), plus
    ``fallback_reason`` (the template's error on the preferred format) when a fallback was used.
    Raises AdapterError naming the template file when no format renders.
    """
    errors: list[str] = []
    for placement, content in _attempts(system, mode):
        try:
            rendered = render_with_template(
                source.apply,
                mc,
                system if placement is not None else None,
                answer_prefix,
                placement=placement or "turn",
                content=content,
                video_text=video_text,
            )
        except (TemplateError, TypeError, ValueError) as err:
            errors.append(f"{_describe(placement, content)}: {type(err).__name__}: {err}")
            continue
        notes = {
            "template": f"{source.owner} chat template ({source.file})",
            "system": _system_note(system, mode, placement),
            "content": "multimodal parts" if content == "parts" else f"string content with {video_text!r}",
        }
        if errors:
            notes["fallback_reason"] = "; ".join(errors)
        return rendered, notes
    raise AdapterError(
        f"the chat template in {source.file} cannot render the paper's prompt with a video: "
        + "; ".join(errors)
        + ". Give the checkpoint a template that renders a video part (or a video token in string content)."
    )


def _describe(placement: str | None, content: str) -> str:
    system = {"turn": "system turn", "fold": "system folded into the user turn", None: "no system text"}[placement]
    return f"{system}, {'multimodal parts' if content == 'parts' else 'string content'}"


def _system_note(system: str | None, mode: str, placement: str | None) -> str:
    if system is None:
        return "none (this family's prompt has no system text)"
    if placement is None:
        return "dropped (system prompt mode 'drop')"
    if placement == "fold":
        return "folded into the user turn" + (" (the template rejects a system turn)" if mode == "auto" else "")
    return "system turn"
