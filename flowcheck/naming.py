"""File names derived from a run's model names (figures, gating baselines)."""

from __future__ import annotations


def file_stem(name: str) -> str:
    """A file-system-safe stem of a model name (``org/model@family`` -> ``org--model@family``)."""
    safe = name.strip("/").replace("/", "--")
    return "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in safe)
