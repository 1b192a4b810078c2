"""Unique, stable names for the checkpoints of a run.

A model's name identifies it in test ids, gating baselines, figures and the report. Names must
not collide: two checkpoints saved as ``runA/checkpoint-500`` and ``runB/checkpoint-500`` are
different models. A name is, in order of preference:

- an explicit alias, ``ALIAS=SOURCE`` (``--flow-model``, ``[tool.flowcheck] models``, ``FLOWCHECK_MODELS``);
- a bundled model's registry name (``tiny-video-ft``) or a hub id (``org/name``), unchanged;
- for a local folder, ``<parent>/<folder>-<6 hex>``, the hex being a hash of the resolved path,
  so that the same folder always gets the same name and different folders never share one.

A family chosen by name (``SOURCE@family``) keeps its suffix in the derived name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flowcheck.models.registry import BUNDLED

ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class ModelNameError(ValueError):
    """Model names of a run that are malformed or collide; the message suggests aliases."""


@dataclass(frozen=True, order=True)
class ModelRef:
    """One model of a run: its unique `name` and the `source` it loads from (path or hub id, ``@family`` kept)."""

    name: str
    source: str

    @property
    def aliased(self) -> bool:
        return self.name != derived_name(self.source)


def _is_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().is_dir() or source.count("/") > 1


def derived_name(source: str) -> str:
    """The name a model gets without an alias (see the module docstring)."""
    base, at, family = source.partition("@")
    if base in BUNDLED or not _is_local(base):
        return source
    resolved = Path(base).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:6]
    parent = resolved.parent.name
    stem = f"{parent}/{resolved.name}" if parent else resolved.name
    return f"{stem}-{digest}" + (f"@{family}" if at else "")


def parse_model(item: str) -> ModelRef:
    """``SOURCE`` or ``ALIAS=SOURCE`` -> ModelRef. Raises ModelNameError on an empty or malformed alias."""
    item = item.strip()
    alias, eq, source = item.partition("=")
    if not eq:
        return ModelRef(derived_name(item), item)
    alias, source = alias.strip(), source.strip()
    if not alias or not source:
        raise ModelNameError(f"--flow-model {item!r}: write ALIAS=PATH_OR_HUB_ID (both non-empty)")
    if alias in BUNDLED and source != alias:
        raise ModelNameError(
            f"--flow-model {item!r}: {alias!r} is a bundled model's name, and its registry entries (expected failures, "
            "pathways) would apply to another checkpoint; choose another alias"
        )
    if not ALIAS_PATTERN.match(alias) or "@" in alias:
        raise ModelNameError(
            f"--flow-model {item!r}: the alias {alias!r} may use letters, digits and . _ - / "
            "(starting with a letter or digit)"
        )
    return ModelRef(alias, source)


def model_refs(items: Iterable[str]) -> list[ModelRef]:
    """The run's models in the given order; refuses two models with the same name.

    Raises ModelNameError naming the clashing entries and suggesting ``ALIAS=PATH``.
    """
    refs = [parse_model(item) for item in items]
    seen: dict[str, ModelRef] = {}
    for ref in refs:
        other = seen.get(ref.name)
        if other is not None:
            if other.source == ref.source:
                raise ModelNameError(f"the model {ref.source!r} is given twice; give each model once")
            raise ModelNameError(
                f"two models are both named {ref.name!r} ({other.source!r} and {ref.source!r}); "
                f"give them distinct aliases, e.g. --flow-model a={other.source} --flow-model b={ref.source}"
            )
        seen[ref.name] = ref
    return refs
